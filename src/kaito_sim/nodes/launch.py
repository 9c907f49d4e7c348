"""How a process pod's container becomes a local command: its volumes as files, its environment and its argv.

The kubelet of a real node hands a container its volumes at their mount paths; a local process cannot have
`/etc/kaito`, so each volume is written under a per-pod directory (a hostPath volume is a path under the
node's own directory, see `kaito_sim.nodes.hostpath`) and every argument or environment value that names a
mount path is rewritten to point there. So is one naming the container's `terminationMessagePath` (default
`/dev/termination-log`): it becomes a file in the pod's directory, whose content the kubelet reports as the
terminated state's message. `kaito ...` runs as this interpreter's `-m kaito.cli`, and
a container with no command runs its image's entrypoint (`kaito` for the kaito images) with its args.
The well-known images of `kaito_sim.nodes.images` (curl, busybox, python) compose their argv as their runtime
would and run this machine's command of that name.

Listening addresses: every process shares this machine's ports, so the address flags of `kaito` subcommands
(`PORT_FLAGS`, e.g. the manager's `--health-probe-bind-address=:8081`) are rewritten to `127.0.0.1:<free port>`
and the container port -> local port mapping is what probes, the Service proxy and webhook calls use.

Credentials: a real kubelet projects a token for the pod's `spec.serviceAccountName` at
/var/run/secrets/kubernetes.io/serviceaccount. A process is not in a container and cannot have that path, so
the same identity travels as a kubeconfig (the simulated API server's URL and CA, a token minted for the pod's
service account) in the pod's directory, named by `KUBECONFIG`, which kubernetes clients read first. Pods with
`automountServiceAccountToken: false` get none.
"""

from __future__ import annotations

import base64
import datetime
import os
import re
import shutil
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from kaito_sim.apiserver.errors import ApiError, JsonObj
from kaito_sim.apiserver.kubeconfig import kubeconfig_dict, write_kubeconfig
from kaito_sim.apiserver.store import StorageKey
from kaito_sim.nodes.hostpath import node_path
from kaito_sim.nodes.images import Image

Getter = Callable[[StorageKey, str, str], JsonObj | None]  # (storage key, namespace, name) -> stored object
CONFIGMAPS: StorageKey = ("", "configmaps")
SECRETS: StorageKey = ("", "secrets")
DATA_LINK = "..data"  # the kubelet's name for the link to a ConfigMap or Secret volume's current files
_VAR_REF = re.compile(r"\$\$|\$\(([-._a-zA-Z][-._a-zA-Z0-9]*)\)")
_FIELD_KEY = re.compile(r"metadata\.(labels|annotations)\['([^']+)'\]")
KAITO = [sys.executable, "-m", "kaito.cli"]  # what `kaito` in a container's command runs here
DEFAULT_SERVE_PORT = 5000
ENTRYPOINTS = {"kaito-runtime": ["kaito"], "kaito-manager": ["kaito"]}  # the images' ENTRYPOINT (docker/)
# Per `kaito` subcommand, the flags that bind a listening address, with the port each listens on when not given.
PORT_FLAGS: dict[str, tuple[tuple[str, int], ...]] = {
    "manager": (
        ("--metrics-bind-address", 8080),
        ("--health-probe-bind-address", 8081),
        ("--webhook-bind-address", 9443),
    ),
}
# Per `kaito` subcommand that takes `--host` and `--port` apart, the port flag and its default.
HOST_PORT_FLAGS: dict[str, tuple[str, int]] = {"gateway": ("--port", 5000)}
TERMINATION_LOG = "/dev/termination-log"  # a container's terminationMessagePath when it names none
TOKEN_SECONDS = 365 * 24 * 3600  # kube-apiserver extends kubelet-projected tokens to a year by default
Issuer = Callable[[str, str], str]  # (namespace, service account) -> a bearer token; raises when it does not exist


class LaunchError(Exception):
    """The container cannot start yet (a ConfigMap or Secret is missing, no command): what the kubelet reports."""

    def __init__(self, message: str, reason: str = "CreateContainerConfigError") -> None:
        super().__init__(message)
        self.message, self.reason = message, reason


