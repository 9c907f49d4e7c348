"""`kaito fetch-data`: the address policy, names, retries, limits and content checks, against a local HTTP server."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import re
import socket
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa  # type: ignore[import-untyped,unused-ignore]
import pyarrow.parquet as pq  # type: ignore[import-untyped,unused-ignore]
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.test_utils import TestServer
from yarl import URL

from kaito.tuning.addresses import (
    AddressPolicy,
    AddressRefusedError,
    IPAddress,
    PolicyResolver,
    Refusal,
    parse_address,
)
from kaito.tuning.fetch import (
    FetchError,
    Limits,
    add_fetch_data_arguments,
    collect_urls,
    fetch_all,
    parse_size,
    run_fetch_data,
)
from kaito.tuning.fetchcontent import Sniffer, dataset_format
from kaito.tuning.fetchdownload import GiB, retry_after_seconds
from kaito.tuning.fetchnames import choose_name, name_from_url, sanitise_name, unique_name
from kaito.tuning.fetchurls import display_url

STRICT = AddressPolicy()
PERMISSIVE = AddressPolicy(allow_private=True)
JSONL = b"".join(
    json.dumps({"prompt": f"p{i}", "completion": f"c{i}"}).encode() + b"\n" for i in range(3)
)  # fmt: skip
CSV = b"prompt,completion\nhello,world\n"
HTML = b"<!DOCTYPE html>\n<html><body>Sign in to continue</body></html>"


def parquet_bytes() -> bytes:
    messages = [[{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}] for i in range(4)]
    sink = io.BytesIO()
    pq.write_table(pa.table({"messages": messages}), sink)
    return sink.getvalue()


# The address policy


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("fc00::1", "private"),
        ("fd12:3456::1", "private"),
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("::ffff:10.0.0.1", "private"),
        ("::ffff:127.0.0.1", "loopback"),
        ("64:ff9b::a00:1", "private"),
        ("2002:c0a8:101::1", "private"),
    ],
)
def test_private_addresses_are_refused_unless_allowed(address: str, kind: str) -> None:
    refusal = STRICT.refusal(address)
    assert refusal is not None and (refusal.address, refusal.kind, refusal.allowable) == (
        parse_address(address),
        kind,
        True,
    )
    assert refusal.describe().endswith(f" a {kind} address; pass --allow-private-addresses to allow it")
    assert PERMISSIVE.refusal(address) is None


def test_ipv6_addresses_carrying_ipv4_are_judged_by_the_ipv4_address() -> None:
    refusal = STRICT.refusal("::ffff:10.0.0.1")
    assert refusal is not None and refusal.embedded == parse_address("10.0.0.1")
    assert refusal.describe().startswith(f"{parse_address('::ffff:10.0.0.1')} (10.0.0.1) is a private address")


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("169.254.169.254", "cloud metadata"),
        ("168.63.129.16", "cloud metadata"),
        ("fd00:ec2::254", "cloud metadata"),
        ("::ffff:169.254.169.254", "cloud metadata"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.251", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("192.0.2.10", "reserved"),
        ("2001:db8::1", "reserved"),
    ],
)
def test_metadata_and_meaningless_addresses_are_refused_even_when_private_ones_are_allowed(
    address: str, kind: str
) -> None:
    for policy in (STRICT, PERMISSIVE):
        refusal = policy.refusal(address)
        assert refusal is not None and refusal.kind == kind and not refusal.allowable
        assert refusal.describe().endswith("it is never allowed")


@pytest.mark.parametrize(
    "address", ["20.1.2.3", "8.8.8.8", "2606:4700:4700::1111", "::ffff:20.1.2.3", "2002:1401:203::"]
)
def test_public_addresses_are_allowed(address: str) -> None:
    assert STRICT.refusal(address) is None


def test_refusal_message_names_host_address_and_flag() -> None:
    with pytest.raises(AddressRefusedError) as caught:
        STRICT.check("db.internal", "10.1.2.3")
    assert str(caught.value) == (
        "host db.internal resolves to 10.1.2.3, a private address; pass --allow-private-addresses to allow it"
    )
    with pytest.raises(AddressRefusedError, match=r"^address 169\.254\.169\.254 is a cloud metadata address; it is"):
        PERMISSIVE.check("169.254.169.254", "169.254.169.254")


class FakeResolver(AbstractResolver):
    """Resolves names from a table, so names can point anywhere without DNS."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host not in self.table:
            raise OSError(f"unknown host {host}")
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=0,
            )
            for address in self.table[host]
        ]

    async def close(self) -> None:
        pass


