"""The parts of kubernetes-asyncio the runtime uses, loaded without its generated API classes and models.

The runtime needs only `Configuration`, `ApiClient` (auth, TLS, the connection pool) and the kubeconfig
and in-cluster loaders, and speaks raw JSON. But `kubernetes_asyncio/__init__.py` imports
`kubernetes_asyncio.client`, whose `__init__` imports ~140 generated API classes and its `models`
package, whose `__init__` imports ~700 generated models: 1,300 modules and ~70 MiB of a process,
paid by every submodule import, since Python runs a package's `__init__` before any of its modules.

So before the first import of kubernetes-asyncio, those three packages are registered in
`sys.modules` as genuine package objects (their own spec, `__path__` and `__file__`) whose `__init__`
has not run yet. Submodules then import as usual. A name such a package does not hold yet is
resolved on first access by its module-level `__getattr__` (PEP 562): a submodule of that name is
imported; the two re-exports the runtime's own imports reach (`client.Configuration` and
`client.ApiClient`, which `config.kube_config` imports from the package) come from the submodules
defining them; any other name, or `dir()`, runs the package's real `__init__` in place, after which
the package is what a plain import gives (`tests/runtime/test_k8slib.py` checks both halves). Only
`vars()` of a package not yet completed shows less. Nothing of kubernetes-asyncio is copied or
patched: its modules run unmodified. Where kubernetes-asyncio was imported first, this changes nothing.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
from types import ModuleType

_PACKAGES = ("kubernetes_asyncio", "kubernetes_asyncio.client", "kubernetes_asyncio.client.models")
# Names a deferred package's __init__ would bind, and the submodule each comes from.
_REEXPORTS = {
    "kubernetes_asyncio.client": {
        "Configuration": "kubernetes_asyncio.client.configuration",
        "ApiClient": "kubernetes_asyncio.client.api_client",
    },
}
_lock = threading.RLock()


def _defer_init(name: str) -> None:
    """Register package `name` without running its `__init__`; a no-op when it is imported already."""
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        raise ImportError(f"{name} is not an importable package", name=name)
    module = importlib.util.module_from_spec(spec)
    reexports = _REEXPORTS.get(name, {})

    def __getattr__(attr: str) -> object:
        if attr in reexports:
            return getattr(importlib.import_module(reexports[attr]), attr)
        if not attr.startswith("__"):
            try:
                return importlib.import_module(f"{name}.{attr}")
            except ModuleNotFoundError as exc:
                if exc.name != f"{name}.{attr}":
                    raise
        _run_init(module)
        try:
            return module.__dict__[attr]
        except KeyError:
            raise AttributeError(f"module {name!r} has no attribute {attr!r}") from None

    def __dir__() -> list[str]:
        _run_init(module)
        return sorted(module.__dict__)

    module.__getattr__ = __getattr__  # type: ignore[method-assign]
    module.__dir__ = __dir__  # type: ignore[method-assign]
    sys.modules[name] = module
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, module)


def _run_init(module: ModuleType) -> None:
    """Run a deferred package's real `__init__` in its module object, once."""
    with _lock:
        if "__getattr__" not in module.__dict__:
            return
        del module.__dict__["__getattr__"], module.__dict__["__dir__"]
        spec = module.__spec__
        assert spec is not None and spec.loader is not None
        spec.loader.exec_module(module)


with _lock:
    for _name in _PACKAGES:
        _defer_init(_name)

from kubernetes_asyncio.client.api_client import ApiClient  # noqa: E402
from kubernetes_asyncio.client.configuration import Configuration  # noqa: E402
from kubernetes_asyncio.config.incluster_config import (  # noqa: E402
    SERVICE_CERT_FILENAME,
    SERVICE_HOST_ENV_NAME,
    SERVICE_TOKEN_FILENAME,
    InClusterConfigLoader,
)
from kubernetes_asyncio.config.kube_config import load_kube_config  # noqa: E402

__all__ = [
    "SERVICE_CERT_FILENAME",
    "SERVICE_HOST_ENV_NAME",
    "SERVICE_TOKEN_FILENAME",
    "ApiClient",
    "Configuration",
    "InClusterConfigLoader",
    "load_kube_config",
]
