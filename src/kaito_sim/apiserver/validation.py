"""Admission-time checks and defaulting of one object: ObjectMeta, CRD schemas, built-in schemas, CRDs."""

from __future__ import annotations

from kaito_sim.apiserver import errors, schema
from kaito_sim.apiserver.builtin_defaults import apply_builtin_defaults
from kaito_sim.apiserver.builtin_ranges import range_causes
from kaito_sim.apiserver.builtin_schemas import prune_builtin, validate_builtin
from kaito_sim.apiserver.cluster import WriteOptions
from kaito_sim.apiserver.crds import crd_causes
from kaito_sim.apiserver.errors import JsonObj
from kaito_sim.apiserver.objects import metadata_causes
from kaito_sim.apiserver.resources import ResourceType

OBJECT_META_FIELDS = frozenset(
    {
        "name",
        "generateName",
        "namespace",
        "selfLink",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "labels",
        "annotations",
        "ownerReferences",
        "finalizers",
        "managedFields",
    }
)


def check_type_meta(rt: ResourceType, body: object) -> JsonObj:
    """The body as an object of `rt`'s kind and version; kind/apiVersion default from the URL."""
    if not isinstance(body, dict):
        raise errors.bad_request(f"the body of the request must be a JSON object describing a {rt.kind}")
    body.setdefault("apiVersion", rt.group_version)
    body.setdefault("kind", rt.kind)
    if body["apiVersion"] != rt.group_version:
        raise errors.bad_request(
            f"the API version in the data ({body['apiVersion']}) does not match the expected API version "
            f"({rt.group_version})"
        )
    if body["kind"] != rt.kind:
        raise errors.bad_request(f"the kind in the data ({body['kind']}) does not match the expected kind ({rt.kind})")
    meta = body.get("metadata")
    if meta is None:
        body["metadata"] = meta = {}
    if not isinstance(meta, dict):
        raise errors.bad_request("metadata must be a JSON object")
    for key in [k for k in meta if k not in OBJECT_META_FIELDS]:
        del meta[key]
    return body


def _unknown_fields(rt: ResourceType, unknown: list[str], opts: WriteOptions, *, patching: bool) -> None:
    """Answer pruned `unknown` field paths per `fieldValidation`: Ignore, Warn (a warning each) or Strict (400/422).

    The fields are already gone from the object; only the reporting differs.
    """
    if not unknown or opts.field_validation == "Ignore":
        return
    if opts.field_validation == "Warn":
        opts.warnings.extend(f'unknown field "{path}"' for path in unknown)
        return
    detail = ", ".join(f'unknown field "{path}"' for path in unknown)
    if patching:
        raise errors.ApiError(
            422,
            "Invalid",
            f"strict decoding error: {detail}",
            {"causes": [errors.cause("FieldValueInvalid", "unknown field", path) for path in unknown]},
        )
    raise errors.bad_request(
        f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: strict decoding error: {detail}'
    )


def validate_object(rt: ResourceType, obj: JsonObj, opts: WriteOptions, *, patching: bool = False) -> None:
    """Default, prune and validate `obj` in place; raise 400/422 the way a real server would."""
    causes: list[JsonObj] = []
    if rt.is_custom:
        if rt.schema is not None:
            _unknown_fields(rt, schema.prune(obj, rt.schema), opts, patching=patching)
            schema.apply_defaults(obj, rt.schema)
            causes += schema.validate(obj, rt.schema)
    else:
        _unknown_fields(rt, prune_builtin(obj), opts, patching=patching)
        apply_builtin_defaults(rt.group, obj)
        causes += validate_builtin(obj) + range_causes(obj)
    if rt.storage_key == ("apiextensions.k8s.io", "customresourcedefinitions"):
        causes += crd_causes(obj)
        causes += _crd_schema_causes(obj)
    causes = metadata_causes(rt.kind, obj["metadata"]) + causes
    if causes:
        raise errors.invalid(rt.kind, rt.group, str(obj["metadata"].get("name") or ""), causes)


def _crd_schema_causes(crd: JsonObj) -> list[JsonObj]:
    out: list[JsonObj] = []
    for i, version in enumerate((crd.get("spec") or {}).get("versions") or []):
        openapi = (version.get("schema") or {}).get("openAPIV3Schema") if isinstance(version, dict) else None
        if isinstance(openapi, dict):
            out += schema.validate_crd_schema(openapi, base=f"spec.versions[{i}].schema.openAPIV3Schema")
    return out
