"""Probes one URL at a fixed interval from its own process, so the timings it prints carry no other loop's lag.

Run: `python -I benchmarks/healthz_probe.py URL [--interval 0.1] [--timeout 5]`. It prints `ready` once,
then one line per probe, `<milliseconds> <HTTP status or the error's name>`, until it is terminated.
Only the standard library, so it starts fast and imports nothing of the process it measures.
"""

from __future__ import annotations

import argparse
import http.client
import signal
import sys
import time
from urllib.parse import urlsplit


def probe(url: str, *, timeout: float) -> str:
    """One GET on a fresh connection (as a kubelet probe makes it); the status code, or the error's name."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=timeout)
    try:
        connection.request("GET", parts.path or "/")
        response = connection.getresponse()
        response.read()
        return str(response.status)
    except (OSError, http.client.HTTPException) as exc:
        return type(exc).__name__
    finally:
        connection.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("--interval", type=float, default=0.1)
    parser.add_argument("--timeout", type=float, default=5.0)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print("ready", flush=True)
    next_at = time.perf_counter()
    while True:
        start = time.perf_counter()
        outcome = probe(args.url, timeout=args.timeout)
        print(f"{(time.perf_counter() - start) * 1000:.2f} {outcome}", flush=True)
        next_at = max(next_at + args.interval, time.perf_counter())
        time.sleep(max(0.0, next_at - time.perf_counter()))


if __name__ == "__main__":
    sys.exit(main())
