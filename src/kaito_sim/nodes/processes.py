"""Process pods: opt-in, the simulated kubelet runs chosen images' containers as real local processes.

With `SimServer(process_pods=ProcessPods())` a pod whose container image is `kaito-runtime` (any registry or
tag; `images=("kaito-runtime", "kaito-manager")` adds the manager's image) runs that container's command on this
machine (see `kaito_sim.nodes.launch`), with a kubeconfig for its service account in `KUBECONFIG` and its listening
flags moved to free local ports. Its status follows the process: Running once started, Ready once its
readiness probe passes, terminated with the exit code and the last lines of stderr when it exits, restarted
with back-off as the restart policy says. Its output is what `kubectl logs` shows, and the API server's proxy
(`kaito_sim.nodes.proxy`) and admission webhook calls (`kaito_sim.apiserver.admission`) reach it at its local ports.
`kaito serve` loads a tiny random model in place of the preset's weights (no GPU, no download): a real server
whose answers are random tokens; a model an init step pulled into one of the pod's volumes (a model image's
`/mnt/model`) is loaded as it is. Every process dies with its pod, with the `SimServer`, and with this process.
The well-known images of `kaito_sim.nodes.images` (`curlimages/curl`, `busybox`, `python`) run too, as this
machine's curl, applets and interpreter; every other image stays simulated. Service names resolve for the
processes as the cluster's DNS would resolve them (`kaito_sim.nodes.clusterdns`).

A container with `stdin: true` reads a pipe that `pods/attach` writes to (closed after the first attach when
`stdinOnce`); `pods/exec` runs a command beside a container's process, in its directory and environment
(`exec_in`). The streams themselves are served by `kaito_sim.nodes.streams`.

Init containers run first, as a kubelet runs them: one after another in spec order, each to completion
(restarted with back-off on failure unless the pod's restartPolicy is Never, which fails the pod), a sidecar
(`restartPolicy: Always`) until it has started; only then do the other containers start. Init containers
whose image is not a process image complete at once. hostPath volumes live in one directory per node
(`kaito_sim.nodes.hostpath`), checked before anything starts.
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
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kaito_sim.apiserver import errors
from kaito_sim.apiserver.cluster import Cluster
from kaito_sim.apiserver.errors import ApiError, JsonObj
from kaito_sim.nodes import children, hostpath
from kaito_sim.nodes.images import IMAGES, Image, MissingCommand
from kaito_sim.nodes.launch import (
    Issuer,
    Launch,
    LaunchError,
    bind_overrides,
    declared_ports,
    image_matches,
    is_serve,
    launch,
    mounted_model,
    refresh,
    serve_overrides,
    service_account_kubeconfig,
    termination_log,
)
from kaito_sim.nodes.output import STDERR, STDOUT, Output
from kaito_sim.nodes.probes import Prober, follow
from kaito_sim.nodes.standin import StandInModel
from kaito_sim.workloads.common import Key
from kaito_sim.workloads.podstatus import ContainerRun, Exit, PodRun

log = logging.getLogger(__name__)

_MESSAGE_LINES, _MESSAGE_BYTES = 10, 2048  # how much of stderr becomes the termination message
_TERMINATION_FILE_BYTES = 4096  # how much of the terminationMessagePath file the kubelet reads
_MAX_BACKOFF = 300.0
_ENDED_KEPT = 64  # retired pods whose last output an attach may still replay


@dataclass(frozen=True)
class Attached:
    """A container's process as `pods/attach` reaches it: its output, and its stdin if it keeps one open."""

    output: Output
    stdin: asyncio.StreamWriter | None
    stdin_once: bool  # close the container's stdin when this attach's stdin ends


NameEnvironment = Callable[[str, dict[str, str]], dict[str, str]]  # (namespace, env) -> what makes names resolve


