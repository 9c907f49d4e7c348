"""The simulated cluster's child processes: each in its own session, killed with its parent, stopped gracefully."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """In a child (`preexec_fn`): have Linux kill it when the process that started it dies, so nothing is orphaned."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


async def start(
    argv: list[str], env: Mapping[str, str], cwd: Path, *, stdin: bool = False, merge_stderr: bool = False
) -> asyncio.subprocess.Process:
    """Start `argv` with its output piped, leading a session of its own (so its children are signalled with it).

    `stdin` pipes its standard input too (else it reads nothing); `merge_stderr` sends stderr to stdout's pipe.
    """
    return await asyncio.create_subprocess_exec(
        *argv,
        env=dict(env),
        cwd=cwd,
        stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT if merge_stderr else asyncio.subprocess.PIPE,
        start_new_session=True,
        preexec_fn=die_with_parent,
        limit=1 << 20,
    )


def send(proc: asyncio.subprocess.Process, sig: int) -> None:
    """Signal the process and everything in its session (no error when it is gone)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


async def terminate(procs: list[asyncio.subprocess.Process], grace: float) -> None:
    """SIGTERM, and SIGKILL whatever still runs `grace` seconds later; returns once all have exited."""
    alive = [p for p in procs if p.returncode is None]
    for proc in alive:
        send(proc, signal.SIGTERM)
    if alive:
        await asyncio.wait([asyncio.create_task(p.wait()) for p in alive], timeout=grace)
        for proc in alive:
            if proc.returncode is None:
                send(proc, signal.SIGKILL)
        await asyncio.gather(*(p.wait() for p in alive))


async def pump(stream: asyncio.StreamReader | None, sink: Callable[[str], None]) -> None:
    """Hand every line of `stream` to `sink` until it ends."""
    if stream is None:
        return
    while True:
        try:
            line = await stream.readline()
        except ValueError:  # a line longer than the buffer: take it in pieces
            line = await stream.read(1 << 16)
        if not line:
            return
        sink(line.decode(errors="replace"))


def exit_code(returncode: int) -> int:
    """A process's exit code as container runtimes report it: killed by signal N is 128 + N."""
    return 128 - returncode if returncode < 0 else returncode
