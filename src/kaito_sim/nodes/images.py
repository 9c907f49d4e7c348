"""Well-known images whose containers run as process pods with this machine's commands: curl, busybox, python.

A small, explicit table: each image says what its ENTRYPOINT does with its CMD or the pod's args, and which
executables it ships. The container's argv is composed as the runtime composes it (a pod `command` replaces the
ENTRYPOINT and drops the CMD; `args` replace the CMD), and its first word runs as this machine's command of that
name (`python*` as this interpreter). A word the image does not ship, or one this machine lacks, fails the
container's start as runc's exec fails it: StartError, naming the command. Images outside the table stay
simulated; the kaito images keep their own path (`kaito_sim.nodes.launch`).

- `curlimages/curl`: ENTRYPOINT `/entrypoint.sh`, CMD `curl`; the script runs `curl "$@"` unless its first
  argument is a command the image has (so `-- curl -s URL` and `-- -s URL` both run curl).
- `busybox`: no ENTRYPOINT, CMD `sh`; its applets, where this machine has a command of the same name.
- `python` (any tag): no ENTRYPOINT, CMD `python3`; `python`, `python3`, `python3.N` run this interpreter.
"""

from __future__ import annotations

import re
import shutil
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

# The busybox applets a container is likely to name; each runs as this machine's command of that name.
_APPLETS = """
    sh ash echo printf cat sleep true false env ls pwd date hostname id whoami uname head tail grep sed awk sort
    uniq wc tr cut tee touch mkdir rm cp mv ln test expr seq yes basename dirname xargs find timeout kill ps
    wget nc nslookup ping base64 md5sum sha256sum tar gzip gunzip
"""
BUSYBOX_APPLETS = frozenset(_APPLETS.split())
_PYTHON = re.compile(r"python(3(\.\d+)?)?")

Which = Callable[[str], str | None]  # a command's name -> its path on this machine (shutil.which)


class MissingCommand(Exception):
    """The container's command is not in its image or not on this machine: its start fails, as runc's exec does."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Image:
    """One image as the container runtime sees it."""

    cmd: tuple[str, ...]  # the image's CMD
    commands: frozenset[str]  # the executables it ships, by name
    python: bool = False  # whether `python*` runs (this machine's interpreter)
    entrypoint: Callable[[list[str]], list[str]] | None = None  # what the ENTRYPOINT execs, given CMD or args

    def argv(self, command: list[str], args: list[str]) -> list[str]:
        """The words the container runs: the pod's command (and args) else the ENTRYPOINT on args, else on CMD."""
        if command:
            return command + args
        given = args or list(self.cmd)
        return self.entrypoint(given) if self.entrypoint is not None else given

    def ships(self, word: str) -> bool:
        name = word.rsplit("/", 1)[-1]
        return name in self.commands or (self.python and _PYTHON.fullmatch(name) is not None)

    def executable(self, word: str, *, which: Which = shutil.which) -> str:
        """This machine's path for the image's command `word` (a name or a path in the image)."""
        name = word.rsplit("/", 1)[-1]
        if not self.ships(word):
            raise MissingCommand(f'exec: "{word}": executable file not found in $PATH')
        if self.python and _PYTHON.fullmatch(name):
            return sys.executable
        found = which(name)
        if found is None:
            raise MissingCommand(
                f'exec: "{word}": executable file not found in $PATH (the simulated image runs this machine\'s '
                f"{name}, which is not installed)"
            )
        return found


def _curl_entrypoint(args: list[str]) -> list[str]:
    """curlimages/curl's /entrypoint.sh: `curl "$@"` unless the first argument is a command the image has."""
    return args if not args[0].startswith("-") and CURL.ships(args[0]) else ["curl", *args]


CURL = Image(cmd=("curl",), commands=BUSYBOX_APPLETS | {"curl"}, entrypoint=_curl_entrypoint)
IMAGES: Mapping[str, Image] = MappingProxyType(
    {
        "curlimages/curl": CURL,
        "busybox": Image(cmd=("sh",), commands=BUSYBOX_APPLETS),
        "python": Image(cmd=("python3",), commands=frozenset({"sh", "bash"}), python=True),
    }
)
