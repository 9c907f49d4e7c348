"""Benchmark of start-up: `kaito sim` from spawn to serving (its line, then kubectl's first answer) and `--help`s.

Run: `python benchmarks/startup_bench.py --rounds 10` (`--with-manager` also times `kaito sim --with-manager`).
Each figure is a fresh process; "serving line" is the spawn-to-stdout time of "kaito sim: serving",
"kubectl /version" the spawn-to-first-successful `kubectl get --raw /version` (kubectl's own start-up
included: it is retried from the moment the kubeconfig appears). Peak RSS is the child's own (wait4).
Children read compiled bytecode from a cache this run fills first (as an installed package does);
`--no-bytecode-cache` makes them compile every module at every start instead.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

KAITO = [sys.executable, "-m", "kaito.cli"]
ENV = dict(os.environ)
MANAGER = ["--with-manager", "--metrics-bind-address", "127.0.0.1:0", "--health-probe-bind-address", "127.0.0.1:0"]


@dataclass(frozen=True)
class Run:
    """One spawned process: seconds to the milestone measured and its peak RSS in MiB."""

    seconds: float
    rss_mib: float


def _reap(proc: subprocess.Popen[bytes]) -> float:
    """Wait for the child and return its peak RSS in MiB."""
    _, _, usage = os.wait4(proc.pid, 0)
    proc.returncode = 0  # reaped here; keep Popen from waiting on a pid that is gone
    return usage.ru_maxrss / 1024


def _kubectl_version(kubeconfig: Path, kubectl: str) -> bool:
    args = [kubectl, "--kubeconfig", str(kubeconfig), "--request-timeout", "2s", "get", "--raw", "/version"]
    return subprocess.run(args, capture_output=True, check=False).returncode == 0


def sim_once(extra: list[str], *, kubectl: str) -> Run:
    with tempfile.TemporaryDirectory() as tmp:
        kubeconfig = Path(tmp) / "kubeconfig"
        args = [*KAITO, "sim", "--port", "0", "--kubeconfig", str(kubeconfig), *extra]
        began = time.perf_counter()
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=ENV)
        assert proc.stdout is not None
        while not kubeconfig.exists():
            if proc.poll() is not None:
                raise RuntimeError(f"kaito sim exited with {proc.returncode}")
            time.sleep(0.002)
        while not _kubectl_version(kubeconfig, kubectl):
            time.sleep(0.002)
        version = time.perf_counter() - began
        if "kaito sim: serving" not in proc.stdout.readline().decode():
            raise RuntimeError("kaito sim answered before printing its serving line")
        proc.send_signal(signal.SIGTERM)
        return Run(seconds=version, rss_mib=_reap(proc))


def serving_line_once(extra: list[str]) -> float:
    """Spawn to the serving line alone, with nothing else competing for the CPU."""
    with tempfile.TemporaryDirectory() as tmp:
        args = [*KAITO, "sim", "--port", "0", "--kubeconfig", str(Path(tmp) / "kubeconfig"), *extra]
        began = time.perf_counter()
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=ENV)
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        elapsed = time.perf_counter() - began
        if "kaito sim: serving" not in line:
            raise RuntimeError(f"unexpected first line: {line!r}")
        proc.send_signal(signal.SIGTERM)
        _reap(proc)
        return elapsed


def help_once(command: str) -> Run:
    began = time.perf_counter()
    proc = subprocess.Popen([*KAITO, command, "--help"], stdout=subprocess.DEVNULL, env=ENV)
    rss = _reap(proc)
    elapsed = time.perf_counter() - began
    return Run(seconds=elapsed, rss_mib=rss)


def kubectl_client_once(kubectl: str) -> float:
    began = time.perf_counter()
    subprocess.run([kubectl, "version", "--client"], capture_output=True, check=True)
    return time.perf_counter() - began


def _ms(values: list[float]) -> str:
    return f"p50 {statistics.median(values) * 1000:.0f} ms, max {max(values) * 1000:.0f} ms"


def report_sim(label: str, extra: list[str], rounds: int, *, kubectl: str) -> None:
    lines = [serving_line_once(extra) for _ in range(rounds)]
    runs = [sim_once(extra, kubectl=kubectl) for _ in range(rounds)]
    rss = statistics.median(r.rss_mib for r in runs)
    print(f"{label}: spawn to serving line {_ms(lines)}")
    print(f"{label}: spawn to first kubectl /version {_ms([r.seconds for r in runs])}; peak RSS {rss:.0f} MiB")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--with-manager", action="store_true", help="also time `kaito sim --with-manager`")
    parser.add_argument("--no-bytecode-cache", action="store_true", help="compile every module at every start")
    args = parser.parse_args()
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        print("kubectl not found on PATH", file=sys.stderr)
        return 1
    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}; {args.rounds} rounds each")
    with tempfile.TemporaryDirectory(prefix="startup-bench-pyc-") as pycache:
        if args.no_bytecode_cache:
            ENV["PYTHONDONTWRITEBYTECODE"] = "1"
            ENV["PYTHONPYCACHEPREFIX"] = pycache  # empty: nothing is read from the tree's own caches either
            print("bytecode: none cached, every module compiled at every start")
        else:
            ENV.pop("PYTHONDONTWRITEBYTECODE", None)
            ENV["PYTHONPYCACHEPREFIX"] = pycache
            warm(args.with_manager, kubectl=kubectl)
            print("bytecode: cached (one untimed run of each command first)")
        return measure(args.rounds, args.with_manager, kubectl=kubectl)


def warm(with_manager: bool, *, kubectl: str) -> None:
    sim_once(MANAGER if with_manager else [], kubectl=kubectl)
    for command in ("manager", "serve", "sim"):
        help_once(command)


def measure(rounds: int, with_manager: bool, *, kubectl: str) -> int:
    kubectl_alone = [kubectl_client_once(kubectl) for _ in range(rounds)]
    print(f"kubectl version --client (kubectl's own start-up): {_ms(kubectl_alone)}")
    report_sim("kaito sim", [], rounds, kubectl=kubectl)
    if with_manager:
        report_sim("kaito sim --with-manager", MANAGER, rounds, kubectl=kubectl)
    for command in ("manager", "serve", "sim"):
        runs = [help_once(command) for _ in range(rounds)]
        rss = statistics.median(r.rss_mib for r in runs)
        print(f"kaito {command} --help: {_ms([r.seconds for r in runs])}; peak RSS {rss:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
