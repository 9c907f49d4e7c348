"""`kaito demo-scale`'s parts: its watch over several kinds' tables, and its load and timed request on real HTTP."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from kaito_sim.demo.load import LoadReport, run_load, timed_chat
from kaito_sim.demo.registry import DemoFailed
from kaito_sim.demo.tablewatch import TableWatch, changes, parse_tables
from tests.runtime.conftest import eventually

BEFORE = """NAME                         REPLICAS   READY   AGE
inferenceset.kaito.sh/chat   1          0       3s

NAME                            INSTANCE           RESOURCEREADY   INFERENCEREADY   WORKSPACEREADY   AGE
workspace.kaito.sh/chat-qnjcn   Standard_NC6s_v3   True            False            False            3s

NAME                                        STATUS   ROLES    AGE   VERSION
node/aks-kw7uao5b6sbx-39967371-vmss000000   Ready    <none>   1s    v1.32.0
node/aks-system-00000000                    Ready    <none>   3s    v1.32.0
"""
# Two seconds later: the set is ready and its node has gone; the system node's row is padded differently now.
AFTER = """NAME                         REPLICAS   READY   AGE
inferenceset.kaito.sh/chat   1          1       5s

NAME                            INSTANCE           RESOURCEREADY   INFERENCEREADY   WORKSPACEREADY   AGE
workspace.kaito.sh/chat-qnjcn   Standard_NC6s_v3   True            False            False            5s

NAME                       STATUS   ROLES    AGE   VERSION
node/aks-system-00000000   Ready    <none>   5s    v1.32.0
"""


def test_tables_are_read_per_kind_without_their_age_column() -> None:
    tables = parse_tables(BEFORE)
    assert list(tables) == ["inferenceset.kaito.sh", "workspace.kaito.sh", "node"]
    header, rows = tables["node"]
    assert header.split() == ["NAME", "STATUS", "ROLES", "VERSION"]
    assert rows["node/aks-system-00000000"].split() == ["node/aks-system-00000000", "Ready", "<none>", "v1.32.0"]
    assert tables["inferenceset.kaito.sh"][1]["inferenceset.kaito.sh/chat"].split()[1:] == ["1", "0"]


def test_a_blank_cell_stays_blank_and_age_last_is_dropped() -> None:
    header = "NAME                         REPLICAS   READY   AGE"
    tables = parse_tables(f"{header}\ninferenceset.kaito.sh/chat   1                  0s\n")
    assert tables["inferenceset.kaito.sh"][1]["inferenceset.kaito.sh/chat"].split() == [
        "inferenceset.kaito.sh/chat",
        "1",
    ]


def test_only_changed_and_gone_rows_are_shown_under_their_kind() -> None:
    lines = changes(parse_tables(BEFORE), parse_tables(AFTER))
    assert [line.split() for line in lines] == [
        ["NAME", "REPLICAS", "READY"],
        ["inferenceset.kaito.sh/chat", "1", "1"],
        ["NAME", "STATUS", "ROLES", "VERSION"],
        ["node/aks-kw7uao5b6sbx-39967371-vmss000000", "(gone)"],
    ]
    assert changes(parse_tables(AFTER), parse_tables(AFTER)) == []


def test_a_kind_with_nothing_left_shows_its_rows_gone() -> None:
    before = parse_tables(BEFORE)
    lines = changes(before, {k: v for k, v in before.items() if k != "workspace.kaito.sh"})
    assert [line.split()[0] for line in lines] == ["NAME", "workspace.kaito.sh/chat-qnjcn"]
    assert lines[-1].endswith("(gone)")


async def test_the_watch_prints_everything_first_then_only_changes(capsys: pytest.CaptureFixture[str]) -> None:
    outputs = iter([BEFORE, "", AFTER, AFTER])

    async def get() -> str:
        text = next(outputs)
        if not text:
            raise DemoFailed("kubectl get failed")
        return text

    watch = TableWatch(get, "inferenceset,workspaces,nodes", origin=0.0)
    await watch.poll()
    first = capsys.readouterr().out
    assert "workspace.kaito.sh/chat-qnjcn" in first and "aks-system-00000000" in first
    await watch.poll()  # a failed kubectl: nothing printed, nothing forgotten
    assert capsys.readouterr().out == ""
    await watch.poll()
    changed = capsys.readouterr().out
    assert "chat-qnjcn" not in changed and "(gone)" in changed
    await watch.poll()
    assert capsys.readouterr().out == ""


class Engine:
    """A chat completions endpoint on loopback that answers 200 once `open` is set and 503 before."""

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.prompts: list[str] = []

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.prompts.append(body["messages"][0]["content"])
        if not self.open.is_set():
            return web.json_response({"error": {"message": "busy"}}, status=503)
        if not body.get("stream"):
            return web.json_response({"choices": [{"message": {"role": "assistant", "content": "hi"}}]})
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for piece in ("", "Hel", "lo"):  # a first chunk with the role only, as OpenAI's streams begin
            delta = {"content": piece} if piece else {"role": "assistant"}
            await response.write(f"data: {json.dumps({'choices': [{'delta': delta}]})}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        return response


@pytest.fixture
async def engine() -> AsyncIterator[tuple[Engine, str]]:
    served = Engine()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", served.chat)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield served, f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def test_the_load_counts_answers_and_failures_until_stopped(engine: tuple[Engine, str]) -> None:
    served, url = engine
    stop, report = asyncio.Event(), LoadReport()
    task = asyncio.create_task(run_load(url, clients=3, stop=stop, report=report))
    await eventually(lambda: bool(report.failures), within=30)
    served.open.set()
    await eventually(lambda: report.answered >= 10, within=30)
    stop.set()
    assert await task is report
    assert report.in_flight == 0 and report.failures["HTTP 503"] >= 1
    assert len(served.prompts) == report.answered + sum(report.failures.values())
    assert len({p.split(",")[0] for p in served.prompts}) == 3  # each client's prompts begin with its own prefix
    assert "answered, 0 in flight, failed: " in report.summary()


async def test_a_refused_endpoint_is_a_failure_not_an_error() -> None:
    stop, report = asyncio.Event(), LoadReport()
    task = asyncio.create_task(run_load("http://127.0.0.1:1", clients=1, stop=stop, report=report))
    await eventually(lambda: bool(report.failures), within=30)
    stop.set()
    await task
    assert report.answered == 0 and list(report.failures) == ["ClientConnectorError"]


async def test_a_timed_request_reads_its_streamed_text(engine: tuple[Engine, str]) -> None:
    served, url = engine
    served.open.set()
    timed = await timed_chat(url, "hello")
    assert (timed.status, timed.text) == (200, "Hello")
    assert timed.first_token_s is not None and timed.first_token_s <= timed.done_s


async def test_a_timed_request_refused_has_no_first_token(engine: tuple[Engine, str]) -> None:
    timed = await timed_chat(engine[1], "hello")
    assert (timed.status, timed.first_token_s, timed.text) == (503, None, "")
