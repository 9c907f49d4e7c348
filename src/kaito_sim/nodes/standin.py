"""What process pods' `kaito serve` loads in place of a preset's weights: a tiny random model, built once per cluster.

A real preset needs a GPU and gigabytes of download; the tiny random Llama (`kaito.inference.tinymodel`) loads
in a second on a CPU, so the server is real and its answers are random tokens. It is built in a child process,
so the API server's process never imports torch.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

from kaito_sim.nodes.children import die_with_parent
from kaito_sim.nodes.launch import LaunchError

log = logging.getLogger(__name__)

_BUILD = "import sys, pathlib; from kaito.inference.tinymodel import make_tiny_model as m; m(pathlib.Path(sys.argv[1]))"


class StandInModel:
    """The model directory `kaito serve` gets: `given`, or the tiny random model built under `workdir` on first use."""

    def __init__(self, given: Path | None, workdir: Path) -> None:
        self._path, self._workdir = given, workdir
        self._lock = asyncio.Lock()
        self._told = False

    async def path(self) -> Path:
        async with self._lock:
            if self._path is None:
                target = self._workdir / "tiny-model"
                await _build(target)
                self._path = target
            if not self._told:
                self._told = True
                log.info(
                    "process pods: kaito serve loads the tiny random model in %s in place of each preset's weights "
                    "(no GPU, no download); its answers are random tokens",
                    self._path,
                )
            return self._path


async def _build(target: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _BUILD,
        str(target),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        preexec_fn=die_with_parent,
    )
    try:
        _, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    if proc.returncode != 0:
        why = err.decode(errors="replace")[-500:]
        raise LaunchError(f"the tiny stand-in model could not be built: {why}", "CreateContainerError")
