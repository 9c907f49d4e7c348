"""What a model image push and pull cost on this machine, next to the limits measured in the same run.

Run with `python benchmarks/model_pull_bench.py [--size-mib 400] [--shards 4] [--parallel 4]`. A generated model
(random safetensors shards plus config and tokenizer files) goes to a loopback Debian `docker-registry` (plain
HTTP, no auth: the transport is what is measured) with `push_model`, then comes back with `pull_model` into a
fresh cache. The limits: the same blobs fetched with parallel raw GETs (aiohttp, bytes discarded, nothing hashed
or written), and the disk's sequential write rate (the same bytes written and fsynced in the cache's directory).
Warm start is a second pull of the same image into a new output with the cache full.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import requests

from kaito.modelimages.cache import ModelCache
from kaito.modelimages.pull import pull_model
from kaito.modelimages.push import push_model
from kaito.oci.reference import Reference

ROOT = Path(__file__).resolve().parents[1]


def mib_s(size: int, seconds: float) -> str:
    return f"{size / 2**20 / seconds:8.1f} MiB/s ({seconds:.2f}s)"


async def raw_gets(base: str, repository: str, blobs: list[str], parallel: int) -> None:
    """Every blob fetched once, at most `parallel` at a time, the bytes read and dropped."""
    limit = asyncio.Semaphore(parallel)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=parallel)) as session:

        async def get(digest: str) -> None:
            async with limit, session.get(f"{base}/v2/{repository}/blobs/{digest}") as response:
                response.raise_for_status()
                async for _ in response.content.iter_chunked(1 << 20):
                    pass

        await asyncio.gather(*(get(digest) for digest in blobs))


def disk_write(directory: Path, size: int) -> float:
    """Seconds to write size bytes sequentially (1 MiB writes) and fsync them."""
    block = os.urandom(1 << 20)
    path = directory / "disk-probe"
    started = time.perf_counter()
    with path.open("wb") as handle:
        for _ in range(size // len(block)):
            handle.write(block)
        handle.flush()
        os.fsync(handle.fileno())
    elapsed = time.perf_counter() - started
    path.unlink()
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mib", type=int, default=400, help="total size of the generated shards")
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--parallel", type=int, default=4)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    logging.basicConfig(level=logging.WARNING)

    from tests.modelimages.models import files_of, make_model
    from tests.registry import Registry

    with tempfile.TemporaryDirectory(prefix="model-bench-") as tmp:
        work = Path(tmp)
        model = make_model(work / "model", shards=args.shards, shard_bytes=args.size_mib * 2**20 // args.shards)
        size = sum(p.stat().st_size for p in model.rglob("*") if p.is_file())
        with Registry(work / "registry", auth="none", tls=False) as registry:
            image = f"{registry.address}/models/bench:v1"
            print(f"model: {size / 2**20:.0f} MiB in {len(list(model.rglob('*.*')))} files; parallel {args.parallel}")

            started = time.perf_counter()
            pushed = push_model(model, image, auth=None, plain_http=True, parallel=args.parallel)
            print(f"push (hash + upload)      {mib_s(size, time.perf_counter() - started)}")

            manifest = Reference.parse(image).repository
            document = requests.get(
                registry.url(f"/v2/{manifest}/manifests/{pushed.digest}"),
                headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
                timeout=10,
            ).json()
            blobs = [layer["digest"] for layer in document["layers"]]
            started = time.perf_counter()
            asyncio.run(raw_gets(registry.url(""), manifest, blobs, args.parallel))
            raw = time.perf_counter() - started
            print(f"raw parallel GETs (limit) {mib_s(size, raw)}")

            cache = ModelCache(work / "cache")
            disk = disk_write(work / "cache", size)
            print(f"disk sequential write     {mib_s(size, disk)}")

            started = time.perf_counter()
            pull_model(image, work / "out", cache=cache, auth=None, plain_http=True, parallel=args.parallel)
            cold = time.perf_counter() - started
            print(f"pull, empty cache         {mib_s(size, cold)}  = {100 * raw / cold:.0f}% of the raw GET rate")
            assert files_of(work / "out") == files_of(model)

            started = time.perf_counter()
            warm = pull_model(image, work / "out2", cache=cache, auth=None, plain_http=True, parallel=args.parallel)
            elapsed = time.perf_counter() - started
            print(f"warm start (full cache)   {elapsed:.3f}s, {warm.downloaded_blobs} blobs fetched")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
