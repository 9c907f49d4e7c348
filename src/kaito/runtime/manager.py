"""The manager: one process running servers, the shared cache, controllers and leader election, in order.

Start order: HTTP servers (metrics, health) -> caches (and wait for sync) -> runnables that need no
leadership -> leader election -> leader-elected runnables (controllers). Stop order is the reverse:
controllers drain their queues (bounded by `graceful_shutdown_timeout`), the lease is released so a
standby takes over at once, then caches and servers stop. Losing the lease stops the controllers and
makes `run` raise `LeadershipLost`, so the process exits and is restarted as a follower.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import uuid
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field

from kaito.runtime.cache import Cache
from kaito.runtime.client import Client
from kaito.runtime.clock import REAL_CLOCK, Clock
from kaito.runtime.controller import Controller
from kaito.runtime.informer import Selectors
from kaito.runtime.kinds import Kind
from kaito.runtime.leader import LeaderElectionConfig, LeaderElector
from kaito.runtime.metrics import RuntimeMetrics
from kaito.runtime.servers import Check, Probes, Server, health_server, metrics_server
from kaito.runtime.tasks import CrashRecorder, Runnable, guard

log = logging.getLogger(__name__)


class LeadershipLost(Exception):
    """This replica stopped renewing its lease; its controllers were stopped."""


def default_identity() -> str:
    return f"{os.environ.get('POD_NAME') or socket.gethostname()}_{uuid.uuid4().hex[:8]}"


@dataclass
class ManagerOptions:
    metrics_address: str | None = ":8080"
    health_address: str | None = ":8081"
    leader_election: bool = False
    leader_election_id: str = ""
    leader_election_namespace: str = "default"
    identity: str = field(default_factory=default_identity)
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    release_lease_on_stop: bool = True
    graceful_shutdown_timeout: float = 30.0
    namespace: str | None = None  # restrict every namespaced informer to one namespace
    cache_selectors: Mapping[Kind, Selectors] = field(default_factory=dict)
    relist_backoff: tuple[float, float] = (0.8, 30.0)
    detect_mutations: bool | None = None  # see `Cache`; None follows KAITO_CACHE_MUTATION_DETECTOR


@dataclass
class _Entry:
    name: str
    runnable: Runnable
    leader_elected: bool


class Manager:
    """Owns the client, the shared cache and everything that runs on them.

    Controllers, leader election and `/metrics` use `metrics`, by default the client's, so one registry
    holds the client's requests next to the reconciles they served.
    """

    def __init__(
        self,
        client: Client,
        *,
        options: ManagerOptions | None = None,
        clock: Clock = REAL_CLOCK,
        metrics: RuntimeMetrics | None = None,
    ) -> None:
        self.client = client
        self.options = options or ManagerOptions()
        self.clock = clock
        self.metrics = metrics if metrics is not None else client.metrics
        self.crashes = CrashRecorder()
        opts = self.options
        self.cache = Cache(
            client,
            clock=clock,
            selectors=opts.cache_selectors,
            default_namespace=opts.namespace,
            crashes=self.crashes,
            relist_backoff=opts.relist_backoff,
            detect_mutations=opts.detect_mutations,
        )
        self.elector: LeaderElector | None = None
        if opts.leader_election:
            if not opts.leader_election_id:
                raise ValueError("leader_election_id is required when leader_election is on")
            config = LeaderElectionConfig(
                name=opts.leader_election_id,
                namespace=opts.leader_election_namespace,
                identity=opts.identity,
                lease_duration=opts.lease_duration,
                renew_deadline=opts.renew_deadline,
                retry_period=opts.retry_period,
                release_on_stop=opts.release_lease_on_stop,
            )
            self.elector = LeaderElector(client, config, clock=clock, metrics=self.metrics)
        self._entries: list[_Entry] = []
        self.controllers: list[Controller] = []
        self.probes = Probes(
            health={"runnables": self._crash_check},
            ready={"cache-sync": self._sync_check, "runnables": self._crash_check},
        )
        self.servers: dict[str, Server] = {}
        self.started = asyncio.Event()  # caches synced, non-elected runnables running
        self.elected = asyncio.Event()  # leader-elected runnables running

    # ----- wiring

    def add(self, runnable: Runnable, *, name: str, leader_elected: bool = True) -> None:
        self._entries.append(_Entry(name, runnable, leader_elected))

    def add_controller(self, controller: Controller) -> None:
        self.controllers.append(controller)
        for watch in controller.watches:
            self.cache.informer(watch.kind)
        self.add(controller.run, name=f"controller-{controller.name}", leader_elected=True)

    def add_health_check(self, name: str, check: Check) -> None:
        self.probes.health[name] = check

    def add_ready_check(self, name: str, check: Check) -> None:
        self.probes.ready[name] = check

    def _crash_check(self) -> str | None:
        crashed = self.crashes.crashed
        return None if not crashed else "; ".join(f"{name}: {why}" for name, why in crashed.items())

    def _sync_check(self) -> str | None:
        return None if self.started.is_set() else "caches not synced"

    # ----- running

    async def run(self, stop: asyncio.Event | None = None, *, handle_signals: bool = False) -> None:
        """Run until `stop` is set (or SIGTERM/SIGINT with `handle_signals`), then shut down in reverse order."""
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        signals = (signal.SIGTERM, signal.SIGINT) if handle_signals else ()
        for sig in signals:
            loop.add_signal_handler(sig, stop.set)
        try:
            await self._start_servers()
            lost = await self._run_groups(stop)
        finally:
            for server in reversed(self.servers.values()):
                await server.stop()
            for sig in signals:
                loop.remove_signal_handler(sig)
        if lost:
            raise LeadershipLost(f"{self.options.identity} lost lease {self.options.leader_election_id}")

    async def _start_servers(self) -> None:
        opts = self.options
        if opts.metrics_address is not None:
            self.servers["metrics"] = metrics_server(opts.metrics_address, self.metrics)
        if opts.health_address is not None:
            self.servers["health"] = health_server(opts.health_address, self.probes)
        for server in self.servers.values():
            await server.start()

    async def _run_groups(self, stop: asyncio.Event) -> bool:
        """Returns True when leadership was lost."""
        cache_stop, plain_stop, elected_stop, elector_stop = (asyncio.Event() for _ in range(4))
        cache_task = self._spawn("cache", self.cache.run(cache_stop))
        plain: list[asyncio.Task[None]] = []
        elected: list[asyncio.Task[None]] = []
        elector_task: asyncio.Task[None] | None = None
        lost = False
        try:
            if not await self._until(self.cache.wait_for_sync(), stop):
                return False
            self.started.set()
            plain = [self._spawn(e.name, e.runnable(plain_stop)) for e in self._entries if not e.leader_elected]
            if self.elector is not None:
                elector_task = self._spawn("leader-election", self.elector.run(elector_stop))
                if not await self._until(self.elector.leading.wait(), stop):
                    return False
            elected = [self._spawn(e.name, e.runnable(elected_stop)) for e in self._entries if e.leader_elected]
            self.elected.set()
            lost = await self._wait_stop_or_lost(stop)
            return lost
        finally:
            await self._stop_tasks(elected, elected_stop, self.options.graceful_shutdown_timeout)
            self.elected.clear()
            if elector_task is not None:
                await self._stop_tasks([elector_task], elector_stop, self.options.renew_deadline)
            await self._stop_tasks(plain, plain_stop, self.options.graceful_shutdown_timeout)
            await self._stop_tasks([cache_task], cache_stop, 5.0)
            self.started.clear()

    async def _wait_stop_or_lost(self, stop: asyncio.Event) -> bool:
        waits = {asyncio.ensure_future(stop.wait())}
        if self.elector is not None:
            waits.add(asyncio.ensure_future(self.elector.lost.wait()))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waits:
                waiter.cancel()
        return self.elector is not None and self.elector.lost.is_set()

    async def _until(self, awaitable: Awaitable[object], stop: asyncio.Event) -> bool:
        """Await `awaitable` unless `stop` comes first; True when it completed."""
        work = asyncio.ensure_future(awaitable)
        stopper = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({work, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
            if not work.done():
                work.cancel()
        return bool(work.done() and not work.cancelled())

    def _spawn(self, name: str, work: Awaitable[None]) -> asyncio.Task[None]:
        return asyncio.create_task(guard(name, work, self.crashes), name=name)

    @staticmethod
    async def _stop_tasks(tasks: list[asyncio.Task[None]], stop: asyncio.Event, grace: float) -> None:
        stop.set()
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=grace)
        for task in pending:
            log.warning("task %s did not stop within %.0fs; cancelling", task.get_name(), grace)
            task.cancel()
        if pending:
            await asyncio.wait(pending)