@dataclass
class Launch:
    """What to run for one container: argv, environment, and where each mount path lives on this machine."""

    argv: list[str]
    env: dict[str, str]
    mounts: dict[str, Path] = field(default_factory=dict)  # mountPath -> local directory (or file, with subPath)
    files: dict[str, Path] = field(default_factory=dict)  # single container paths -> local file (termination log)

    def local(self, value: str) -> str:
        """`value` with a leading mount path (or `--flag=` followed by one) replaced by its local directory."""
        prefix, sep, rest = value.partition("=")
        if sep and prefix.startswith("-"):
            return f"{prefix}={self.local(rest)}"
        if value in self.files:
            return str(self.files[value])
        for mount in sorted(self.mounts, key=len, reverse=True):
            if value == mount or value.startswith(mount.rstrip("/") + "/"):
                return str(self.mounts[mount]) + value[len(mount.rstrip("/")) :]
        return value

    def command(self, argv: list[str]) -> list[str]:
        """`argv` as it runs here: mount paths in its arguments rewritten, `kaito` run by this interpreter."""
        local = [self.local(a) for a in argv]
        return [*KAITO, *local[1:]] if local[:1] == ["kaito"] else local


def image_matches(image: str, names: tuple[str, ...]) -> bool:
    """Whether `image` (any registry, tag or digest) is one of `names`: `repo` or a trailing `org/repo` path."""
    repository = image.split("@", 1)[0]
    last = repository.rsplit("/", 1)[-1]
    if ":" in last:
        repository = repository[: len(repository) - len(last)] + last.split(":", 1)[0]
    return any(repository == n or repository.endswith("/" + n) for n in names)


def _decoded(obj: JsonObj, *, secret: bool) -> dict[str, bytes]:
    out = {k: str(v).encode() for k, v in (obj.get("stringData") or {}).items()}
    for key, value in (obj.get("data") or {}).items():
        out[key] = base64.b64decode(str(value)) if secret else str(value).encode()
    for key, value in (obj.get("binaryData") or {}).items():
        out[key] = base64.b64decode(str(value))
    return out


def _source(get: Getter, ns: str, ref: JsonObj, *, secret: bool) -> dict[str, bytes] | None:
    """A ConfigMap's or Secret's keys; None when it is missing and optional. A required one missing raises."""
    name = str(ref.get("secretName" if secret and "secretName" in ref else "name") or "")
    obj = get(SECRETS if secret else CONFIGMAPS, ns, name)
    if obj is None:
        if ref.get("optional"):
            return None
        raise LaunchError(f'{"secret" if secret else "configmap"} "{name}" not found')
    return _decoded(obj, secret=secret)


def _add_keys(payload: dict[str, bytes], keys: dict[str, bytes], items: list[JsonObj] | None, what: str) -> None:
    chosen = [(str(i.get("key")), str(i.get("path") or i.get("key"))) for i in items] if items else None
    for key, path in chosen if chosen is not None else [(k, k) for k in keys]:
        if key not in keys:
            raise LaunchError(f"{what} has no key {key}")
        payload[path] = keys[key]


def _payload(get: Getter, ns: str, volume: JsonObj) -> dict[str, bytes] | None:
    """The files of a ConfigMap, Secret or projected volume by relative path; None for other kinds of volume."""
    sources = [volume] if "projected" not in volume else list((volume["projected"] or {}).get("sources") or [])
    payload: dict[str, bytes] = {}
    found = False
    for source in sources:
        for kind, secret in (("configMap", False), ("secret", True)):
            ref = source.get(kind)
            if isinstance(ref, dict):
                found = True
                keys = _source(get, ns, ref, secret=secret)
                if keys is not None:
                    _add_keys(payload, keys, ref.get("items"), f'{kind} volume "{volume.get("name")}"')
    return payload if found or "projected" in volume else None


def _published(directory: Path) -> dict[str, bytes] | None:
    data = directory / DATA_LINK
    if not data.is_symlink():
        return None
    return {str(f.relative_to(data)): f.read_bytes() for f in data.rglob("*") if f.is_file()}