async def test_resolver_refuses_localhost_by_default_and_allows_it_with_the_flag() -> None:
    with pytest.raises(AddressRefusedError, match=r"^host localhost resolves to .*--allow-private-addresses"):
        await PolicyResolver(STRICT).resolve("localhost", 80)
    results = await PolicyResolver(PERMISSIVE).resolve("localhost", 80, socket.AF_UNSPEC)
    assert results and all(parse_address(r["host"]).is_loopback for r in results)
    assert all(r["flags"] & socket.AI_NUMERICHOST for r in results)


async def test_resolver_refuses_a_name_if_any_of_its_addresses_is_refused() -> None:
    resolver = PolicyResolver(STRICT, FakeResolver({"mixed.test": ["20.1.2.3", "10.0.0.7"], "ok.test": ["20.1.2.3"]}))
    with pytest.raises(AddressRefusedError, match=r"host mixed\.test resolves to 10\.0\.0\.7, a private address"):
        await resolver.resolve("mixed.test", 443)
    assert [r["host"] for r in await resolver.resolve("ok.test", 443)] == ["20.1.2.3"]


# Names and small helpers


@pytest.mark.parametrize(
    ("url", "name"),
    [
        (
            "https://huggingface.co/datasets/philschmid/dolly-15k-oai-style/resolve/main/data/"
            "train-00000-of-00001-54e3756291ca09c6.parquet?download=true",
            "train-00000-of-00001-54e3756291ca09c6.parquet",
        ),
        ("https://h.test/files/my%20data.csv", "my data.csv"),
        ("https://h.test/x/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd", "_._etc_passwd"),
        ("https://h.test/..%5C..%5Cboot.ini", "_._boot.ini"),
        ("https://h.test/.hidden.jsonl", "hidden.jsonl"),
        ("https://h.test/a%00b.json", "a_b.json"),
        ("https://h.test/dir/", None),
        ("https://h.test", None),
        ("https://h.test/..", None),
        ("https://h.test/%2E%2E", None),
    ],
)
def test_names_come_from_the_last_path_segment_and_are_sanitised(url: str, name: str | None) -> None:
    assert name_from_url(url) == name


def test_long_names_are_cut_keeping_the_extension() -> None:
    name = sanitise_name("é" * 300 + ".parquet")
    assert name is not None and name.endswith(".parquet") and len(name.encode()) <= 200


def test_duplicate_names_get_numbered_and_fallbacks_get_an_extension() -> None:
    assert unique_name("train.parquet", {"train.parquet", "train-1.parquet"}) == "train-2.parquet"
    assert unique_name("README", {"README"}) == "README-1"
    url = URL("https://h.test/")
    assert choose_name(url, 3, "application/json", "json", b"[{}]", set()) == "data-3.json"
    assert choose_name(url, 3, "application/octet-stream", "json", b'{"a": 1}', set()) == "data-3.jsonl"
    assert choose_name(url, 1, "text/csv", "csv", CSV, {"data-1.csv"}) == "data-1-1.csv"
    assert choose_name(URL("https://h.test/export?id=4"), 1, "", "parquet", b"PAR1", set()) == "export.parquet"
    assert choose_name(URL("https://h.test/rows.txt"), 1, "text/plain", "csv", CSV, set()) == "rows.txt.csv"


def test_display_url_hides_passwords_and_query_values() -> None:
    assert (
        display_url("https://u:secret@h.test/a.csv?sig=abc&download") == "https://u@h.test/a.csv?sig=...&download=..."
    )
    assert display_url("http://h.test/a.csv") == "http://h.test/a.csv"


def sniffed(body: bytes) -> Sniffer:
    sniffer = Sniffer()
    for start in range(0, len(body), 7):  # small chunks, so multi-byte characters straddle them
        sniffer.feed(body[start : start + 7])
    sniffer.finish()
    return sniffer


