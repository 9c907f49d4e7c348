"""Data URLs must reach public hosts only, and image references must be ones a registry client can pull."""

from __future__ import annotations

import ipaddress

import pytest

from kaito.workspaces.urls import check_data_url, check_image_reference, parse_legacy_ipv4

DOLLY = (
    "https://huggingface.co/datasets/philschmid/dolly-15k-oai-style/resolve/main/data/"
    "train-00000-of-00001-54e3756291ca09c6.parquet?download=true"
)


@pytest.mark.parametrize(
    "url",
    [
        pytest.param(DOLLY, id="huggingface-dataset"),
        pytest.param("http://example.com/data.jsonl", id="plain-http"),
        pytest.param("HTTPS://Example.COM:8443/a?b=c#frag", id="upper-case-scheme-and-port"),
        pytest.param("https://8.8.8.8/data.csv", id="public-ipv4"),
        pytest.param("https://[2606:4700:4700::1111]/data", id="public-ipv6"),
        pytest.param("https://münchen.example/data", id="internationalised-name"),
        pytest.param("https://storage.blob.core.windows.net/c/x.parquet", id="azure-blob"),
    ],
)
def test_public_urls_are_accepted(url: str) -> None:
    assert check_data_url(url) is None


@pytest.mark.parametrize(
    ("url", "word"),
    [
        pytest.param("", "empty", id="empty"),
        pytest.param("ftp://example.com/x", "scheme", id="ftp"),
        pytest.param("file:///etc/passwd", "scheme", id="file"),
        pytest.param("example.com/data", "scheme", id="no-scheme"),
        pytest.param("https://user:secret@example.com/x", "credentials", id="userinfo"),
        pytest.param("https:///path", "no host", id="no-host"),
        pytest.param("http://exa mple.com/", "spaces", id="space"),
        pytest.param("http://example.com\\@evil/", "backslash", id="backslash"),
        pytest.param("https://example.com:99999/", "cannot be parsed", id="bad-port"),
        pytest.param("http://localhost:8080/", "loopback", id="localhost"),
        pytest.param("http://LocalHost./", "loopback", id="localhost-trailing-dot"),
        pytest.param("http://api.localhost/", "loopback", id="dot-localhost"),
        pytest.param("http://metadata.google.internal/computeMetadata/v1/", "metadata", id="gce-metadata"),
        pytest.param("http://metadata/computeMetadata/v1/", "metadata", id="bare-metadata"),
        pytest.param("http://169.254.169.254/latest/meta-data/", "link-local", id="imds"),
        pytest.param("http://[fe80::1]/", "link-local", id="ipv6-link-local"),
        pytest.param("http://10.0.0.5/", "private", id="private-10"),
        pytest.param("http://172.20.1.1/", "private", id="private-172"),
        pytest.param("http://192.168.1.10/", "private", id="private-192"),
        pytest.param("http://[fd12:3456::1]/", "private", id="ipv6-unique-local"),
        pytest.param("http://100.100.100.200/", "carrier-grade NAT", id="cgnat-alibaba-metadata"),
        pytest.param("http://127.0.0.1:5000/", "loopback", id="loopback"),
        pytest.param("http://127.255.0.9/", "loopback", id="loopback-range"),
        pytest.param("http://[::1]/", "loopback", id="ipv6-loopback"),
        pytest.param("http://0.0.0.0/", "unspecified", id="unspecified"),
        pytest.param("http://[::]/", "unspecified", id="ipv6-unspecified"),
        pytest.param("http://224.0.0.251/", "multicast", id="multicast"),
        pytest.param("http://[ff02::1]/", "multicast", id="ipv6-multicast"),
        pytest.param("http://240.0.0.1/", "reserved", id="class-e"),
        pytest.param("http://255.255.255.255/", "reserved", id="broadcast"),
        pytest.param("http://[::ffff:127.0.0.1]/", "loopback", id="ipv4-mapped-loopback"),
        pytest.param("http://[::ffff:a9fe:a9fe]/", "link-local", id="ipv4-mapped-imds"),
        pytest.param("http://[64:ff9b::a00:1]/", "private", id="nat64-private"),
        pytest.param("http://2130706433/", "loopback", id="decimal"),
        pytest.param("http://0x7f000001/", "loopback", id="hex"),
        pytest.param("http://0177.0.0.1/", "loopback", id="octal"),
        pytest.param("http://127.1/", "loopback", id="short"),
        pytest.param("http://0xa9.254.0251.0xfe/", "link-local", id="mixed-radix-imds"),
        pytest.param(
            "http://\uff11\uff12\uff17\uff0e\uff10\uff0e\uff10\uff0e\uff11/", "loopback", id="fullwidth-digits"
        ),
        pytest.param("http://08.0.0.1/", "numeric", id="bad-octal"),
        pytest.param("http://1.2.3.4.5/", "numeric", id="five-parts"),
        pytest.param("http://[fe80::1%25eth0]/", "zone", id="ipv6-zone"),
        pytest.param("http://exa..mple.com/", "DNS name", id="empty-label"),
    ],
)
def test_refused_urls_say_why_and_what_is_allowed(url: str, word: str) -> None:
    reason = check_data_url(url)
    assert reason is not None
    assert word in reason
    assert "http(s) URLs of public hosts" in reason


