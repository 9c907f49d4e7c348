"""The demos' local OCI registry: the Debian `docker-registry` on loopback, where the demos push models and adapters."""

from __future__ import annotations

import asyncio
import shutil
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import yaml

REGISTRY_BINARY = "docker-registry"
INSTALL_HINT = "scripts/system-deps installs it (Debian package docker-registry)"


class DemoFailed(Exception):
    """A demo step did not do what the demo needs; the message names it."""


class RegistryUnavailable(DemoFailed):
    """The registry cannot run here: its binary is missing, or it did not start; the message says which."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def wait_http(url: str, within: float = 60) -> None:
    """Until `url` answers with anything but a server error; DemoFailed after `within` seconds."""
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            try:
                async with http.get(url) as response:
                    if response.status < 500:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.2)
    raise DemoFailed(f"{url} did not answer within {within:.0f} s")


@asynccontextmanager
async def registry(workdir: Path, *, binary: str | None = REGISTRY_BINARY, within: float = 60) -> AsyncIterator[str]:
    """The docker-registry at `binary` (a name looked up on PATH, or a path) on loopback, plain HTTP, no auth.

    Yields its address (`127.0.0.1:PORT`); raises RegistryUnavailable when the binary is missing or the
    registry does not answer within `within` seconds (with the last lines of its log).
    """
    found = shutil.which(binary) if binary else None
    if found is None:
        raise RegistryUnavailable(f"{binary or REGISTRY_BINARY} is not installed; {INSTALL_HINT}")
    await asyncio.to_thread(workdir.mkdir, parents=True, exist_ok=True)
    address = f"127.0.0.1:{free_port()}"
    config = {
        "version": 0.1,
        "storage": {"filesystem": {"rootdirectory": str(workdir / "storage")}},
        "http": {"addr": address},
        "log": {"level": "error"},
    }
    (workdir / "config.yml").write_text(yaml.safe_dump(config))
    log_path = workdir / "registry.log"
    with log_path.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(found, "serve", str(workdir / "config.yml"), stdout=log, stderr=log)
    try:
        answering = asyncio.ensure_future(wait_http(f"http://{address}/v2/", within))
        exited = asyncio.ensure_future(proc.wait())
        await asyncio.wait({answering, exited}, return_when=asyncio.FIRST_COMPLETED)
        started = answering.done() and answering.exception() is None
        for task in (answering, exited):
            task.cancel()
        await asyncio.gather(answering, exited, return_exceptions=True)
        if not started:
            why = f"exited {proc.returncode}" if proc.returncode is not None else f"no answer within {within:.0f} s"
            tail = " ".join(log_path.read_text(errors="replace").splitlines()[-3:])
            raise RegistryUnavailable(f"{found} did not start ({why}) {tail}".strip())
        print(f"docker-registry: serving http://{address}", flush=True)
        yield address
    finally:
        if proc.returncode is None:
            proc.terminate()
        await proc.wait()