def test_content_is_checked_by_extension_or_by_content() -> None:
    assert dataset_format(".parquet", sniffed(parquet_bytes())) == "parquet"
    assert dataset_format("", sniffed(parquet_bytes())) == "parquet"
    assert dataset_format(".jsonl", sniffed(b" \n" + JSONL)) == "json"
    assert dataset_format("", sniffed('[{"q": "héllo"}]'.encode())) == "json"
    assert dataset_format(".csv", sniffed(b"text\nsingle column\n")) == "csv"
    assert dataset_format(".txt", sniffed(CSV)) == "csv"
    with pytest.raises(ValueError, match=r"named \*\.parquet but does not end with the parquet magic PAR1"):
        dataset_format(".parquet", sniffed(parquet_bytes()[:-10]))
    with pytest.raises(ValueError, match=r"named \*\.parquet but does not start with the parquet magic"):
        dataset_format(".parquet", sniffed(JSONL))
    with pytest.raises(ValueError, match=r"named \*\.jsonl but is not valid UTF-8 \(invalid UTF-8 at byte 7\)"):
        dataset_format(".jsonl", sniffed(b'{"a": "\xff"}\n'))
    with pytest.raises(ValueError, match=r"invalid UTF-8 at byte 15\)"):  # é is bytes 13-14, across two chunks
        dataset_format(".jsonl", sniffed('{"a": "abcdefé'.encode() + b'\xff"}'))
    with pytest.raises(ValueError, match=r"invalid UTF-8 at byte 7\)"):
        dataset_format(".csv", sniffed(b"a,b\nc,d\xc3"))  # a character cut off at the end
    with pytest.raises(ValueError, match=r"named \*\.json but does not start with '\{' or '\['"):
        dataset_format(".json", sniffed(b"hello"))
    with pytest.raises(ValueError, match="byte-order mark"):
        dataset_format(".json", sniffed(b"\xef\xbb\xbf[]"))
    with pytest.raises(ValueError, match=r"named \*\.csv but has no header line"):
        dataset_format(".csv", sniffed(b"\n\na,b\n"))
    with pytest.raises(ValueError, match="does not look like a dataset"):
        dataset_format("", sniffed(b"just some words\n"))
    with pytest.raises(ValueError, match="does not look like a dataset"):
        dataset_format(".bin", sniffed(bytes(range(256))))


def test_retry_after_takes_seconds_or_a_date_and_is_capped() -> None:
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds("3600") == 30.0
    assert retry_after_seconds("Wed, 01 Jan 2025 12:00:05 GMT", now) == 5.0
    assert retry_after_seconds("Wed, 01 Jan 2025 11:00:00 GMT", now) == 0.0
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None


# Downloads from a local server


