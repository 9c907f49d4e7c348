"""The OpenAPI v3 documents' shape: refs resolve, one schema per served kind, hashes follow CRD changes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from kaito_sim.apiserver import openapi
from kaito_sim.apiserver.crds import served_types
from kaito_sim.apiserver.openapi_builtin import GVK_KEY, REF_PREFIX
from kaito_sim.apiserver.resources import Registry
from tests.kaito_sim.manifests import CRD

CRDS = Path(__file__).resolve().parents[3] / "crds"


def _registry() -> Registry:
    registry = Registry()
    for text in [CRD, *(p.read_text() for p in sorted(CRDS.glob("*.yaml")))]:
        crd = yaml.safe_load(text)
        registry.set_custom(crd["metadata"]["name"], served_types(crd))
    return registry


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _documents(registry: Registry) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for group, versions in registry.groups().items():
        for version in versions:
            yield group, version, openapi.document(registry, group, version)


def test_every_ref_resolves_within_its_document() -> None:
    for group, version, doc in _documents(_registry()):
        schemas = doc["components"]["schemas"]
        refs = set(_refs(doc))
        assert refs, (group, version)
        for ref in refs:
            assert ref.startswith(REF_PREFIX) and ref[len(REF_PREFIX) :] in schemas, (group, version, ref)


def test_each_served_kind_has_exactly_one_schema_with_its_gvk() -> None:
    registry = _registry()
    for group, version, doc in _documents(registry):
        tagged = [
            gvk
            for schema in doc["components"]["schemas"].values()
            for gvk in schema.get(GVK_KEY, [])
            if (gvk["group"], gvk["version"]) == (group, version)
        ]
        for rt in registry.in_group_version(group, version):
            gvk = {"group": group, "version": version, "kind": rt.kind}
            assert tagged.count(gvk) == 1, gvk
            # kubectl explain finds the kind through the operations on the resource's paths
            ops = [op for item in doc["paths"].values() for op in item.values() if op[GVK_KEY] == gvk]
            assert ops and all(any(p["name"] == "fieldValidation" for p in op["parameters"]) for op in ops)


def test_custom_kind_publishes_its_crd_schema_with_object_meta() -> None:
    registry = _registry()
    rt = registry.by_kind("kaito.sh", "v1beta1", "Workspace")
    assert rt is not None and rt.schema is not None
    schemas = openapi.document(registry, "kaito.sh", "v1beta1")["components"]["schemas"]
    workspace = schemas["sh.kaito.v1beta1.Workspace"]
    assert workspace["properties"]["metadata"]["allOf"] == [
        {"$ref": REF_PREFIX + "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}
    ]
    assert workspace["properties"]["apiVersion"]["description"] and workspace["properties"]["kind"]["description"]
    adapters = workspace["properties"]["inference"]["properties"]["adapters"]
    assert adapters == rt.schema["properties"]["inference"]["properties"]["adapters"]
    assert adapters["description"]
    assert rt.schema["properties"]["metadata"] == {"type": "object"}  # the served type's own schema is untouched


def test_builtin_schemas_carry_structure_and_merge_keys_but_no_upstream_prose() -> None:
    registry = Registry()
    schemas = openapi.document(registry, "", "v1")["components"]["schemas"]
    containers = schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"]
    assert containers["x-kubernetes-patch-merge-key"] == "name" and containers["type"] == "array"
    assert containers["items"] == {"$ref": REF_PREFIX + "io.k8s.api.core.v1.Container"}
    assert schemas["io.k8s.api.core.v1.Container"]["required"] == ["name"]
    text = json.dumps({k: v for _, _, doc in _documents(registry) for k, v in doc["components"]["schemas"].items()})
    assert "More info" not in text and "git.k8s.io" not in text
    assert '"null"' not in text and "$defs" not in text


def test_index_hash_changes_only_with_the_documents() -> None:
    registry = Registry()
    crd = yaml.safe_load(CRD)

    def urls() -> dict[str, str]:
        return {path: entry["serverRelativeURL"] for path, entry in openapi.index(registry)["paths"].items()}

    before = urls()
    assert urls() == before
    registry.set_custom(crd["metadata"]["name"], served_types(crd))
    installed = urls()
    assert "apis/demo.kaito.sh/v1" in installed and installed["apis/apps/v1"] == before["apis/apps/v1"]
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["owner"] = {
        "type": "string"
    }
    registry.set_custom(crd["metadata"]["name"], served_types(crd))
    changed = urls()
    assert changed["apis/demo.kaito.sh/v1"] != installed["apis/demo.kaito.sh/v1"]
    assert "owner" in json.dumps(openapi.document(registry, "demo.kaito.sh", "v1"))
    registry.set_custom(crd["metadata"]["name"], [])
    assert urls() == before
