"""Asking the set for a replica while requests are held: its `kaito.sh/demand` annotation, at most once per interval.

The annotation carries the time of the latest held request; the set's controller scales up from zero when it is
newer than its last scale to zero. A patch that fails is tried again after the interval while requests are still
held, and the same time is never written twice.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable

from kaito.gateway.names import ANNOTATION_DEMAND, INFERENCESET
from kaito.runtime.client import Client
from kaito.runtime.clock import Clock, api_time

log = logging.getLogger(__name__)

DemandSink = Callable[[dt.datetime], Awaitable[None]]
DEMAND_INTERVAL = 5.0


def api_demand(client: Client, *, namespace: str, inferenceset: str) -> DemandSink:
    """Writes the demand time on the InferenceSet with a merge patch of its annotation."""

    async def patch(at: dt.datetime) -> None:
        body = {"metadata": {"annotations": {ANNOTATION_DEMAND: api_time(at)}}}
        await client.patch(INFERENCESET, inferenceset, body, namespace=namespace)

    return patch


class Demand:
    """`note` each held request; `run` writes the latest one to the sink, no more often than `interval`."""

    def __init__(self, sink: DemandSink, *, clock: Clock, interval: float = DEMAND_INTERVAL) -> None:
        self.sink = sink
        self.clock = clock
        self.interval = interval
        self._latest: dt.datetime | None = None
        self._sent: dt.datetime | None = None
        self._wake = asyncio.Event()

    def note(self, at: dt.datetime) -> None:
        self._latest = at
        self._wake.set()

    async def run(self, holding: Callable[[], bool]) -> None:
        """Forever: on a held request write its time, then rest `interval`; `holding` says if any request waits."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            at = self._latest
            if at is None or at == self._sent or not holding():
                continue
            try:
                await self.sink(at)
                self._sent = at
            except Exception as exc:  # the API may be away for a while; held requests keep waiting
                log.warning("could not ask for a replica: %s", exc)
            await self.clock.sleep(self.interval)
            if holding():
                self._wake.set()
