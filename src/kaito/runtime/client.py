"""`Client`: typed async calls for any kind, built-in or custom, with objects as plain JSON dicts.

kubernetes-asyncio supplies configuration, auth, TLS and the connection pool; its generated API
classes are not used, because they cover only built-in kinds and decode into models. Requests go
through `Transport` (rate limiting, retries, metrics, errors mapped to `kaito.runtime.errors`).
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncGenerator
from enum import StrEnum
from types import TracebackType
from typing import Any, NamedTuple

from kaito.runtime import errors
from kaito.runtime.clientconfig import INCLUSTER_CA_PATH, INCLUSTER_TOKEN_PATH, load_configuration
from kaito.runtime.clock import REAL_CLOCK, Clock
from kaito.runtime.k8slib import ApiClient
from kaito.runtime.kinds import Kind
from kaito.runtime.metrics import METRICS, RuntimeMetrics
from kaito.runtime.objects import Obj
from kaito.runtime.transport import JSON, Transport

# Defined before `Client`, whose `list` method would shadow the builtin inside the class body.
PatchBody = Obj | list[Obj]
Query = dict[str, str]


class WatchEvent(NamedTuple):
    type: str  # ADDED, MODIFIED, DELETED or BOOKMARK
    object: Obj


class ObjectList(NamedTuple):
    items: list[Obj]
    resource_version: str
    continue_token: str


class PatchType(StrEnum):
    MERGE = "application/merge-patch+json"
    STRATEGIC = "application/strategic-merge-patch+json"
    JSON = "application/json-patch+json"
    APPLY = "application/apply-patch+yaml"


class Client:
    """REST verbs for any `Kind`; every non-2xx answer raises the matching `errors.ApiError`."""

    def __init__(
        self,
        api_client: ApiClient,
        *,
        qps: float = 20.0,
        burst: int = 30,
        max_retries: int = 5,
        clock: Clock = REAL_CLOCK,
        user_agent: str = "kaito-runtime",
        request_timeout: float | None = 60.0,
        owns_api_client: bool = False,
        metrics: RuntimeMetrics = METRICS,
    ) -> None:
        self.api_client = api_client
        self.clock = clock
        self.metrics = metrics
        self.owns_api_client = owns_api_client
        self._transport = Transport(
            api_client,
            qps=qps,
            burst=burst,
            max_retries=max_retries,
            clock=clock,
            user_agent=user_agent,
            request_timeout=request_timeout,
            metrics=metrics,
        )
        self.host = self._transport.host

    @classmethod
    async def from_config(
        cls,
        *,
        kubeconfig: str | os.PathLike[str] | None = None,
        context: str | None = None,
        incluster_token_path: str | os.PathLike[str] = INCLUSTER_TOKEN_PATH,
        incluster_ca_path: str | os.PathLike[str] = INCLUSTER_CA_PATH,
        **options: Any,
    ) -> Client:
        """A client that owns its `ApiClient`, configured as `clientconfig.load_configuration` decides."""
        configuration = await load_configuration(
            kubeconfig=kubeconfig,
            context=context,
            incluster_token_path=incluster_token_path,
            incluster_ca_path=incluster_ca_path,
        )
        return cls(ApiClient(configuration), owns_api_client=True, **options)

    async def close(self) -> None:
        if self.owns_api_client:
            await self.api_client.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def get(self, kind: Kind, name: str, *, namespace: str | None = None) -> Obj:
        return await self._call("GET", kind.path(namespace=namespace, name=name))

    async def list(
        self,
        kind: Kind,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int | None = None,
        continue_token: str | None = None,
        resource_version: str | None = None,
    ) -> ObjectList:
        """One page; items get `apiVersion` and `kind` filled in, since servers leave them off built-in list items."""
        query = _query(
            labelSelector=label_selector,
            fieldSelector=field_selector,
            limit=str(limit) if limit else None,
            resourceVersion=resource_version,
        )
        if continue_token:
            query["continue"] = continue_token
        body = await self._call("GET", kind.path(namespace=namespace), query=query)
        items: list[Obj] = body.get("items") or []
        for item in items:
            item.setdefault("apiVersion", kind.api_version)
            item.setdefault("kind", kind.kind)
        meta = body.get("metadata") or {}
        return ObjectList(items, str(meta.get("resourceVersion") or ""), str(meta.get("continue") or ""))

    async def list_all(
        self,
        kind: Kind,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        page_size: int = 500,
    ) -> ObjectList:
        """Every page, following `continue`; the resourceVersion is the last page's (a consistent snapshot)."""
        items: list[Obj] = []
        token: str | None = None
        while True:
            page = await self.list(
                kind,
                namespace=namespace,
                label_selector=label_selector,
                field_selector=field_selector,
                limit=page_size,
                continue_token=token,
            )
            items.extend(page.items)
            if not page.continue_token:
                return ObjectList(items, page.resource_version, "")
            token = page.continue_token

    async def create(self, kind: Kind, obj: Obj, *, field_manager: str | None = None, dry_run: bool = False) -> Obj:
        query = _query(fieldManager=field_manager, dryRun="All" if dry_run else None)
        return await self._call("POST", kind.path(namespace=_namespace_of(kind, obj)), query=query, body=obj)

    async def update(self, kind: Kind, obj: Obj, *, field_manager: str | None = None, dry_run: bool = False) -> Obj:
        """PUT; the object's resourceVersion makes it conditional (a stale one raises `Conflict`)."""
        return await self._put(kind, obj, None, field_manager=field_manager, dry_run=dry_run)

    async def update_status(self, kind: Kind, obj: Obj, *, field_manager: str | None = None) -> Obj:
        return await self._put(kind, obj, "status", field_manager=field_manager, dry_run=False)

    async def patch(
        self,
        kind: Kind,
        name: str,
        patch: PatchBody,
        *,
        namespace: str | None = None,
        patch_type: PatchType = PatchType.MERGE,
        field_manager: str | None = None,
        force: bool | None = None,
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> Obj:
        if patch_type is PatchType.APPLY and not field_manager:
            raise ValueError("server-side apply needs a field_manager")
        query = _query(
            fieldManager=field_manager,
            force=None if force is None else str(force).lower(),
            dryRun="All" if dry_run else None,
        )
        path = kind.path(namespace=namespace, name=name, subresource=subresource)
        return await self._call("PATCH", path, query=query, body=patch, content_type=patch_type.value)

    async def patch_status(
        self,
        kind: Kind,
        name: str,
        patch: PatchBody,
        *,
        namespace: str | None = None,
        patch_type: PatchType = PatchType.MERGE,
        field_manager: str | None = None,
    ) -> Obj:
        return await self.patch(
            kind,
            name,
            patch,
            namespace=namespace,
            patch_type=patch_type,
            field_manager=field_manager,
            subresource="status",
        )

    async def apply(
        self, kind: Kind, obj: Obj, *, field_manager: str, force: bool = False, subresource: str | None = None
    ) -> Obj:
        """Server-side apply: `obj` holds only the fields this manager owns; creates the object when missing."""
        body = {"apiVersion": kind.api_version, "kind": kind.kind, **obj}
        return await self.patch(
            kind,
            _name_of(obj),
            body,
            namespace=_namespace_of(kind, obj),
            patch_type=PatchType.APPLY,
            field_manager=field_manager,
            force=force,
            subresource=subresource,
        )

    async def delete(
        self,
        kind: Kind,
        name: str,
        *,
        namespace: str | None = None,
        propagation_policy: str | None = None,
        preconditions_uid: str | None = None,
        preconditions_resource_version: str | None = None,
        grace_period_seconds: int | None = None,
        dry_run: bool = False,
    ) -> Obj:
        """DELETE with a DeleteOptions body; returns what the server answered (the object or a Status)."""
        options: Obj = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if propagation_policy is not None:
            options["propagationPolicy"] = propagation_policy
        preconditions = _query(uid=preconditions_uid, resourceVersion=preconditions_resource_version)
        if preconditions:
            options["preconditions"] = preconditions
        if grace_period_seconds is not None:
            options["gracePeriodSeconds"] = grace_period_seconds
        if dry_run:
            options["dryRun"] = ["All"]
        return await self._call("DELETE", kind.path(namespace=namespace, name=name), body=options)

    async def watch(
        self,
        kind: Kind,
        *,
        namespace: str | None = None,
        resource_version: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        allow_bookmarks: bool = True,
        timeout_seconds: int | None = None,
    ) -> AsyncGenerator[WatchEvent, None]:
        """Events from one watch stream until the server ends it; close the generator to drop the connection.

        An ERROR event raises its mapped `ApiError` (`Gone` when `resource_version` is too old).
        """
        query = _query(
            watch="true",
            allowWatchBookmarks="true" if allow_bookmarks else None,
            resourceVersion=resource_version,
            labelSelector=label_selector,
            fieldSelector=field_selector,
            timeoutSeconds=None if timeout_seconds is None else str(timeout_seconds),
        )
        # No read timeout without timeoutSeconds: an idle watch is normal, and the server decides when it ends.
        read_timeout = None if timeout_seconds is None else timeout_seconds + 30.0
        response = await self._transport.open_stream(
            kind.path(namespace=namespace), query=query, read_timeout=read_timeout
        )
        try:
            # Split lines ourselves: aiohttp's readline refuses lines over its buffer limit (about 128 KiB),
            # and one watch event carries a whole object, which may be up to the 1.5 MiB etcd allows.
            pending = b""
            async for chunk in response.content.iter_any():
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield _watch_event(line)
            if pending.strip():
                yield _watch_event(pending)
        finally:
            response.close()

    async def raw(self, method: str, path: str, *, body: Any = None) -> Any:
        """Any API path (a Service proxy, `/version`); returns the decoded JSON body."""
        return await self._transport.call(method, path, body=body)

    async def text(self, path: str, *, read_timeout: float = 10.0) -> str:
        """A GET of any API path whose answer is text (a pod's `/metrics` through `pods/NAME:PORT/proxy`)."""
        return await self._transport.call_text(path, read_timeout=read_timeout)

    async def _put(
        self, kind: Kind, obj: Obj, subresource: str | None, *, field_manager: str | None, dry_run: bool
    ) -> Obj:
        path = kind.path(namespace=_namespace_of(kind, obj), name=_name_of(obj), subresource=subresource)
        query = _query(fieldManager=field_manager, dryRun="All" if dry_run else None)
        return await self._call("PUT", path, query=query, body=obj)

    async def _call(
        self, method: str, path: str, *, query: Query | None = None, body: Any = None, content_type: str = JSON
    ) -> Obj:
        result = await self._transport.call(method, path, query=query, body=body, content_type=content_type)
        if not isinstance(result, dict):
            raise errors.ApiError(500, reason="InternalError", message=f"{method} {path}: response is not an object")
        return result


def _query(**params: str | None) -> Query:
    return {key: value for key, value in params.items() if value is not None}


def _name_of(obj: Obj) -> str:
    name = (obj.get("metadata") or {}).get("name")
    if not name:
        raise ValueError("the object has no metadata.name")
    return str(name)


def _namespace_of(kind: Kind, obj: Obj) -> str | None:
    if not kind.namespaced:
        return None
    namespace = (obj.get("metadata") or {}).get("namespace")
    if not namespace:
        raise ValueError(f"{kind.kind} is namespaced but the object has no metadata.namespace")
    return str(namespace)


def _watch_event(line: bytes) -> WatchEvent:
    event = json.loads(line)
    if not isinstance(event, dict):
        raise errors.ApiError(500, reason="InternalError", message=f"malformed watch event: {line[:200]!r}")
    if event.get("kind") == "Status":  # some servers end a failed watch with a bare Status line
        raise errors.from_status(event)
    obj = event.get("object") or {}
    if event.get("type") == "ERROR":
        raise errors.from_status(obj)
    return WatchEvent(str(event.get("type")), obj)