@pytest.mark.parametrize(
    ("host", "address"),
    [
        pytest.param("1.2.3.4", "1.2.3.4", id="dotted"),
        pytest.param("1.2.772", "1.2.3.4", id="three-parts"),
        pytest.param("1.131844", "1.2.3.4", id="two-parts"),
        pytest.param("0x01020304", "1.2.3.4", id="hex"),
        pytest.param("0x.0.0.0x", "0.0.0.0", id="bare-0x"),
        pytest.param("256.1.1.1", None, id="octet-too-big"),
        pytest.param("1.16777216", None, id="tail-too-big"),
        pytest.param("4294967296", None, id="too-big"),
        pytest.param("09", None, id="bad-octal"),
    ],
)
def test_legacy_ipv4_forms(host: str, address: str | None) -> None:
    expected = None if address is None else ipaddress.IPv4Address(address)
    assert parse_legacy_ipv4(host) == expected


@pytest.mark.parametrize(
    "ref",
    [
        pytest.param("ACR_REPO_HERE.azurecr.io/ADAPTER_HERE:0.0.1", id="kaito-readme-placeholder"),
        pytest.param("nginx", id="bare-name"),
        pytest.param("library/nginx:1.25-alpine", id="tag"),
        pytest.param("mcr.microsoft.com/aks/kaito/kaito-base:0.0.8", id="nested-path"),
        pytest.param("localhost:5000/adapters/falcon:v1", id="registry-port"),
        pytest.param("myregistry.azurecr.io/adapter@sha256:" + "a1" * 32, id="digest"),
        pytest.param("myregistry.azurecr.io/adapter:v2@sha256:" + "0f" * 32, id="tag-and-digest"),
        pytest.param("[::1]:5000/adapter:x", id="ipv6-registry"),
        pytest.param("repo:" + "t" * 128, id="longest-tag"),
    ],
)
def test_good_image_references(ref: str) -> None:
    assert check_image_reference(ref) is None


@pytest.mark.parametrize(
    ("ref", "word"),
    [
        pytest.param("", "empty", id="empty"),
        pytest.param("my image:1", "spaces", id="space"),
        pytest.param("https://myregistry.azurecr.io/adapter:1", "scheme", id="url"),
        pytest.param("repo:" + "t" * 129, "longer than 128", id="tag-too-long"),
        pytest.param("repo:-latest", "tag", id="tag-starts-with-dash"),
        pytest.param("repo:", "tag", id="empty-tag"),
        pytest.param("repo@sha256:abc", "digest", id="short-digest"),
        pytest.param("repo@sha256:" + "A" * 64, "digest", id="upper-case-digest"),
        pytest.param("repo@md5:" + "a" * 64, "digest", id="other-algorithm"),
        pytest.param("registry.io//repo", "component", id="empty-component"),
        pytest.param("registry.io/-repo", "component", id="leading-dash"),
        pytest.param("myregistry.io/re$po", "component", id="bad-characters"),
        pytest.param("-bad.io:5000/repo", "registry", id="bad-registry"),
    ],
)
def test_bad_image_references_name_the_accepted_form(ref: str, word: str) -> None:
    reason = check_image_reference(ref)
    assert reason is not None
    assert word in reason
    assert "[registry[:port]/]repository[:tag][@sha256:<64 hex digits>]" in reason
