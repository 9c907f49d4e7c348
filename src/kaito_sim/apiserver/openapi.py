"""The OpenAPI v3 index and group-version documents: operations kubectl checks, schemas `kubectl explain` reads.

Each document has, per resource, the write operations tagged with the kind (kubectl's field-validation check
reads their parameters; `kubectl explain` finds the kind through them) and, under `components.schemas`, the
kind's schema with everything it refers to. Custom resources publish their CRD's structural schema for that
version, with `metadata` pointing at ObjectMeta as kube-apiserver does. The PATCH operations declare no request
body, so kubectl computes apply's patches as before: its compiled-in strategies for built-in kinds, a JSON merge
patch for custom resources. Documents are cached per registry until a CRD changes; the index's `?hash=` changes
with the document, which is what makes kubectl refetch it.
"""

from __future__ import annotations

import hashlib
import json
import weakref
from dataclasses import dataclass, field

from kaito_sim.apiserver import openapi_builtin, openapi_text
from kaito_sim.apiserver.errors import JsonObj
from kaito_sim.apiserver.openapi_builtin import GVK_KEY, OBJECT_META, with_ref
from kaito_sim.apiserver.resources import Registry, ResourceType

_INFO = {"title": "Kubernetes", "version": "v1.32.0"}


@dataclass
class _Documents:
    generation: int
    by_group_version: dict[tuple[str, str], tuple[JsonObj, str]] = field(default_factory=dict)


_CACHE: weakref.WeakKeyDictionary[Registry, _Documents] = weakref.WeakKeyDictionary()


def gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def document(registry: Registry, group: str, version: str) -> JsonObj:
    """`/openapi/v3/apis/G/V` (or `/openapi/v3/api/v1`): shared between requests, never mutate it."""
    return _cached(registry, group, version)[0]


def index(registry: Registry) -> JsonObj:
    """`/openapi/v3`: each group-version's document URL, with a hash of its content."""
    paths: JsonObj = {}
    for group, versions in registry.groups().items():
        for version in versions:
            path = gv_path(group, version)
            paths[path] = {"serverRelativeURL": f"/openapi/v3/{path}?hash={_cached(registry, group, version)[1]}"}
    return {"paths": paths}


def schema_name(rt: ResourceType) -> str:
    """A custom kind's component name as kube-apiserver forms it: `sh.kaito.v1beta1.Workspace`."""
    return ".".join([*reversed(rt.group.split(".")), rt.version, rt.kind])


def _cached(registry: Registry, group: str, version: str) -> tuple[JsonObj, str]:
    documents = _CACHE.get(registry)
    if documents is None or documents.generation != registry.generation:
        documents = _CACHE[registry] = _Documents(registry.generation)
    entry = documents.by_group_version.get((group, version))
    if entry is None:
        doc = _build(registry, group, version)
        digest = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16].upper()
        entry = documents.by_group_version[(group, version)] = (doc, digest)
    return entry


def _build(registry: Registry, group: str, version: str) -> JsonObj:
    paths: JsonObj = {}
    param = [{"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": True}}]
    schemas: JsonObj = {}
    refs: list[str] = []
    for rt in registry.in_group_version(group, version):
        gvk = {"group": rt.group, "version": rt.version, "kind": rt.kind}
        scope = "namespaces/{namespace}/" if rt.namespaced else ""
        op = {GVK_KEY: gvk, "parameters": param, "responses": {"200": {"description": "OK"}}}
        paths[f"/{gv_path(group, version)}/{scope}{rt.plural}/{{name}}"] = {"patch": op, "put": op}
        paths[f"/{gv_path(group, version)}/{scope}{rt.plural}"] = {"post": op}
        if rt.is_custom:
            schemas[schema_name(rt)] = _custom_schema(rt, gvk)
            refs.append(OBJECT_META)
        else:
            name = openapi_builtin.definition_for(rt.group, rt.version, rt.kind)
            refs += [name] if name else []
    return {
        "openapi": "3.0.0",
        "info": _INFO,
        "paths": paths,
        "components": {"schemas": {**openapi_builtin.components(refs), **schemas}},
    }


def _custom_schema(rt: ResourceType, gvk: JsonObj) -> JsonObj:
    """The CRD's schema for this version; `apiVersion`, `kind` and `metadata` as kube-apiserver publishes them."""
    schema = json.loads(json.dumps(rt.schema)) if isinstance(rt.schema, dict) else {}
    if not schema:
        schema = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    properties: JsonObj = dict(schema.get("properties") or {})
    for name in ("apiVersion", "kind"):
        given = properties.get(name)
        own = given if isinstance(given, dict) else {}
        properties[name] = {"description": openapi_text.ROOT_FIELDS[name], **own, "type": "string"}
    properties["metadata"] = with_ref({"description": openapi_text.ROOT_FIELDS["metadata"]}, OBJECT_META)
    return {**schema, "type": "object", "properties": properties, GVK_KEY: [gvk]}
