"""Scripted container failures, so tests can watch the system react to pods that never pull, crash or fail probes."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from kaito_sim.apiserver.errors import JsonObj

MODES = ("ImagePullBackOff", "CrashLoopBackOff", "OOMKilled", "ProbeFailure", "InitFailure")
PROBE_MESSAGE = "Readiness probe failed: HTTP probe failed with statuscode: 503"


@dataclass(frozen=True)
class PodFault:
    """One failure mode for the pods whose labels include every `selector` pair (in `namespace`, if given).

    `message` words the failure: the pull error, the container's termination message, or the probe event.
    """

    selector: tuple[tuple[str, str], ...]
    mode: str
    message: str = ""
    namespace: str | None = None

    def matches(self, pod: JsonObj) -> bool:
        meta = pod["metadata"]
        if self.namespace is not None and meta.get("namespace") != self.namespace:
            return False
        labels = meta.get("labels") or {}
        return all(labels.get(k) == v for k, v in self.selector)

    def pull_error(self, image: str) -> str:
        return self.message or (
            f'failed to pull and unpack image "{image}": failed to resolve reference "{image}": {image}: not found'
        )


class PodFaults:
    """The faults in force; the first added that matches a pod wins. Clearing lets affected pods recover."""

    def __init__(self) -> None:
        self._faults: list[PodFault] = []
        self._listeners: list[Callable[[], None]] = []
        self.backoff_seconds = 2.0  # between simulated container restarts (and from ErrImagePull to back-off)
        self.max_restarts = 5  # restarts stop being reported after this many, so a crash loop's writes end

    def add(
        self, selector: Mapping[str, str], mode: str, *, message: str = "", namespace: str | None = None
    ) -> PodFault:
        if mode not in MODES:
            raise ValueError(f"unknown pod fault mode {mode!r}; choose one of {', '.join(MODES)}")
        fault = PodFault(tuple(sorted(selector.items())), mode, message, namespace)
        self._faults.append(fault)
        self._changed()
        return fault

    def remove(self, fault: PodFault) -> None:
        if fault in self._faults:
            self._faults.remove(fault)
            self._changed()

    def clear(self) -> None:
        self._faults.clear()
        self._changed()

    def match(self, pod: JsonObj) -> PodFault | None:
        return next((f for f in self._faults if f.matches(pod)), None)

    def __len__(self) -> int:
        return len(self._faults)

    def subscribe(self, listener: Callable[[], None]) -> None:
        """Call `listener` whenever the set of faults changes (the kubelet re-evaluates its pods)."""
        self._listeners.append(listener)

    def _changed(self) -> None:
        for listener in list(self._listeners):
            listener()
