"""Cluster DNS for process pods: Service names resolve to ClusterIPs through files Python and curl read.

A process pod is a process on this machine, with this machine's resolver: it has no pod network namespace whose
/etc/resolv.conf could point at a cluster DNS server. What kube-dns answers a pod in namespace NS,
`<svc>.<ns>.svc.cluster.local`, `<svc>.<ns>.svc`, `<svc>.<ns>` and (NS's own Services) `<svc>`, is instead kept
in one /etc/hosts-style file per namespace, rewritten as Services come and go, and handed to each process:

- Python: `KAITO_SIM_HOSTS` names the file and PYTHONPATH starts with `kaito_sim/nodes/podsite`, whose
  `sitecustomize` makes `socket.getaddrinfo` (so urllib, requests, httpx, aiohttp) consult it first.
- curl: `CURL_HOME` names the namespace's directory, whose `.curlrc` maps each name with `connect-to` (any port,
  to the ClusterIP). The command line stays as the user wrote it, and the Host header keeps the Service name;
  curl skips the file when its first argument is `-q`, as it documents.

Other programs (wget, busybox applets) resolve with this machine's resolver and reach Services by ClusterIP
only. Headless and ExternalName Services get no entry.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from kaito_sim.apiserver.cluster import Cluster
from kaito_sim.apiserver.errors import JsonObj
from kaito_sim.apiserver.store import WatchEvent
from kaito_sim.workloads.common import SERVICES, Key
from kaito_sim.workloads.loop import Loop

HOSTS_VARIABLE = "KAITO_SIM_HOSTS"
SITE = Path(__file__).parent / "podsite"
DOMAIN = "cluster.local"


def names(service: JsonObj, namespace: str) -> list[str]:
    """The names a pod in `namespace` resolves to the Service's ClusterIP."""
    name, ns = service["metadata"]["name"], service["metadata"].get("namespace", "")
    full = [f"{name}.{ns}.svc.{DOMAIN}", f"{name}.{ns}.svc", f"{name}.{ns}"]
    return [*full, name] if ns == namespace else full


def cluster_ip(service: JsonObj) -> str:
    """The Service's ClusterIP, or "" for a headless or ExternalName Service."""
    spec = service.get("spec") or {}
    ip = str(spec.get("clusterIP") or "")
    return "" if ip == "None" or spec.get("type") == "ExternalName" else ip


class ClusterDns(Loop):
    """Keeps each namespace's hosts file and .curlrc in step with the cluster's Services."""

    name = "cluster-dns"
    watches = (SERVICES,)

    def __init__(self, cluster: Cluster) -> None:
        super().__init__(cluster)
        self._tmp = tempfile.TemporaryDirectory(prefix="kaito-dns-")
        self.directory = Path(self._tmp.name)
        self._namespaces: set[str] = set()  # those whose processes read the files: kept current

    def environment(self, namespace: str, env: dict[str, str]) -> dict[str, str]:
        """What a process of a pod in `namespace` (about to run with `env`) gets so Service names resolve."""
        if namespace not in self._namespaces:
            self._namespaces.add(namespace)
            self._write(namespace)
        folder = self.directory / namespace
        path = os.pathsep.join(p for p in (str(SITE), env.get("PYTHONPATH", "")) if p)
        return {HOSTS_VARIABLE: str(folder / "hosts"), "CURL_HOME": str(folder), "PYTHONPATH": path}

    def initial_keys(self) -> list[Key]:
        return [("", "")]  # one key: every change rewrites the files of every namespace in use

    def keys_for(self, event: WatchEvent) -> list[Key]:
        return [("", "")]

    async def reconcile(self, key: Key) -> float | None:
        for namespace in sorted(self._namespaces):
            self._write(namespace)
        return None

    def close(self) -> None:
        self._tmp.cleanup()

    def _write(self, namespace: str) -> None:
        entries = [(ip, names(s, namespace)) for s in self.cluster.store.items(SERVICES) if (ip := cluster_ip(s))]
        folder = self.directory / namespace
        folder.mkdir(parents=True, exist_ok=True)
        _replace(folder / "hosts", "".join(f"{ip} {' '.join(aliases)}\n" for ip, aliases in entries))
        rc = "".join(f'connect-to = "{alias}::{ip}:"\n' for ip, aliases in entries for alias in aliases)
        _replace(folder / ".curlrc", rc)


def _replace(path: Path, text: str) -> None:
    """Write `path` whole or not at all (a reader never sees half a file), and only when it changes."""
    if path.exists() and path.read_text() == text:
        return
    part = path.with_name(path.name + ".part")
    part.write_text(text)
    os.replace(part, path)
