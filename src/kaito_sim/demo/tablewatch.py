"""`kubectl get` of several kinds, polled, printing only the rows that changed: a `--watch` across kinds.

`kubectl get --watch` follows one kind; the scale demo wants an InferenceSet, its Workspaces and the nodes in one
view. `TableWatch` runs `kubectl get KINDS` every second and prints, under each kind's header, the rows that are
new or changed since the last poll (padding aside; the AGE column, which changes every second, left out) and the
rows that went.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from kaito_sim.demo.registry import DemoFailed

Rows = dict[str, str]  # row name -> the row as shown
Tables = dict[str, tuple[str, Rows]]  # a section's first header cell and kind -> (its header, its rows)
IGNORED_COLUMN = "AGE"


def _drop_column(header: str, line: str, column: str) -> str:
    """`line` without the cell under `column` (by the header's offsets); unchanged when the header lacks it."""
    start = header.find(f"{column} ")
    if start < 0 and header.endswith(column):
        start = len(header) - len(column)
    if start < 0:
        return line.rstrip()
    rest = header[start + len(column) :]
    stop = len(header) - len(rest.lstrip(" ")) if rest.strip() else len(line)
    return (line[:start] + line[stop:]).rstrip()


def parse_tables(output: str) -> Tables:
    """`kubectl get a,b,c`'s sections, keyed by the kind part of their rows' names (`inferenceset.kaito.sh`)."""
    tables: Tables = {}
    for section in output.strip("\n").split("\n\n"):
        lines = [line for line in section.splitlines() if line.strip()]
        if len(lines) < 2:
            continue
        header = lines[0]
        rows = {line.split()[0]: _drop_column(header, line, IGNORED_COLUMN) for line in lines[1:]}
        kind = next(iter(rows)).split("/")[0] if "/" in next(iter(rows)) else ""
        tables[kind] = (_drop_column(header, header, IGNORED_COLUMN), rows)
    return tables


def _cells(row: str) -> list[str]:
    """A row's cells: the padding changes with the widest row of its kind, which is no change to the row."""
    return row.split()


def changes(before: Tables, after: Tables) -> list[str]:
    """The lines to print for the step from `before` to `after`: per kind, its header then changed and gone rows."""
    out: list[str] = []
    for kind in [*after, *(k for k in before if k not in after)]:
        header = (after.get(kind) or before[kind])[0]
        was = before.get(kind, ("", {}))[1]
        now = after.get(kind, ("", {}))[1]
        changed = [row for name, row in now.items() if _cells(was.get(name, "")) != _cells(row)]
        gone = [f"{name}   (gone)" for name in was if name not in now]
        if changed or gone:
            out += [header, *changed, *gone]
    return out


@dataclass
class TableWatch:
    """Prints what changed in `kubectl get kinds` once a second, stamped with the seconds since `origin`."""

    get: Callable[[], Awaitable[str]]  # `kubectl get KINDS`'s output; raises DemoFailed when it fails
    kinds: str
    origin: float
    interval: float = 1.0
    tables: Tables | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one poll at a time: the watch's and a caller's

    async def poll(self) -> None:
        """One poll: print what changed since the last (everything, the first time)."""
        async with self.lock:
            await self._poll()

    async def _poll(self) -> None:
        try:
            now = parse_tables(await self.get())
        except DemoFailed:
            return  # a failed poll: the next one tells

        lines = changes(self.tables or {}, now)
        self.tables = now
        if lines:
            print(f"  [{time.monotonic() - self.origin:3.0f}s] kubectl get {self.kinds}", flush=True)
            print("\n".join(f"    {line}" for line in lines), flush=True)

    async def run(self) -> None:
        while True:
            await self.poll()
            await asyncio.sleep(self.interval)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        task = asyncio.create_task(self.run(), name="table-watch")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
