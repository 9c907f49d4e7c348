"""One run of a container's process, as `pods/attach` sees it: its output so far, then each line as it comes.

The simulated kubelet keeps what the current run printed (up to `KEEP` lines) so that an attach arriving after
the process has already printed, or even after it has exited, still shows the whole output: `kubectl run -it`
attaches only once the pod is Ready, and a short command may be done by then. A real container runtime
shows an attach only what comes after it; the simulator replays what came before first, on purpose.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator

STDOUT, STDERR = 1, 2  # the stream numbers of the remote-command protocols
KEEP = 100_000  # lines of one run kept for attaches that come later


class Output:
    """The lines one process run printed (stream, text), fanned out to every attached follower."""

    def __init__(self, *, keep: int = KEEP) -> None:
        self._lines: deque[tuple[int, str]] = deque(maxlen=keep)
        self._followers: set[asyncio.Queue[tuple[int, str] | None]] = set()
        self.ended = False

    def add(self, stream: int, line: str) -> None:
        self._lines.append((stream, line))
        for queue in self._followers:
            queue.put_nowait((stream, line))

    def end(self) -> None:
        """The process has exited and its pipes are drained: followers get nothing more."""
        self.ended = True
        for queue in self._followers:
            queue.put_nowait(None)
        self._followers.clear()

    async def follow(self) -> AsyncIterator[tuple[int, str]]:
        """Every line printed so far, then each new one until the run ends."""
        queue: asyncio.Queue[tuple[int, str] | None] = asyncio.Queue()
        backlog, ended = list(self._lines), self.ended  # taken together with subscribing: nothing falls between
        if not ended:
            self._followers.add(queue)
        try:
            for item in backlog:
                yield item
            while not ended and (item_or_end := await queue.get()) is not None:
                yield item_or_end
        finally:
            self._followers.discard(queue)
