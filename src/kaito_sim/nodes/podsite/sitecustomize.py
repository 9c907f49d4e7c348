"""Makes a process pod's Python resolve the cluster's Service names from the hosts file `KAITO_SIM_HOSTS` names.

Python imports `sitecustomize` at start-up from the first directory of its path that has one; the simulated
kubelet puts this directory first on a process pod's PYTHONPATH. Lookups of a name the file lists go to its
address, anything else to the resolver as before; the file is read again whenever it changes. A sitecustomize
this one shadows still runs. Only the standard library is imported: this runs in any Python process.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import socket
import sys
from typing import Any

_HOSTS = os.environ.get("KAITO_SIM_HOSTS", "")
_seen: tuple[tuple[int, int], dict[str, str]] = ((0, 0), {})


def _table() -> dict[str, str]:
    """The names of the hosts file (`ADDRESS NAME...` lines), read again when the file was replaced."""
    global _seen
    try:
        stat = os.stat(_HOSTS)
    except OSError:
        return {}
    version = (stat.st_ino, stat.st_mtime_ns)
    if version != _seen[0]:
        names: dict[str, str] = {}
        with open(_HOSTS, encoding="utf-8") as file:
            for line in file:
                fields = line.split("#", 1)[0].split()
                names.update({name.lower(): fields[0] for name in fields[1:]})
        _seen = (version, names)
    return _seen[1]


def _address(host: Any) -> Any:
    name = host.decode(errors="replace") if isinstance(host, bytes) else host
    found = _table().get(name.lower().rstrip(".")) if isinstance(name, str) and name else None
    return found if found is not None else host


_getaddrinfo, _gethostbyname, _gethostbyname_ex = socket.getaddrinfo, socket.gethostbyname, socket.gethostbyname_ex


def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    return _getaddrinfo(_address(host), *args, **kwargs)


def gethostbyname(host: str) -> str:
    return _gethostbyname(_address(host))


def gethostbyname_ex(host: str) -> tuple[str, list[str], list[str]]:
    return _gethostbyname_ex(_address(host))


def _shadowed() -> None:
    """Run the sitecustomize a later directory of sys.path holds, as Python would have without this one."""
    here = os.path.dirname(os.path.abspath(__file__))
    rest = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is not None and spec.loader is not None:
        spec.loader.exec_module(importlib.util.module_from_spec(spec))


if _HOSTS:
    socket.getaddrinfo, socket.gethostbyname, socket.gethostbyname_ex = getaddrinfo, gethostbyname, gethostbyname_ex
_shadowed()
