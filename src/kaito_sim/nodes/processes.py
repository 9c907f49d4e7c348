"""Process pods: opt-in, the simulated kubelet runs chosen images' containers as real local processes.

With `SimServer(process_pods=ProcessPods())` a pod whose container image is `kaito-runtime` (any registry or
tag; `images=("kaito-runtime", "kaito-manager")` adds the manager's image) runs that container's command on this
machine (see `kaito_sim.nodes.launch`), with a kubeconfig for its service account in `KUBECONFIG` and its listening
flags moved to free local ports. Its status follows the process: Running once started, Ready once its
readiness probe passes, terminated with the exit code and the last lines of stderr when it exits, restarted
with back-off as the restart policy says. Its output is what `kubectl logs` shows, and the API server's proxy
(`kaito_sim.nodes.proxy`) and admission webhook calls (`kaito_sim.apiserver.admission`) reach it at its local ports.
`kaito serve` loads a tiny random model in place of the preset's weights (no GPU, no download): a real server
whose answers are random tokens. Every process dies with its pod, with the `SimServer`, and with this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import logging
import os
import shutil
import signal
import socket
import tempfile
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kaito_sim.apiserver.cluster import Cluster
from kaito_sim.apiserver.errors import JsonObj
from kaito_sim.nodes import children
from kaito_sim.nodes.launch import (
    Issuer,
    Launch,
    LaunchError,
    bind_overrides,
    declared_ports,
    image_matches,
    is_serve,
    launch,
    serve_overrides,
    service_account_kubeconfig,
)
from kaito_sim.nodes.probes import Prober, follow
from kaito_sim.nodes.standin import StandInModel
from kaito_sim.workloads.common import Key
from kaito_sim.workloads.podstatus import ContainerRun, Exit

log = logging.getLogger(__name__)

_MESSAGE_LINES, _MESSAGE_BYTES = 10, 2048  # how much of stderr becomes the termination message
_MAX_BACKOFF = 300.0


@dataclass(frozen=True)
class ProcessPods:
    """Which pods run as local processes, and how the simulated kubelet runs them."""

    images: tuple[str, ...] = ("kaito-runtime",)  # image repositories, matched whatever the registry and tag
    model_dir: Path | None = None  # what `kaito serve` loads; None: the tiny random model, built once per server
    probe_interval: float = 0.2  # seconds between probes while a container is not ready yet
    restart_backoff: float = 10.0  # the first restart's delay; it doubles per restart, up to five minutes
    max_grace: float = 10.0  # caps terminationGracePeriodSeconds between SIGTERM and SIGKILL


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class _Container:
    """One container: its current process, its local ports and what the kubelet reports about it."""

    def __init__(self, spec: JsonObj) -> None:
        self.spec = spec
        self.name = str(spec.get("name", ""))
        self.proc: asyncio.subprocess.Process | None = None
        self.launch: Launch | None = None
        self.ports: dict[int, int] = {}  # container port -> local port
        self.any_port = False  # a command we did not rewrite listens where it likes: a port is itself
        self.run = ContainerRun()
        self.task: asyncio.Task[None] | None = None


class _Pod:
    def __init__(self, key: Key, pod: JsonObj, root: Path, containers: list[JsonObj]) -> None:
        self.key, self.pod, self.root = key, pod, root
        self.uid = str(pod["metadata"].get("uid", ""))
        self.containers = {c.name: c for c in map(_Container, containers)}
        self.stopping = False


class Processes:
    """Starts, watches and stops the processes of one simulated cluster's process pods."""

    def __init__(self, options: ProcessPods, cluster: Cluster) -> None:
        self.options, self.cluster = options, cluster
        self._tmp = tempfile.TemporaryDirectory(prefix="kaito-pods-")
        self._pods: dict[Key, _Pod] = {}
        self._retiring: dict[_Pod, asyncio.Task[None]] = {}
        self._listeners: list[Callable[[Key], None]] = []
        self._model = StandInModel(options.model_dir, Path(self._tmp.name))
        self._prober = Prober()
        self._api: tuple[str, bytes, Issuer] | None = None

    def connect(self, server: str, ca_pem: bytes, issue: Issuer) -> None:
        """Where pods' processes reach the API server, and how their service account tokens are minted."""
        self._api = (server, ca_pem, issue)

    def subscribe(self, listener: Callable[[Key], None]) -> None:
        """Call `listener(key)` whenever what a pod's processes do changes (the kubelet re-reports the pod)."""
        self._listeners.append(listener)

    def _changed(self, key: Key) -> None:
        for listener in list(self._listeners):
            listener(key)

    def matching(self, pod: JsonObj) -> list[JsonObj]:
        containers = (pod.get("spec") or {}).get("containers") or []
        return [
            c for c in containers if isinstance(c, dict) and image_matches(str(c.get("image", "")), self.options.images)
        ]

    def sync(self, key: Key, pod: JsonObj) -> dict[str, ContainerRun] | None:
        """Start `pod`'s processes unless they run already; what each of its process containers does now."""
        current = self._pods.get(key)
        if current is not None and current.uid != pod["metadata"].get("uid"):
            self.retire(key)
            current = None
        if current is None:
            containers = self.matching(pod)
            if not containers:
                return None
            root = Path(self._tmp.name) / f"{key[0]}_{key[1]}_{str(pod['metadata'].get('uid', ''))[:8]}"
            current = self._pods[key] = _Pod(key, pod, root, containers)
            for c in current.containers.values():
                self.cluster.pod_logs.pop((key[0], key[1], c.name), None)  # a new pod, not its namesake's log
                c.task = asyncio.create_task(self._lifecycle(current, c), name=f"pod-process-{key[1]}-{c.name}")
        return {name: c.run for name, c in current.containers.items()}

    def retire(self, key: Key) -> None:
        """Stop the processes run for `key` (the pod is gone, replaced, terminating, finished or under a fault)."""
        pod = self._pods.pop(key, None)
        if pod is not None:
            grace = min(_termination_grace(pod.pod), self.options.max_grace)
            task = asyncio.create_task(self._stop(pod, grace), name=f"stop-{key[1]}")
            self._retiring[pod] = task
            task.add_done_callback(lambda _task: self._retired(pod))

    def _retired(self, pod: _Pod) -> None:
        self._retiring.pop(pod, None)
        self._changed(pod.key)

    def busy(self, key: Key) -> bool:
        """Whether processes of a pod named `key` still run or are being stopped."""
        return key in self._pods or any(p.key == key for p in self._retiring)

    def local_port(self, namespace: str, pod: str, uid: str, port: int) -> int | None:
        """Where on this machine the process pod's `port` listens; None when it is not a process pod."""
        run = self._pods.get((namespace, pod))
        if run is None or run.uid != uid:
            return None
        for c in run.containers.values():
            if port in c.ports:
                return c.ports[port]
        return port if any(c.any_port for c in run.containers.values()) else None

    def pid(self, namespace: str, pod: str, container: str) -> int | None:
        """The process id of the container's running process, if it runs (for tests and debugging)."""
        run = self._pods.get((namespace, pod))
        c = run.containers.get(container) if run is not None else None
        proc = c.proc if c is not None else None
        return proc.pid if proc is not None and proc.returncode is None else None

    async def close(self) -> None:
        for key in list(self._pods):
            self.retire(key)
        await asyncio.gather(*self._retiring.values(), return_exceptions=True)
        await self._prober.close()
        self._tmp.cleanup()

    # ----- one container's life

    async def _lifecycle(self, pod: _Pod, c: _Container) -> None:
        delay, policy = self.options.restart_backoff, (pod.pod.get("spec") or {}).get("restartPolicy", "Always")
        attempt = 0
        while not pod.stopping:
            try:
                await self._prepare(pod, c)
            except (LaunchError, OSError, ValueError) as exc:
                reason, message = (exc.reason, exc.message) if isinstance(exc, LaunchError) else ("", str(exc))
                if not reason:
                    log.warning("pod %s/%s: container %s cannot start: %s", *pod.key, c.name, exc)
                waiting = (reason or "CreateContainerError", message)
                if c.run.waiting != waiting or c.run.started_at:
                    c.run = dataclasses.replace(c.run, started_at="", ready=False, waiting=waiting)
                    self._changed(pod.key)
                await asyncio.sleep(1.0)  # tried again as the kubelet's sync loop comes round
                continue
            end = await self._once(pod, c, attempt)
            if pod.stopping:
                return
            if policy == "Never" or (policy == "OnFailure" and end.code == 0):
                c.run = dataclasses.replace(c.run, started_at="", ready=False, exited=end, final=True)
                self._changed(pod.key)
                return
            meta = pod.pod["metadata"]
            where = f"container={c.name} pod={meta['name']}_{meta.get('namespace', '')}({pod.uid})"
            waiting = ("CrashLoopBackOff", f"back-off {delay:g}s restarting failed {where}")
            c.run = dataclasses.replace(c.run, started_at="", ready=False, started=False, exited=end, waiting=waiting)
            self._changed(pod.key)
            await asyncio.sleep(delay)
            delay, attempt = min(delay * 2, _MAX_BACKOFF), attempt + 1

    async def _prepare(self, pod: _Pod, c: _Container) -> None:
        """Work out the command, write the volumes, and for `kaito serve` swap in the stand-in model and a port."""
        pod.root.mkdir(parents=True, exist_ok=True)  # the container's working directory
        spec = launch(self.cluster.store.get, pod.pod, c.spec, pod.root)
        declared = set(declared_ports(c.spec).values())
        c.ports, c.any_port = {p: p for p in declared}, True
        if is_serve(spec.argv):
            model, port = await self._model.path(), _free_port()
            config_port = serve_overrides(spec, model, port)
            c.ports, c.any_port = {p: port for p in {*declared, config_port}}, False
        elif (bound := bind_overrides(spec, _free_port)) is not None:
            c.ports, c.any_port = bound, False
        if self._api is not None and "KUBECONFIG" not in spec.env:
            kubeconfig = service_account_kubeconfig(pod.pod, pod.root, *self._api)
            if kubeconfig is not None:
                spec.env["KUBECONFIG"] = str(kubeconfig)
        c.launch = spec

    async def _once(self, pod: _Pod, c: _Container, attempt: int) -> Exit:
        """Run the container's process once, to its end."""
        assert c.launch is not None
        started = _now()
        env = {**os.environ, "HOSTNAME": pod.key[1], "PYTHONUNBUFFERED": "1", **c.launch.env}
        try:
            proc = await children.start(c.launch.argv, env, pod.root)
        except (OSError, ValueError) as exc:  # no such executable, no permission, a NUL in an argument
            c.run = dataclasses.replace(c.run, restarts=attempt)
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            message = f"failed to start container process: exec: {c.launch.argv[0]!r}: {why}"
            return Exit(128, "StartError", started, started, message)
        c.proc = proc
        if pod.stopping:
            children.send(proc, signal.SIGKILL)
        no_startup = not isinstance(c.spec.get("startupProbe"), dict)
        c.run = ContainerRun(started_at=started, started=no_startup, restarts=attempt, exited=c.run.exited)
        self._changed(pod.key)
        tail: deque[str] = deque(maxlen=_MESSAGE_LINES)

        def printed(line: str) -> None:  # what `kubectl logs` shows
            self.cluster.append_log(pod.key[0], pod.key[1], c.name, line)

        def complained(line: str) -> None:  # stderr: also the termination message's source
            printed(line)
            tail.append(line)

        readers = [
            asyncio.create_task(children.pump(out, sink))
            for out, sink in ((proc.stdout, printed), (proc.stderr, complained))
        ]
        probes = asyncio.create_task(
            follow(
                self._prober,
                c.spec,
                lambda port: self._port(c, port),
                c.launch,
                interval=self.options.probe_interval,
                started=lambda: self._update(pod, c, started=True),
                ready=lambda ready: self._update(pod, c, ready=ready),
            )
        )
        try:
            code = await proc.wait()
        finally:
            probes.cancel()
            try:
                await asyncio.wait(readers, timeout=1.0)  # the output's last lines, unless something holds the pipe
            finally:
                for reader in readers:
                    reader.cancel()
        code = children.exit_code(code)
        message = "".join(tail)[-_MESSAGE_BYTES:]
        return Exit(code, "Completed" if code == 0 else "Error", started, _now(), message)

    def _update(self, pod: _Pod, c: _Container, *, started: bool | None = None, ready: bool | None = None) -> None:
        run = dataclasses.replace(
            c.run, started=c.run.started if started is None else started, ready=c.run.ready if ready is None else ready
        )
        if run != c.run:
            c.run = run
            self._changed(pod.key)

    def _port(self, c: _Container, port: object) -> int:
        number = declared_ports(c.spec).get(str(port)) if not str(port).isdigit() else int(str(port))
        if number is None:
            raise ValueError(f"no container port named {port}")
        return c.ports.get(number, number)

    # ----- stopping

    async def _stop(self, pod: _Pod, grace: float) -> None:
        """SIGTERM every process of the pod, SIGKILL what still runs after `grace` seconds, then clean up."""
        pod.stopping = True
        await children.terminate([c.proc for c in pod.containers.values() if c.proc is not None], grace)
        for c in pod.containers.values():
            if c.task is not None:
                c.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await c.task
            if c.proc is not None and c.proc.returncode is None:  # started in a race with this stop
                children.send(c.proc, signal.SIGKILL)
                await c.proc.wait()
        shutil.rmtree(pod.root, ignore_errors=True)


def _termination_grace(pod: JsonObj) -> float:
    """Seconds from SIGTERM to SIGKILL for `pod`'s processes: its `terminationGracePeriodSeconds` (default 30).

    The simulated API server removes a deleted pod at once (or marks it with a zero grace period while
    finalizers hold it), so the pod spec, not the deletion, says how long its processes get.
    """
    return float((pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30))
