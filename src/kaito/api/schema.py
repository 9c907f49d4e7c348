"""Structural OpenAPI v3 schemas for CRDs, derived from the pydantic models so the two cannot drift apart.

Kubernetes wants structural schemas (every node typed, no `$ref`, no `anyOf` of types), which pydantic's own
JSON Schema is not; this walks the model fields directly instead.
"""

from __future__ import annotations

import types
import typing
from typing import Any, Literal, Union

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo

Schema = dict[str, Any]
_SCALARS: dict[type, Schema] = {
    str: {"type": "string"},
    int: {"type": "integer"},
    float: {"type": "number"},
    bool: {"type": "boolean"},
}


def model_schema(model: type[BaseModel], *, skip: frozenset[str] = frozenset()) -> Schema:
    """An object schema with one property per field (by wire alias) and `required` for fields without defaults."""
    properties: Schema = {}
    required: list[str] = []
    for name, field in model.model_fields.items():
        if name in skip:
            continue
        wire = field.alias or name
        properties[wire] = field_schema(field)
        if field.is_required():
            required.append(wire)
    schema: Schema = {"type": "object", "properties": properties}
    if model.__doc__ and model.__module__.startswith("kaito."):
        schema["description"] = " ".join(model.__doc__.split())
    if required:
        schema["required"] = required
    return schema


def field_schema(field: FieldInfo) -> Schema:
    schema = annotation_schema(field.annotation)
    if field.description:
        schema["description"] = field.description
    for constraint in field.metadata:
        if isinstance(constraint, annotated_types.Ge):
            schema["minimum"] = constraint.ge
        elif isinstance(constraint, annotated_types.Le):
            schema["maximum"] = constraint.le
        elif isinstance(constraint, annotated_types.MaxLen):
            schema["maxItems" if schema.get("type") == "array" else "maxLength"] = constraint.max_length
        elif isinstance(constraint, annotated_types.MinLen):
            schema["minItems" if schema.get("type") == "array" else "minLength"] = constraint.min_length
        elif isinstance(getattr(constraint, "pattern", None), str):
            schema["pattern"] = constraint.pattern
    return schema


def annotation_schema(annotation: Any) -> Schema:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (Union, types.UnionType):
        present = [arg for arg in args if arg is not type(None)]
        if len(present) != 1:
            raise TypeError(f"unions other than Optional cannot be structural: {annotation}")
        return annotation_schema(present[0])
    if origin is Literal:
        return {"type": "string", "enum": list(args)}
    if origin is list:
        return {"type": "array", "items": annotation_schema(args[0])}
    if origin is dict:
        if args[1] is Any:
            return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        return {"type": "object", "additionalProperties": annotation_schema(args[1])}
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return model_schema(annotation)
    if annotation in _SCALARS:
        return dict(_SCALARS[annotation])
    raise TypeError(f"no CRD schema for {annotation!r}")
