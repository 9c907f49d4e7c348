"""The base of every API model: camelCase on the wire, snake_case in Python, unknown fields kept on round trip."""

from __future__ import annotations

from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class WireModel(BaseModel):
    """A Kubernetes-shaped object part. Fields we do not model survive `parse` -> `to_wire` unchanged."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")

    @classmethod
    def parse(cls, data: Any) -> Self:
        return cls.model_validate(data)

    def to_wire(self) -> dict[str, Any]:
        """The JSON form the API server stores: aliases, no nulls."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class TopLevelObject(WireModel):
    """A whole API object: what its `metadata` says of its name, namespace and annotations."""

    metadata: dict[str, Any] = Field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.metadata.get("name") or "")

    @property
    def namespace(self) -> str:
        return str(self.metadata.get("namespace") or "")

    @property
    def annotations(self) -> dict[str, str]:
        return dict(self.metadata.get("annotations") or {})