@dataclass
class Server:
    url: str
    port: int
    hits: dict[str, int] = field(default_factory=dict)

    def __getitem__(self, path: str) -> str:
        return f"{self.url}{path}"


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def make_app(hits: dict[str, int], release: asyncio.Event) -> web.Application:
    parquet = parquet_bytes()

    def counted(handler: Handler) -> Handler:
        async def wrapper(request: web.Request) -> web.StreamResponse:
            hits[request.path] = hits.get(request.path, 0) + 1
            return await handler(request)

        return wrapper

    def body(data: bytes, content_type: str = "application/octet-stream") -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            return web.Response(body=data, content_type=content_type)

        return handler

    def redirect(location: str) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            return web.Response(status=302, headers={"Location": location.format(port=request.url.port)})

        return handler

    async def flaky(request: web.Request) -> web.StreamResponse:
        if hits[request.path] == 1:
            return web.Response(status=503, text="try later")
        return web.Response(body=JSONL)

    async def busy(request: web.Request) -> web.StreamResponse:
        if hits[request.path] == 1:
            return web.Response(status=429, headers={"Retry-After": "7"})
        return web.Response(body=JSONL)

    async def down(request: web.Request) -> web.StreamResponse:
        return web.Response(status=503)

    async def missing(request: web.Request) -> web.StreamResponse:
        return web.Response(status=404, text="no such file")

    async def huge(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": str(10**12)})
        await response.prepare(request)
        try:
            await response.write(b'{"a": 1}\n' * 100)
            await asyncio.wait_for(release.wait(), 5)
        except (ConnectionError, TimeoutError):
            pass
        return response

    async def chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            for _ in range(64):
                await response.write(b'{"a": "' + b"x" * 1000 + b'"}\n')
        except ConnectionError:
            pass
        return response

    async def stalled(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        try:
            await response.write(b'{"a": 1}\n')
            await asyncio.wait_for(release.wait(), 5)
        except (ConnectionError, TimeoutError):
            pass
        return response

    routes: dict[str, Handler] = {
        "/data/train-00000-of-00001.parquet": body(parquet),
        "/data/train.jsonl": body(JSONL, "application/jsonl"),
        "/other/train.jsonl": body(JSONL),
        "/": body(b'[{"text": "a"}]', "application/json"),
        "/export": body(CSV, "text/csv"),
        "/login": body(HTML, "text/html"),
        "/page.csv": body(HTML, "text/plain"),
        "/empty.jsonl": body(b""),
        "/truncated.parquet": body(parquet[: len(parquet) // 2]),
        "/flaky.jsonl": flaky,
        "/busy.jsonl": busy,
        "/down.jsonl": down,
        "/missing.jsonl": missing,
        "/huge.jsonl": huge,
        "/chunked.jsonl": chunked,
        "/stalled.jsonl": stalled,
        "/moved/train.jsonl": redirect("/data/train.jsonl"),
        "/to-loopback.jsonl": redirect("http://127.0.0.2:{port}/data/train.jsonl"),
        "/to-metadata.jsonl": redirect("http://169.254.169.254/latest/meta-data/"),
        "/to-internal.jsonl": redirect("http://internal.test:{port}/data/train.jsonl"),
        "/to-file.jsonl": redirect("file:///etc/passwd"),
        "/loop.jsonl": redirect("/loop.jsonl"),
    }
    app = web.Application()
    for path, handler in routes.items():
        app.router.add_get(path, counted(handler))
    return app


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    hits: dict[str, int] = {}
    release = asyncio.Event()
    test_server = TestServer(make_app(hits, release), host="127.0.0.1")
    await test_server.start_server()
    assert test_server.port is not None
    yield Server(f"http://127.0.0.1:{test_server.port}", test_server.port, hits)
    release.set()
    await test_server.close()


def files(directory: Path) -> list[str]:
    """Everything in a directory, hidden temporary files included."""
    return sorted(p.name for p in directory.iterdir())


@dataclass
class Recorder:
    sleeps: list[float] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


async def fetch(
    urls: list[str],
    output: Path,
    *,
    policy: AddressPolicy = PERMISSIVE,
    limits: Limits | None = None,
    recorder: Recorder | None = None,
    resolver: AbstractResolver | None = None,
) -> list[Path]:
    recorder = recorder or Recorder()
    return await fetch_all(
        urls,
        output,
        policy=policy,
        limits=limits or Limits(),
        sleep=recorder.sleep,
        log=recorder.lines.append,
        resolver=resolver,
    )


async def test_parquet_and_jsonl_are_fetched_named_and_logged(server: Server, tmp_path: Path) -> None:
    recorder = Recorder()
    output = tmp_path / "data"
    paths = await fetch(
        [server["/data/train-00000-of-00001.parquet"], server["/data/train.jsonl?download=true"]],
        output,
        recorder=recorder,
    )
    assert paths == [output / "train-00000-of-00001.parquet", output / "train.jsonl"]
    assert pq.read_table(paths[0]).column("messages").to_pylist()[0][0] == {"role": "user", "content": "q0"}
    assert paths[1].read_bytes() == JSONL
    assert files(output) == ["train-00000-of-00001.parquet", "train.jsonl"]
    assert paths[0].stat().st_mode & 0o777 == 0o644
    size = paths[0].stat().st_size
    assert recorder.lines[0].startswith(
        f"fetched {server['/data/train-00000-of-00001.parquet']} -> {paths[0]} ({size} bytes, "
    )
    assert recorder.lines[0].endswith(" s)") and recorder.lines[1].startswith(f"fetched {server.url}/data/train.jsonl?")
    assert recorder.sleeps == []


async def test_same_names_are_numbered_and_nameless_urls_use_the_content_type(server: Server, tmp_path: Path) -> None:
    paths = await fetch(
        [server["/data/train.jsonl"], server["/other/train.jsonl"], server["/"], server["/export?id=1"]], tmp_path
    )
    assert [p.name for p in paths] == ["train.jsonl", "train-1.jsonl", "data-3.json", "export.csv"]


async def test_redirects_are_followed_and_named_after_the_url_asked_for(server: Server, tmp_path: Path) -> None:
    [path] = await fetch([server["/moved/train.jsonl"]], tmp_path)
    assert path == tmp_path / "train.jsonl" and path.read_bytes() == JSONL
    assert server.hits == {"/moved/train.jsonl": 1, "/data/train.jsonl": 1}


async def test_loopback_is_refused_by_default_and_allowed_with_the_flag(server: Server, tmp_path: Path) -> None:
    url = server["/data/train.jsonl"]
    with pytest.raises(FetchError) as caught:
        await fetch([url], tmp_path, policy=STRICT)
    assert str(caught.value) == (
        f"{url}: address 127.0.0.1 is a loopback address; pass --allow-private-addresses to allow it"
    )
    name_url = f"http://localhost:{server.port}/data/train.jsonl"
    with pytest.raises(FetchError, match=r"host localhost resolves to .* loopback .*--allow-private-addresses"):
        await fetch([name_url], tmp_path, policy=STRICT)
    assert server.hits == {} and files(tmp_path) == []
    assert [p.name for p in await fetch([url, name_url], tmp_path)] == ["train.jsonl", "train-1.jsonl"]


async def test_ip_literals_in_any_spelling_are_checked_without_retrying(tmp_path: Path) -> None:
    recorder = Recorder()
    for url, message in [
        ("http://[::1]:9/a.csv", "address ::1 is a loopback address"),
        ("http://[::ffff:169.254.169.254]/a.csv", "(169.254.169.254) is a cloud metadata address"),
        ("http://0x7f000001:9/a.csv", "host 0x7f000001 resolves to 127.0.0.1, a loopback address"),
        ("http://2130706433:9/a.csv", "is not a canonical IPv4 address"),
    ]:
        with pytest.raises(FetchError, match=re.escape(message)):
            await fetch([url], tmp_path, policy=STRICT, recorder=recorder)
    assert recorder.sleeps == []


class TrustTestServer(AddressPolicy):
    """The strict policy, except that 127.0.0.1 (the test server) counts as public."""

    def refusal(self, value: str | IPAddress) -> Refusal | None:
        return None if parse_address(value) == parse_address("127.0.0.1") else super().refusal(value)


async def test_redirects_to_refused_addresses_name_the_redirect_target(server: Server, tmp_path: Path) -> None:
    resolver = FakeResolver({"internal.test": ["10.0.0.5"]})
    for path, policy, target, reason in [
        ("/to-loopback.jsonl", TrustTestServer(), f"http://127.0.0.2:{server.port}/data/train.jsonl", "loopback"),
        ("/to-internal.jsonl", TrustTestServer(), f"http://internal.test:{server.port}/data/train.jsonl", "private"),
        ("/to-metadata.jsonl", PERMISSIVE, "http://169.254.169.254/latest/meta-data/", "cloud metadata"),
    ]:
        with pytest.raises(FetchError) as caught:
            await fetch([server[path]], tmp_path, policy=policy, resolver=resolver)
        message = str(caught.value)
        assert message.startswith(f"{server[path]}: redirect to {target} refused: ")
        assert f" a {reason} address;" in message or f" an {reason} address;" in message
    assert files(tmp_path) == []
    assert "/data/train.jsonl" not in server.hits


async def test_bad_schemes_and_redirect_loops_are_refused(server: Server, tmp_path: Path) -> None:
    for url in ["file:///etc/passwd", "ftp://h.test/a.csv", "gopher://h.test/", "data:text/csv,a%2Cb"]:
        with pytest.raises(FetchError, match=f"scheme '{url.split(':')[0]}' is not supported"):
            await fetch([url], tmp_path)
    with pytest.raises(FetchError, match=r"redirect to file:///etc/passwd refused: .*scheme 'file' is not supported"):
        await fetch([server["/to-file.jsonl"]], tmp_path)
    with pytest.raises(FetchError, match=r"loop\.jsonl: more than 5 redirects"):
        await fetch([server["/loop.jsonl"]], tmp_path)
    assert server.hits["/loop.jsonl"] == 6


async def test_html_empty_and_malformed_bodies_are_refused(server: Server, tmp_path: Path) -> None:
    cases = {
        "/login": "/login returned an HTML page, not a dataset; is the URL a download link?",
        "/page.csv": "/page.csv returned an HTML page, not a dataset; is the URL a download link?",
        "/empty.jsonl": "/empty.jsonl returned an empty body",
        "/truncated.parquet": "/truncated.parquet: the body is named *.parquet but does not end with the parquet magic",
    }
    for path, message in cases.items():
        with pytest.raises(FetchError) as caught:
            await fetch([server[path]], tmp_path)
        assert str(caught.value).startswith(server.url + message)
    assert files(tmp_path) == []


async def test_5xx_and_429_are_retried_with_backoff_and_retry_after(server: Server, tmp_path: Path) -> None:
    recorder = Recorder()
    paths = await fetch([server["/flaky.jsonl"], server["/busy.jsonl"]], tmp_path, recorder=recorder)
    assert [p.name for p in paths] == ["flaky.jsonl", "busy.jsonl"]
    assert recorder.sleeps == [0.5, 7.0]
    assert server.hits == {"/flaky.jsonl": 2, "/busy.jsonl": 2}
    assert (
        recorder.lines[0]
        == f"retrying {server['/flaky.jsonl']} in 0.5 s: {server['/flaky.jsonl']}: HTTP 503 Service Unavailable"
    )


async def test_retries_give_up_after_exponential_backoff(server: Server, tmp_path: Path) -> None:
    recorder = Recorder()
    with pytest.raises(FetchError) as caught:
        await fetch([server["/down.jsonl"]], tmp_path, recorder=recorder)
    assert str(caught.value) == f"{server['/down.jsonl']}: HTTP 503 Service Unavailable (gave up after 4 attempts)"
    assert recorder.sleeps == [0.5, 1.0, 2.0] and server.hits["/down.jsonl"] == 4


async def test_other_4xx_fail_without_retrying(server: Server, tmp_path: Path) -> None:
    recorder = Recorder()
    with pytest.raises(FetchError) as caught:
        await fetch([server["/missing.jsonl"]], tmp_path, recorder=recorder)
    assert str(caught.value) == f"{server['/missing.jsonl']}: HTTP 404 Not Found"
    assert recorder.sleeps == [] and server.hits["/missing.jsonl"] == 1


async def test_connection_errors_and_stalls_are_retried(server: Server, tmp_path: Path) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        closed_port = unused.getsockname()[1]
    recorder = Recorder()
    with pytest.raises(FetchError, match=r"^http://127\.0\.0\.1:\d+/a\.csv: .*\(gave up after 2 attempts\)"):
        await fetch([f"http://127.0.0.1:{closed_port}/a.csv"], tmp_path, recorder=recorder, limits=Limits(retries=1))
    assert recorder.sleeps == [0.5]
    with pytest.raises(FetchError, match=r"stalled\.jsonl: .*\(gave up after 2 attempts\)"):
        await fetch([server["/stalled.jsonl"]], tmp_path, limits=Limits(retries=1, timeout_s=0.2))
    assert server.hits["/stalled.jsonl"] == 2 and files(tmp_path) == []


async def test_size_limits_are_enforced_before_and_while_reading(server: Server, tmp_path: Path) -> None:
    with pytest.raises(FetchError) as caught:
        await fetch([server["/huge.jsonl"]], tmp_path)
    assert str(caught.value) == (
        f"{server['/huge.jsonl']}: Content-Length 1000000000000 bytes exceeds the per-file limit of "
        f"{10 * GiB} bytes (--max-bytes)"
    )
    with pytest.raises(FetchError) as caught:
        await fetch([server["/chunked.jsonl"]], tmp_path, limits=Limits(max_bytes=20_000))
    assert str(caught.value) == (
        f"{server['/chunked.jsonl']}: the body exceeds the per-file limit of 20000 bytes (--max-bytes); stopped reading"
    )
    assert files(tmp_path) == []  # the partial file is gone
    limits = Limits(max_total_bytes=len(JSONL) + 10)
    with pytest.raises(FetchError, match=r"exceeds the remaining total limit of 10 bytes \(--max-total-bytes\)"):
        await fetch([server["/data/train.jsonl"], server["/other/train.jsonl"]], tmp_path, limits=limits)
    assert files(tmp_path) == ["train.jsonl"]


# The command line


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="kaito fetch-data")
    add_fetch_data_arguments(parser)
    return parser.parse_args(argv)


def test_flags_and_their_defaults() -> None:
    args = parse([])
    assert (args.urls, args.urls_file, args.output) == (None, None, Path("/mnt/data"))
    assert (args.max_bytes, args.max_total_bytes, args.retries, args.timeout) == (10 * GiB, 50 * GiB, 3, 60.0)
    assert args.allow_private_addresses is False
    args = parse(["--url", "https://a.test/x.csv", "--url", "https://b.test/y.csv", "--max-bytes", "500Mi"])
    assert args.urls == ["https://a.test/x.csv", "https://b.test/y.csv"] and args.max_bytes == 500 * 1024**2
    assert parse_size("2G") == 2_000_000_000 and parse_size("1.5KiB") == 1536 and parse_size("4096") == 4096
    for bad in (["--retries", "-1"], ["--timeout", "0"], ["--max-bytes", "lots"], ["--max-total-bytes", "0"]):
        with pytest.raises(SystemExit) as caught:
            parse(bad)
        assert caught.value.code == 2


def test_urls_come_from_flags_and_file_or_else_from_data_urls(tmp_path: Path) -> None:
    listing = tmp_path / "urls.txt"
    listing.write_text("# training data\nhttps://a.test/1.csv\n\n  https://b.test/2.csv  \nhttps://a.test/1.csv\n")
    env = {"DATA_URLS": "https://env.test/1.csv https://env.test/2.csv"}
    assert collect_urls(["https://c.test/3.csv"], listing, env) == [
        "https://c.test/3.csv",
        "https://a.test/1.csv",
        "https://b.test/2.csv",
    ]
    assert collect_urls(None, None, env) == ["https://env.test/1.csv", "https://env.test/2.csv"]
    assert collect_urls(None, None, {}) == []


def test_run_exits_2_without_urls_or_with_bad_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DATA_URLS", raising=False)
    assert run_fetch_data(parse(["--output", str(tmp_path)])) == 2
    assert (
        capsys.readouterr().err == "kaito fetch-data: no URLs to fetch; pass --url or --urls-file, or set DATA_URLS\n"
    )
    monkeypatch.setenv("DATA_URLS", "file:///etc/shadow")
    assert run_fetch_data(parse(["--output", str(tmp_path)])) == 2
    assert "scheme 'file' is not supported" in capsys.readouterr().err
    assert run_fetch_data(parse(["--urls-file", str(tmp_path / "absent.txt")])) == 2
    assert capsys.readouterr().err.startswith("kaito fetch-data: cannot read --urls-file")


def test_run_exits_1_with_one_line_when_a_fetch_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_fetch_data(parse(["--url", "http://127.0.0.1:9/train.jsonl", "--output", str(tmp_path)])) == 1
    assert capsys.readouterr().err == (
        "kaito fetch-data: http://127.0.0.1:9/train.jsonl: address 127.0.0.1 is a loopback address; "
        "pass --allow-private-addresses to allow it\n"
    )


@contextmanager
def server_in_thread() -> Iterator[str]:
    """A local server on its own event loop, for tests that call run_fetch_data (which runs asyncio.run)."""
    loop = asyncio.new_event_loop()
    release = asyncio.Event()
    runner = web.AppRunner(make_app({}, release))
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = runner.addresses[0][1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.run_until_complete(runner.cleanup())
        loop.close()


def test_run_fetches_into_the_output_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with server_in_thread() as base:
        monkeypatch.setenv("DATA_URLS", f"{base}/data/train-00000-of-00001.parquet {base}/data/train.jsonl")
        output = tmp_path / "mnt" / "data"
        assert run_fetch_data(parse(["--output", str(output), "--allow-private-addresses"])) == 0
    assert sorted(p.name for p in output.iterdir()) == ["train-00000-of-00001.parquet", "train.jsonl"]
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and all(line.startswith(f"fetched {base}/data/train") for line in lines)
