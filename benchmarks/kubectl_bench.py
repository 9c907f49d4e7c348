"""Benchmark of kubectl's view of `kaito sim --with-manager` while many workspaces reconcile.

Run: `python benchmarks/kubectl_bench.py --workspaces 50 200` (`--profile DIR` also samples the sim process
with py-spy into DIR/<N>.txt, collapsed stacks). Does what a user does: spawns `kaito sim --with-manager
--provisioning-delay 0` as its own process, `kubectl apply -f` a file of N workspaces, and meanwhile runs
`kubectl get workspaces` and `kubectl get --raw /healthz` every 0.5 s (each a fresh kubectl, so a fresh TLS
handshake). Prints their latency (kubectl's own start-up included), every failure with its message, and
the time from the apply to every workspace Ready.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

KAITO = [sys.executable, "-m", "kaito.cli"]
SIM = ["sim", "--with-manager", "--provisioning-delay", "0", "--port", "0"]
ADDRESSES = ["--metrics-bind-address", "127.0.0.1:0", "--health-probe-bind-address", "127.0.0.1:0"]
NS = "default"
PERIOD = 0.5
READY_TIMEOUT = 900.0


def workspace(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "kaito.sh/v1beta1",
        "kind": "Workspace",
        "metadata": {"name": name, "namespace": NS},
        "resource": {"instanceType": "Standard_NC6s_v3", "labelSelector": {"matchLabels": {"apps": name}}},
        "inference": {"preset": {"name": "phi-3-mini-4k-instruct"}},
    }


def ready(ws: dict[str, Any]) -> bool:
    conditions = (ws.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "WorkspaceSucceeded" and c.get("status") == "True" for c in conditions)


@dataclass
class Probe:
    """One kubectl command run every `PERIOD` seconds from its own thread until stopped."""

    label: str
    argv: list[str]
    stop: threading.Event
    seconds: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def run(self) -> None:
        while not self.stop.is_set():
            began = time.perf_counter()
            done = subprocess.run(self.argv, capture_output=True, check=False)
            elapsed = time.perf_counter() - began
            self.seconds.append(elapsed)
            if done.returncode != 0:
                self.failures.append(f"exit {done.returncode} after {elapsed:.1f}s: {done.stderr.decode().strip()}")
            self.stop.wait(max(0.0, PERIOD - elapsed))

    def report(self) -> str:
        ordered = sorted(self.seconds)
        if not ordered:
            return f"{self.label}: no runs"
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        line = (
            f"{self.label}: {len(ordered)} runs, p50 {statistics.median(ordered) * 1000:.0f} ms, "
            f"p99 {p99 * 1000:.0f} ms, max {ordered[-1] * 1000:.0f} ms; failures {len(self.failures)}"
        )
        shown = "".join(f"\n    {message[:300]}" for message in self.failures[:5])
        return line + shown


def _kubectl(kubeconfig: Path, *args: str) -> list[str]:
    return ["kubectl", "--kubeconfig", str(kubeconfig), *args]


def _count_ready(kubeconfig: Path) -> int:
    done = subprocess.run(_kubectl(kubeconfig, "get", "workspaces", "-n", NS, "-o", "json"), capture_output=True)
    if done.returncode != 0:
        return -1
    return sum(1 for ws in json.loads(done.stdout)["items"] if ready(ws))


def spawn(tmp: Path, kubeconfig: Path) -> tuple[subprocess.Popen[bytes], float]:
    """`kaito sim --with-manager` as its own process, and the seconds from spawn to its serving line."""
    log = open(tmp / "sim.log", "wb")  # noqa: SIM115
    began = time.perf_counter()
    proc = subprocess.Popen(
        [*KAITO, *SIM, "--kubeconfig", str(kubeconfig), *ADDRESSES], stdout=subprocess.PIPE, stderr=log
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    if "kaito sim: serving" not in line:
        raise RuntimeError(f"kaito sim did not start: {line!r}; see {tmp / 'sim.log'}")
    return proc, time.perf_counter() - began


def profile(pid: int, out: Path) -> subprocess.Popen[bytes] | None:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        print("py-spy not found; no profile", file=sys.stderr)
        return None
    argv = [spy, "record", "--pid", str(pid), "--format", "raw", "--rate", "50", "--output", str(out), "--nonblocking"]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def run_once(count: int, *, profile_dir: Path | None) -> None:
    with tempfile.TemporaryDirectory(prefix="kubectl-bench-") as name:
        tmp = Path(name)
        kubeconfig = tmp / "kubeconfig"
        manifest = tmp / "workspaces.yaml"
        manifest.write_text(yaml.safe_dump_all([workspace(f"ws-{i:04d}") for i in range(count)]))
        proc, started = spawn(tmp, kubeconfig)
        spy = profile(proc.pid, profile_dir / f"{count}.txt") if profile_dir else None
        stop = threading.Event()
        probes = [
            Probe("kubectl get workspaces", _kubectl(kubeconfig, "get", "workspaces", "-n", NS), stop),
            Probe("kubectl get --raw /healthz", _kubectl(kubeconfig, "get", "--raw", "/healthz"), stop),
        ]
        threads = [threading.Thread(target=p.run, name=p.label) for p in probes]
        try:
            for thread in threads:
                thread.start()
            time.sleep(1.0)
            began = time.perf_counter()
            applied = subprocess.run(_kubectl(kubeconfig, "apply", "-f", str(manifest)), capture_output=True)
            apply_seconds = time.perf_counter() - began
            done = 0
            while time.perf_counter() - began < READY_TIMEOUT and applied.returncode == 0:
                done = _count_ready(kubeconfig)
                if done == count:
                    break
                time.sleep(1.0)
            ready_seconds = time.perf_counter() - began
        finally:
            stop.set()
            for thread in threads:
                thread.join()
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                spy.wait()
            proc.send_signal(signal.SIGTERM)
            proc.wait()
    error = f": {applied.stderr.decode().strip()[-300:]}" if applied.returncode else ""
    print(f"N={count}: spawn to serving line {started * 1000:.0f} ms")
    print(f"N={count}: kubectl apply took {apply_seconds:.1f}s (exit {applied.returncode}{error})")
    print(f"N={count}: {done}/{count} Ready {ready_seconds:.1f}s after the apply began")
    for probe in probes:
        print(f"N={count}: {probe.report()}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workspaces", type=int, nargs="+", default=[50, 200])
    parser.add_argument("--profile", type=Path, help="sample the sim with py-spy into this directory")
    args = parser.parse_args()
    if shutil.which("kubectl") is None:
        print("kubectl not found on PATH", file=sys.stderr)
        return 1
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}")
    for count in args.workspaces:
        run_once(count, profile_dir=args.profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