def _publish(directory: Path, payload: dict[str, bytes]) -> bool:
    """Lay `payload` out as the kubelet does, so a reader never sees half an update: the files in a fresh
    `..<time>` directory, `..data` pointing at it (swapped by one rename), and each top-level name a link through
    `..data`. Returns whether anything changed."""
    if _published(directory) == payload:
        return False
    stamp = datetime.datetime.now(datetime.UTC).strftime("..%Y_%m_%d_%H_%M_%S.%f")
    fresh = directory / stamp
    for path, body in payload.items():
        target = fresh / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(body)
    fresh.mkdir(parents=True, exist_ok=True)
    data = directory / DATA_LINK
    old = os.readlink(data) if data.is_symlink() else None
    staging = directory / f"{DATA_LINK}_tmp"
    staging.unlink(missing_ok=True)
    staging.symlink_to(stamp)
    os.replace(staging, data)
    tops = {path.split("/", 1)[0] for path in payload}
    for name in tops:
        link = directory / name
        if not link.is_symlink():
            link.symlink_to(f"{DATA_LINK}/{name}")
    for entry in directory.iterdir():
        if entry.is_symlink() and not entry.name.startswith("..") and entry.name not in tops:
            entry.unlink()
    if old is not None:
        shutil.rmtree(directory / old, ignore_errors=True)
    return True


def _volume(get: Getter, ns: str, volume: JsonObj, directory: Path) -> None:
    """Write one volume's files into `directory`; kinds with no local meaning (emptyDir, PVCs) start empty."""
    directory.mkdir(parents=True, exist_ok=True)
    payload = _payload(get, ns, volume)
    if payload is not None:
        _publish(directory, payload)


def refresh(get: Getter, pod: JsonObj, root: Path) -> list[str]:
    """Bring the ConfigMap, Secret and projected volumes already written under `root` up to date with the objects,
    as the kubelet's periodic sync does for a running pod; returns the volumes changed. A source gone missing
    leaves the last files in place (the kubelet keeps them too)."""
    ns = str(pod["metadata"].get("namespace", ""))
    changed = []
    for volume in (pod.get("spec") or {}).get("volumes") or []:
        directory = root / "volumes" / str(volume.get("name"))
        if not isinstance(volume, dict) or not (directory / DATA_LINK).is_symlink():
            continue
        try:
            payload = _payload(get, ns, volume)
        except LaunchError:
            continue
        if payload is not None and _publish(directory, payload):
            changed.append(str(volume.get("name")))
    return changed


def materialise(
    get: Getter, pod: JsonObj, container: JsonObj, root: Path, *, node_dir: Path | None = None
) -> dict[str, Path]:
    """Write the volumes `container` mounts under `root`; returns mountPath -> local path.

    With `node_dir`, a hostPath volume is its path under that node directory (checked by `hostpath.set_up`).
    """
    ns = str(pod["metadata"].get("namespace", ""))
    volumes = {str(v.get("name")): v for v in (pod.get("spec") or {}).get("volumes") or [] if isinstance(v, dict)}
    mounts: dict[str, Path] = {}
    for mount in container.get("volumeMounts") or []:
        name = str(mount.get("name"))
        if name not in volumes:
            raise LaunchError(f'volume "{name}" is not declared by the pod')
        host = volumes[name].get("hostPath")
        directory = root / "volumes" / name
        if node_dir is not None and isinstance(host, dict):
            directory = node_path(node_dir, str(host.get("path") or "/"))
        elif not directory.exists():
            try:
                _volume(get, ns, volumes[name], directory)
            except LaunchError:
                shutil.rmtree(directory, ignore_errors=True)  # written in full on the next try, or not at all
                raise
        mounts[str(mount.get("mountPath"))] = directory / str(mount.get("subPath") or "")
    return mounts


def _field(pod: JsonObj, path: str) -> str:
    meta, spec, status = pod["metadata"], pod.get("spec") or {}, pod.get("status") or {}
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        "status.podIP": status.get("podIP"),
        "status.hostIP": status.get("hostIP"),
    }
    if path in simple:
        return str(simple[path] or "")
    match = _FIELD_KEY.fullmatch(path)
    if match is None:
        raise LaunchError(f"unsupported fieldRef fieldPath {path}")
    return str((meta.get(match.group(1)) or {}).get(match.group(2), ""))


def expand(value: str, env: Mapping[str, str]) -> str:
    """Kubernetes `$(VAR)` references: defined variables expand, undefined ones stay as written, `$$` is `$`."""

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return _VAR_REF.sub(one, value)