@dataclass(frozen=True)
class ProcessPods:
    """Which pods run as local processes, and how the simulated kubelet runs them."""

    images: tuple[str, ...] = ("kaito-runtime",)  # image repositories, matched whatever the registry and tag
    ordinary: tuple[str, ...] = tuple(IMAGES)  # which images of `kaito_sim.nodes.images` run; () simulates them
    model_dir: Path | None = None  # what `kaito serve` loads; None: the tiny random model, built once per server
    probe_interval: float = 0.2  # seconds between probes while a container is not ready yet
    restart_backoff: float = 10.0  # the first restart's delay; it doubles per restart, up to five minutes
    max_grace: float = 10.0  # caps terminationGracePeriodSeconds between SIGTERM and SIGKILL
    nodes_dir: Path | None = None  # hostPath volumes live in <nodes_dir>/<node name>; None: the cluster's scratch


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class _Container:
    """One container: its current process, its local ports and what the kubelet reports about it."""

    def __init__(self, spec: JsonObj, *, process: bool = True, init: bool = False, image: Image | None = None) -> None:
        self.spec, self.process, self.init, self.image = spec, process, init, image
        self.name = str(spec.get("name", ""))
        self.proc: asyncio.subprocess.Process | None = None
        self.launch: Launch | None = None
        self.ports: dict[int, int] = {}  # container port -> local port
        self.any_port = False  # a command we did not rewrite listens where it likes: a port is itself
        self.run = ContainerRun(waiting=("PodInitializing", "")) if init else ContainerRun()
        self.task: asyncio.Task[None] | None = None
        self.output: Output | None = None  # the current (or last) run's output, for attaches

    @property
    def sidecar(self) -> bool:
        return self.init and self.spec.get("restartPolicy") == "Always"


class _Pod:
    def __init__(self, key: Key, pod: JsonObj, root: Path, node_dir: Path, containers: list[_Container]) -> None:
        self.key, self.pod, self.root, self.node_dir = key, pod, root, node_dir
        self.uid = str(pod["metadata"].get("uid", ""))
        self.containers = {c.name: c for c in containers}
        self.stopping = False
        self.initialized = False
        self.mount_error = ""
        self.task: asyncio.Task[None] | None = None  # sets up volumes, runs the init containers, starts the rest
        self.execs: set[asyncio.subprocess.Process] = set()  # commands exec'd beside the containers, still running

    def report(self) -> PodRun:
        runs = {name: c.run for name, c in self.containers.items()}
        return PodRun(runs, initialized=self.initialized, mount_error=self.mount_error)


