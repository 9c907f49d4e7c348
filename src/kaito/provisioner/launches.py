"""Launch bookkeeping: what this process knows before the cache does (so no stale read launches twice); retry timing."""

from __future__ import annotations

from dataclasses import dataclass

from kaito.provisioner import cloud
from kaito.runtime.reconcile import Result


@dataclass
class _Launch:
    uid: str  # a claim deleted and re-created under the same name is a different claim
    created: bool = False
    created_at: float = 0.0
    retry_at: float = 0.0


class Launches:
    """Per NodeClaim name: a creation not yet visible in the cache, or the earliest time a failed launch may retry.

    The cache lags our own status writes by a watch round trip. Until it shows `Launched=True`, a
    reconcile would see no launch and call `create` again; this memory says "already done". The
    retry time keeps the reconcile that our own status write triggers from retrying a failed launch
    at once. Both are lost on restart, which is fine: the status is written by then, and the
    provider's idempotent `create` is the backstop.
    """

    def __init__(self) -> None:
        self._by_name: dict[str, _Launch] = {}

    def remember(self, name: str, uid: str, *, at: float) -> None:
        self._by_name[name] = _Launch(uid, created=True, created_at=at)

    def created_since(self, name: str, uid: str) -> float | None:
        """When this process launched the claim's instance, while the cache does not show the launch yet."""
        entry = self._by_name.get(name)
        return entry.created_at if entry is not None and entry.uid == uid and entry.created else None

    def created(self, name: str, uid: str) -> bool:
        entry = self._by_name.get(name)
        return entry is not None and entry.uid == uid and entry.created

    def seen(self, name: str) -> None:
        """The cache shows the launch now: stop vouching for it."""
        entry = self._by_name.get(name)
        if entry is not None and entry.created:
            del self._by_name[name]

    def back_off(self, name: str, uid: str, *, until: float) -> None:
        self._by_name[name] = _Launch(uid, retry_at=until)

    def wait_left(self, name: str, uid: str, *, now: float) -> float:
        entry = self._by_name.get(name)
        return 0.0 if entry is None or entry.uid != uid else max(0.0, entry.retry_at - now)

    def forget(self, name: str) -> None:
        self._by_name.pop(name, None)

    def __len__(self) -> int:
        return len(self._by_name)


def retry_delay(exc: cloud.CloudError, *, retry_interval: float) -> float | None:
    """When to call the cloud again: its own `retry_after`, else the patient interval for capacity, quota and
    SKU faults (which clear on someone else's schedule); None leaves transient faults to the queue's backoff."""
    if exc.retry_after is not None:
        return exc.retry_after
    return None if isinstance(exc, cloud.TransientError) else retry_interval


def retry_result(exc: cloud.CloudError, *, retry_interval: float) -> Result:
    delay = retry_delay(exc, retry_interval=retry_interval)
    return Result(requeue=True) if delay is None else Result(requeue_after=delay)