def environment(get: Getter, pod: JsonObj, container: JsonObj) -> dict[str, str]:
    """The variables the pod spec gives `container` (envFrom, then env in order), as the kubelet resolves them."""
    ns = str(pod["metadata"].get("namespace", ""))
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        for kind, secret in (("configMapRef", False), ("secretRef", True)):
            if isinstance(source.get(kind), dict):
                keys = _source(get, ns, source[kind], secret=secret) or {}
                env.update({f"{source.get('prefix', '')}{k}": v.decode(errors="replace") for k, v in keys.items()})
    for var in container.get("env") or []:
        name, ref = str(var.get("name")), var.get("valueFrom")
        if not isinstance(ref, dict):
            env[name] = expand(str(var.get("value", "")), env)
        elif "fieldRef" in ref:
            env[name] = _field(pod, str(ref["fieldRef"].get("fieldPath", "")))
        else:
            for kind, secret, label in (("configMapKeyRef", False, "ConfigMap"), ("secretKeyRef", True, "Secret")):
                key_ref = ref.get(kind)
                if not isinstance(key_ref, dict):
                    continue
                found = _source(get, ns, key_ref, secret=secret)
                key = str(key_ref.get("key"))
                if found is not None and key in found:
                    env[name] = found[key].decode(errors="replace")
                elif found is not None and not key_ref.get("optional"):
                    raise LaunchError(f"couldn't find key {key} in {label} {ns}/{key_ref.get('name')}")
    return env


def termination_log(container: JsonObj, root: Path) -> tuple[str, Path]:
    """The container's terminationMessagePath and the local file that stands for it under `root`."""
    path = str(container.get("terminationMessagePath") or TERMINATION_LOG)
    return path, root / "termination" / str(container.get("name", ""))


def launch(
    get: Getter,
    pod: JsonObj,
    container: JsonObj,
    root: Path,
    *,
    node_dir: Path | None = None,
    image: Image | None = None,
) -> Launch:
    """The local command for `container` of `pod`, its volumes written under `root` (hostPath ones under `node_dir`).

    With `image` (one of `kaito_sim.nodes.images`), argv is composed as that image's runtime composes it and its
    first word is this machine's command; `MissingCommand` when there is none.
    """
    command = [str(a) for a in container.get("command") or []]
    if image is None:
        name = str(container.get("image", ""))
        command = command or next((list(e) for n, e in ENTRYPOINTS.items() if image_matches(name, (n,))), [])
        if not command:
            unknown = "the container has no command; the image's entrypoint is unknown to the simulated kubelet"
            raise LaunchError(unknown)
    env = environment(get, pod, container)
    command = [expand(a, env) for a in command]
    args = [expand(str(a), env) for a in container.get("args") or []]
    argv = image.argv(command, args) if image is not None else command + args
    program = image.executable(argv[0]) if image is not None else None
    path, local = termination_log(container, root)
    result = Launch(argv, env, materialise(get, pod, container, root, node_dir=node_dir), {path: local})
    # Only the container's own paths are rewritten: this machine's interpreter may live under a mount path (/tmp).
    command = result.command(argv)
    result.argv = [program, *command[1:]] if program else command
    result.env = {k: result.local(v) for k, v in env.items()}
    return result


def declared_ports(container: JsonObj) -> dict[str, int]:
    """The container's ports by name (unnamed ones by their number)."""
    return {str(p.get("name") or p["containerPort"]): int(p["containerPort"]) for p in container.get("ports") or []}


def flag(argv: list[str], name: str) -> str | None:
    """The last value given for `--name` in `argv` (`--name V` or `--name=V`), as argparse reads it."""
    value = None
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith(name + "="):
            value = arg.split("=", 1)[1]
    return value


def subcommand(argv: list[str]) -> str | None:
    """The `kaito` subcommand `argv` runs (`serve`, `manager`, ...); None when it does not run `kaito`."""
    rest = argv[len(KAITO) :] if argv[: len(KAITO)] == KAITO else []
    return next((a for a in rest if not a.startswith("-")), None)


def is_serve(argv: list[str]) -> bool:
    """Whether `argv` runs `kaito serve`."""
    return subcommand(argv) == "serve"