class Processes:
    """Starts, watches and stops the processes of one simulated cluster's process pods."""

    def __init__(self, options: ProcessPods, cluster: Cluster, *, names: NameEnvironment | None = None) -> None:
        """`names` gives a process of a pod in a namespace what makes the cluster's Service names resolve."""
        self.options, self.cluster, self._names = options, cluster, names
        self._tmp = tempfile.TemporaryDirectory(prefix="kaito-pods-")
        self._pods: dict[Key, _Pod] = {}
        self._retiring: dict[_Pod, asyncio.Task[None]] = {}
        # The last runs' output of pods retired lately (uid, container -> output), for attaches that come late.
        self._ended: OrderedDict[Key, tuple[str, dict[str, Output]]] = OrderedDict()
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

    def _containers(self, pod: JsonObj) -> list[_Container]:
        """The pod's init containers (all of them: they run in order) and its process containers."""
        spec = pod.get("spec") or {}
        inits = [c for c in spec.get("initContainers") or [] if isinstance(c, dict)]
        mains = [c for c in spec.get("containers") or [] if isinstance(c, dict)]
        kinds = [self._kind(str(c.get("image", ""))) for c in inits + mains]
        if not any(kinds):
            return []
        found = [
            _Container(c, process=k is not False, init=True, image=_image(k))
            for c, k in zip(inits, kinds[: len(inits)], strict=True)
        ]
        return found + [_Container(c, image=_image(k)) for c, k in zip(mains, kinds[len(inits) :], strict=True) if k]

    def _kind(self, image: str) -> Image | bool:
        """How a container of `image` runs: a process image's own command (True), a well-known image, or not (False)."""
        if image_matches(image, self.options.images):
            return True
        return next((IMAGES[n] for n in self.options.ordinary if n in IMAGES and image_matches(image, (n,))), False)

    def sync(self, key: Key, pod: JsonObj) -> PodRun | None:
        """Start `pod`'s processes unless they run already; what each of its process containers does now."""
        current = self._pods.get(key)
        if current is not None and current.uid != pod["metadata"].get("uid"):
            self.retire(key)
            current = None
        if current is None:
            containers = self._containers(pod)
            if not containers:
                return None
            root = Path(self._tmp.name) / f"{key[0]}_{key[1]}_{str(pod['metadata'].get('uid', ''))[:8]}"
            nodes = self.options.nodes_dir or Path(self._tmp.name) / "nodes"
            node_dir = nodes / str((pod.get("spec") or {}).get("nodeName") or "unscheduled")
            current = self._pods[key] = _Pod(key, pod, root, node_dir, containers)
            for c in current.containers.values():
                self.cluster.pod_logs.pop((key[0], key[1], c.name), None)  # a new pod, not its namesake's log
            current.task = asyncio.create_task(self._run(current), name=f"pod-processes-{key[1]}")
        return current.report()

    def refresh_volumes(self, key: Key) -> list[str]:
        """Rewrite the running pod's ConfigMap and Secret volumes whose objects changed; returns their names."""
        pod = self._pods.get(key)
        if pod is None or pod.stopping:
            return []
        changed = refresh(self.cluster.store.get, pod.pod, pod.root)
        if changed:
            log.debug("pod %s/%s: volumes %s refreshed", *key, ", ".join(changed))
        return changed

    def retire(self, key: Key) -> None:
        """Stop the processes run for `key` (the pod is gone, replaced, terminating, finished or under a fault)."""
        pod = self._pods.pop(key, None)
        if pod is not None:
            outputs = {c.name: c.output for c in pod.containers.values() if c.output is not None}
            self._ended[key] = (pod.uid, outputs)
            while len(self._ended) > _ENDED_KEPT:
                self._ended.popitem(last=False)
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

    def runs(self, namespace: str, pod: str, uid: str) -> bool:
        """Whether the pod (this uid of it) is a process pod whose processes are started or starting."""
        run = self._pods.get((namespace, pod))
        return run is not None and run.uid == uid

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

    def _streamable(self, namespace: str, pod: str, uid: str, container: str) -> tuple[_Pod, _Container]:
        """The pod's container that runs as a process; ApiError (as the apiserver answers) when there is none."""
        run = self._pods.get((namespace, pod))
        c = run.containers.get(container) if run is not None and run.uid == uid else None
        if run is None or c is None or not c.process:
            raise not_local(container, pod)
        return run, c

    def _ended_output(self, namespace: str, pod: str, uid: str, container: str) -> Output | None:
        """The output of the container's last run when its pod's processes have been retired since."""
        if (namespace, pod) in self._pods:
            return None
        ended_uid, outputs = self._ended.get((namespace, pod), ("", {}))
        return outputs.get(container) if ended_uid == uid else None

    def check_stream(self, namespace: str, pod: str, uid: str, container: str, *, attach: bool) -> None:
        """Raise the ApiError an exec (`attach`: an attach) into the container would meet now, before upgrading."""
        if attach and self._ended_output(namespace, pod, uid, container) is not None:
            return
        run, c = self._streamable(namespace, pod, uid, container)
        if attach and c.output is not None:
            return  # a run that has ended still replays its output (see `kaito_sim.nodes.output`)
        if c.proc is None or c.proc.returncode is not None or run.stopping:
            raise errors.bad_request(f'container "{container}" of pod "{pod}" is not running')

    async def exec_in(
        self, namespace: str, pod: str, uid: str, container: str, command: list[str], *, stdin: bool, tty: bool
    ) -> asyncio.subprocess.Process:
        """Start `command` beside the container's process: its working directory, environment and mount paths.

        `tty` merges stderr into stdout (no terminal is allocated). Raises ApiError when the container does not
        run, OSError or ValueError when the command cannot start.
        """
        self.check_stream(namespace, pod, uid, container, attach=False)
        run, c = self._streamable(namespace, pod, uid, container)
        assert c.launch is not None
        proc = await children.start(
            c.launch.command(command), self._environment(run, c), run.root, stdin=stdin, merge_stderr=tty
        )
        run.execs = {p for p in run.execs if p.returncode is None} | {proc}
        return proc

    def attach(self, namespace: str, pod: str, uid: str, container: str) -> Attached:
        """The container's current (or last) run: its output and stdin. Raises ApiError when it never ran."""
        self.check_stream(namespace, pod, uid, container, attach=True)
        ended = self._ended_output(namespace, pod, uid, container)
        if ended is not None:
            return Attached(ended, None, stdin_once=False)
        _run, c = self._streamable(namespace, pod, uid, container)
        assert c.output is not None
        live = c.proc is not None and c.proc.returncode is None and not c.output.ended
        stdin = c.proc.stdin if live and c.proc is not None else None
        return Attached(c.output, stdin, bool(c.spec.get("stdinOnce")))

    async def close(self) -> None:
        for key in list(self._pods):
            self.retire(key)
        await asyncio.gather(*self._retiring.values(), return_exceptions=True)
        await self._prober.close()
        self._tmp.cleanup()

    # ----- the pod's start: volumes, then init containers in order, then the rest

    async def _run(self, pod: _Pod) -> None:
        while (failure := hostpath.set_up(pod.pod, pod.node_dir)) is not None:
            if pod.mount_error != failure:
                pod.mount_error = failure
                self._changed(pod.key)
            await asyncio.sleep(1.0)  # tried again as the kubelet's volume manager comes round
        if pod.mount_error:
            pod.mount_error = ""
            self._changed(pod.key)
        for c in [c for c in pod.containers.values() if c.init]:
            if not await self._initialise(pod, c):
                return
        pod.initialized = True
        self._changed(pod.key)
        for c in [c for c in pod.containers.values() if not c.init]:
            c.task = asyncio.create_task(self._lifecycle(pod, c), name=f"pod-process-{pod.key[1]}-{c.name}")

    async def _initialise(self, pod: _Pod, c: _Container) -> bool:
        """Run one init container until it has completed (a sidecar: started); False when the pod goes no further."""
        if not c.process:  # a simulated init container completes at once
            now = _now()
            done = Exit(0, "Completed", now, now)
            sidecar = ContainerRun(started_at=now, ready=True, started=True)
            c.run = sidecar if c.sidecar else ContainerRun(exited=done, final=True)
            self._changed(pod.key)
            return True
        if c.sidecar:
            c.task = asyncio.create_task(
                self._lifecycle(pod, c, policy="Always"), name=f"pod-sidecar-{pod.key[1]}-{c.name}"
            )
            while not (c.run.started_at and c.run.started):
                if pod.stopping:
                    return False
                await asyncio.sleep(self.options.probe_interval)
            return True
        never = (pod.pod.get("spec") or {}).get("restartPolicy") == "Never"
        await self._lifecycle(pod, c, policy="Never" if never else "OnFailure")
        return not pod.stopping and c.run.exited is not None and c.run.exited.code == 0

    # ----- one container's life

    async def _lifecycle(self, pod: _Pod, c: _Container, *, policy: str | None = None) -> None:
        delay, attempt = self.options.restart_backoff, 0
        policy = policy or (pod.pod.get("spec") or {}).get("restartPolicy", "Always")
        while not pod.stopping:
            try:
                await self._prepare(pod, c)
            except MissingCommand as exc:  # the container exists; its start fails, as runc's exec fails
                end = self._start_failed(c, attempt, exc.message)
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
            else:
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
        """Work out the command, write the volumes, and for `kaito serve` a port and the model: the one pulled
        into a volume, else the stand-in."""
        pod.root.mkdir(parents=True, exist_ok=True)  # the container's working directory
        spec = launch(self.cluster.store.get, pod.pod, c.spec, pod.root, node_dir=pod.node_dir, image=c.image)
        declared = set(declared_ports(c.spec).values())
        c.ports, c.any_port = {p: p for p in declared}, True
        if is_serve(spec.argv):
            model, port = mounted_model(spec) or await self._model.path(), _free_port()
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
        message_file = termination_log(c.spec, pod.root)[1]
        message_file.parent.mkdir(parents=True, exist_ok=True)
        message_file.write_bytes(b"")  # a fresh, empty file for each instance, as the kubelet mounts one
        try:
            proc = await children.start(
                c.launch.argv, self._environment(pod, c), pod.root, stdin=bool(c.spec.get("stdin"))
            )
        except (OSError, ValueError) as exc:  # no such executable, no permission, a NUL in an argument
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            return self._start_failed(c, attempt, f"exec: {c.launch.argv[0]!r}: {why}")
        c.proc = proc
        if pod.stopping:
            children.send(proc, signal.SIGKILL)
        no_startup = not isinstance(c.spec.get("startupProbe"), dict)
        c.run = ContainerRun(started_at=started, started=no_startup, restarts=attempt, exited=c.run.exited)
        self._changed(pod.key)
        tail: deque[str] = deque(maxlen=_MESSAGE_LINES)
        output = c.output = Output()

        def printed(line: str) -> None:  # what `kubectl logs` shows, and attaches
            self.cluster.append_log(pod.key[0], pod.key[1], c.name, line)
            output.add(STDOUT, line)

        def complained(line: str) -> None:  # stderr: also the termination message's source
            self.cluster.append_log(pod.key[0], pod.key[1], c.name, line)
            output.add(STDERR, line)
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
                output.end()
        code = children.exit_code(code)
        message = _read_message(message_file) or "".join(tail)[-_MESSAGE_BYTES:]
        return Exit(code, "Completed" if code == 0 else "Error", started, _now(), message)

    def _environment(self, pod: _Pod, c: _Container) -> dict[str, str]:
        """What the container's process (and what is exec'd beside it) finds in its environment."""
        assert c.launch is not None
        env = {**os.environ, "HOSTNAME": pod.key[1], "PYTHONUNBUFFERED": "1", **c.launch.env}
        if self._names is not None:
            env.update(self._names(pod.key[0], env))
        return env

    def _start_failed(self, c: _Container, attempt: int, why: str) -> Exit:
        c.run = dataclasses.replace(c.run, restarts=attempt)
        now = _now()
        return Exit(128, "StartError", now, now, f"failed to start container process: {why}")

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
        procs = [c.proc for c in pod.containers.values() if c.proc is not None]
        await children.terminate(procs + list(pod.execs), grace)
        if pod.task is not None:
            pod.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pod.task
        for c in pod.containers.values():
            if c.task is not None:
                c.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await c.task
            if c.proc is not None and c.proc.returncode is None:  # started in a race with this stop
                children.send(c.proc, signal.SIGKILL)
                await c.proc.wait()
        shutil.rmtree(pod.root, ignore_errors=True)


def not_local(container: str, pod: str) -> ApiError:
    """What exec and attach answer for a container that is only simulated."""
    return errors.bad_request(
        f'container "{container}" of pod "{pod}" is not running as a local process in the simulated cluster: '
        "only containers whose image runs as a process (SimServer(process_pods=...), kaito sim --process-pods) "
        "can be exec'd into or attached to"
    )


def _image(kind: Image | bool) -> Image | None:
    return kind if isinstance(kind, Image) else None


def _read_message(path: Path) -> str:
    """What the container wrote to its terminationMessagePath (the kubelet reads at most 4 KiB)."""
    try:
        with path.open("rb") as file:
            return file.read(_TERMINATION_FILE_BYTES).decode(errors="replace")
    except OSError:
        return ""


def _termination_grace(pod: JsonObj) -> float:
    """Seconds from SIGTERM to SIGKILL for `pod`'s processes: its `terminationGracePeriodSeconds` (default 30).

    The simulated API server removes a deleted pod at once (or marks it with a zero grace period while
    finalizers hold it), so the pod spec, not the deletion, says how long its processes get.
    """
    return float((pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30))
