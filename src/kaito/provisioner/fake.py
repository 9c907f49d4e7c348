"""An in-memory `CloudProvider` for tests: records every call, takes scripted failures, and moves only when told."""

from __future__ import annotations

import dataclasses
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable

from kaito.provisioner.cloud import CloudError, Instance, InstanceRequest, InstanceState, NotFound

OnReady = Callable[[Instance], Awaitable[None]]
METHODS = ("create", "get", "delete", "list")


class FakeCloudProvider:
    """One instance per NodeClaim name, idempotent like a real provider.

    Instances start `Creating`; `finish` (or the first `get` after creation, with `auto_finish`) makes
    them `Succeeded` and awaits `on_ready`, so a test can register the Node the way a kubelet would.
    `delete` marks an instance `Deleting`; `finish_delete` (or the next `get`/`list`, with
    `auto_delete`) removes it.
    """

    def __init__(
        self,
        *,
        name: str = "fake",
        auto_finish: bool = False,
        auto_delete: bool = False,
        on_ready: OnReady | None = None,
    ) -> None:
        self.name = name
        self.auto_finish = auto_finish
        self.auto_delete = auto_delete
        self.on_ready = on_ready
        self.calls: list[tuple[str, str]] = []  # (method, nodeclaim); list records ""
        self.requests: list[InstanceRequest] = []  # every create request, in order
        self.instances: dict[str, Instance] = {}
        self._failures: dict[str, deque[CloudError]] = defaultdict(deque)

    # ----- scripting

    def fail_next(self, method: str, error: CloudError, times: int = 1) -> None:
        """The next `times` calls of `method` raise `error` (after being recorded)."""
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; one of {METHODS}")
        self._failures[method].extend([error] * times)

    def clear_failures(self, method: str | None = None) -> None:
        for key in [method] if method else list(self._failures):
            self._failures[key].clear()

    async def finish(self, nodeclaim: str) -> Instance:
        """The cloud finished building the instance: `Succeeded`, then `on_ready` runs."""
        instance = self._set(nodeclaim, InstanceState.SUCCEEDED)
        if self.on_ready is not None:
            await self.on_ready(instance)
        return instance

    def fail_instance(self, nodeclaim: str, error: CloudError) -> Instance:
        """The cloud gave up on the instance: `Failed`, carrying `error` and its message."""
        return self._set(nodeclaim, InstanceState.FAILED, message=error.message, error=error)

    def finish_delete(self, nodeclaim: str) -> None:
        """The cloud finished deleting: the instance is gone."""
        del self.instances[nodeclaim]

    def count(self, method: str, nodeclaim: str | None = None) -> int:
        """How many times `method` was called (for `nodeclaim`, when given)."""
        return sum(1 for m, claim in self.calls if m == method and (nodeclaim is None or claim == nodeclaim))

    # ----- CloudProvider

    async def create(self, request: InstanceRequest) -> Instance:
        self._record("create", request.nodeclaim)
        self.requests.append(request)
        existing = self.instances.get(request.nodeclaim)
        if existing is not None:
            return existing
        instance = Instance(
            name=request.nodeclaim,
            nodeclaim=request.nodeclaim,
            instance_type=request.instance_type,
            state=InstanceState.CREATING,
            provider_id=f"{self.name}:///{request.nodeclaim}",
        )
        self.instances[request.nodeclaim] = instance
        return instance

    async def get(self, nodeclaim: str) -> Instance:
        self._record("get", nodeclaim)
        instance = await self._advance(nodeclaim)
        if instance is None:
            raise NotFound(f"instance for nodeclaim {nodeclaim} not found")
        return instance

    async def delete(self, nodeclaim: str) -> None:
        self._record("delete", nodeclaim)
        if nodeclaim not in self.instances:
            raise NotFound(f"instance for nodeclaim {nodeclaim} not found")
        self._set(nodeclaim, InstanceState.DELETING)

    async def list(self) -> list[Instance]:
        self._record("list", "")
        instances = [await self._advance(name) for name in list(self.instances)]
        return [instance for instance in instances if instance is not None]

    # ----- internals

    def _record(self, method: str, nodeclaim: str) -> None:
        self.calls.append((method, nodeclaim))
        failures = self._failures[method]
        if failures:
            raise failures.popleft()

    async def _advance(self, nodeclaim: str) -> Instance | None:
        """Apply the automatic transitions a read would observe on a real cloud."""
        instance = self.instances.get(nodeclaim)
        if instance is None:
            return None
        if self.auto_delete and instance.state is InstanceState.DELETING:
            del self.instances[nodeclaim]
            return None
        if self.auto_finish and instance.state is InstanceState.CREATING:
            return await self.finish(nodeclaim)
        return instance

    def _set(
        self, nodeclaim: str, state: InstanceState, *, message: str | None = None, error: CloudError | None = None
    ) -> Instance:
        """Move an instance to `state`; leaving `Failed` clears its message and error."""
        instance = self.instances[nodeclaim]  # KeyError: the test names an instance that does not exist
        failed = state is InstanceState.FAILED
        updated = dataclasses.replace(
            instance,
            state=state,
            message=message if message is not None else (instance.message if failed else ""),
            error=error if failed else None,
        )
        self.instances[nodeclaim] = updated
        return updated