def _set_flag(argv: list[str], name: str, value: str) -> None:
    """Give `--name` the value `value`: every occurrence in `argv` (`--name V` or `--name=V`), or appended."""
    found = False
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            argv[i + 1], found = value, True
        elif arg.startswith(name + "="):
            argv[i], found = f"{name}={value}", True
    if not found:
        argv.append(f"{name}={value}")


def bind_overrides(spec: Launch, free_port: Callable[[], int]) -> dict[int, int] | None:
    """Move the listening flags of a `PORT_FLAGS` subcommand to 127.0.0.1 and free ports; container -> local port.

    `--flag=[HOST]:N` (or the flag's default port when it is not given) becomes `--flag=127.0.0.1:<free port>`;
    an empty address (off) and port 0 (any) stay as written; a `HOST_PORT_FLAGS` command gets `--host 127.0.0.1`
    and a free `--port`. None when the command has no such flags.
    """
    command = subcommand(spec.argv) or ""
    if command in HOST_PORT_FLAGS:  # `--host H --port N`: both moved
        name, default = HOST_PORT_FLAGS[command]
        given = flag(spec.argv, name)
        local = free_port()
        _set_flag(spec.argv, name, str(local))
        _set_flag(spec.argv, "--host", "127.0.0.1")
        return {int(given) if given and given.isdigit() else default: local}
    flags = PORT_FLAGS.get(command)
    if flags is None:
        return None
    ports: dict[int, int] = {}
    for name, default in flags:
        value = flag(spec.argv, name)
        port = value.rpartition(":")[2] if value is not None else str(default)
        if port.isdigit() and int(port) > 0:
            ports[int(port)] = free_port()
            _set_flag(spec.argv, name, f"127.0.0.1:{ports[int(port)]}")
    return ports


def service_account_kubeconfig(pod: JsonObj, root: Path, server: str, ca_pem: bytes, issue: Issuer) -> Path | None:
    """Write a kubeconfig for the pod's service account under `root`; None when the pod opts out of a token."""
    spec = pod.get("spec") or {}
    if spec.get("automountServiceAccountToken") is False:
        return None
    ns, account = str(pod["metadata"].get("namespace", "")), str(spec.get("serviceAccountName") or "default")
    try:
        token = issue(ns, account)
    except ApiError as err:  # what the kubelet reports while the token projection fails
        raise LaunchError(f"failed to fetch token: {err.message}") from err
    config = kubeconfig_dict(server=server, ca_pem=ca_pem, token=token, name="in-cluster")
    user = f"system:serviceaccount:{ns}:{account}"
    config["users"][0]["name"] = user
    config["contexts"][0]["context"].update(user=user, namespace=ns)
    return write_kubeconfig(root / "serviceaccount" / "kubeconfig", config)


def _engine_config(spec: Launch) -> JsonObj:
    """The engine config `kaito serve --config` names (already a local path), or {} when there is none to read."""
    try:
        path = flag(spec.argv, "--config")
        loaded = yaml.safe_load(Path(path).read_text()) if path else None
    except (OSError, yaml.YAMLError):
        loaded = None
    return loaded if isinstance(loaded, dict) else {}


def mounted_model(spec: Launch) -> Path | None:
    """The local directory of the model `kaito serve` is told to load, when it lies in one of the pod's volumes.

    A model image's init step pulls the files into a volume (the engine config's `model: /mnt/model`): that
    directory is what the server loads, as on a real node. None: the model is a hub id, so a stand-in serves.
    """
    named = str(_engine_config(spec).get("model") or "")
    local = spec.local(named) if named.startswith("/") else named
    return Path(local) if local != named and Path(local).is_dir() else None


def serve_overrides(spec: Launch, model: Path, port: int) -> int:
    """Point `kaito serve` at `model`, 127.0.0.1:`port` and its adapters' local directory; returns the config's port.

    The served model name still comes from the engine config, so clients ask for the preset's name.
    """
    config = _engine_config(spec)
    spec.argv += ["--model", str(model), "--engine", "transformers", "--host", "127.0.0.1", "--port", str(port)]
    adapters = spec.local(str(config.get("adaptersDir") or ""))
    if flag(spec.argv, "--adapters-dir") is None and adapters and Path(adapters).is_dir():
        spec.argv += ["--adapters-dir", adapters]
    return int(config.get("port") or DEFAULT_SERVE_PORT)
