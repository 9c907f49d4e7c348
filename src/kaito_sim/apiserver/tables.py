"""Server-side `Table` replies (meta.k8s.io/v1) for `kubectl get`: CRD printer columns and built-in printers."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kaito_sim.apiserver import jsonpath
from kaito_sim.apiserver import tables_builtin as rows
from kaito_sim.apiserver.errors import JsonObj, bad_request
from kaito_sim.apiserver.tables_builtin import Row, human_age, parse_time

__all__ = ["PRINTERS", "Column", "builtin_table", "crd_table", "human_age", "parse_time"]

INCLUDE_OBJECT = ("None", "Metadata", "Object")


@dataclass(frozen=True)
class Column:
    """One `columnDefinitions` entry; columns with `priority > 0` appear only with `-o wide`."""

    name: str
    type: str = "string"
    description: str = ""
    priority: int = 0
    format: str = ""

    def definition(self) -> JsonObj:
        return {
            "name": self.name,
            "type": self.type,
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        }


def _col(name: str, description: str, type_: str = "string") -> Column:
    return Column(name, type_, description)


def _wide(name: str, description: str, type_: str = "string") -> Column:
    return Column(name, type_, description, priority=1)


NAME = Column("Name", "string", "Name must be unique within a namespace; it identifies the object.", 0, "name")
AGE = _col("Age", "When the object was created, as a duration before now.")
CONTAINERS = _wide("Containers", "Names of each container in the pod template.")
IMAGES = _wide("Images", "Images used by each container in the pod template.")
SELECTOR = _wide("Selector", "The label selector that picks the managed pods.")
REPLICAS_READY = _col("Ready", "Ready replicas out of desired replicas.")

PRINTERS: dict[str, tuple[tuple[Column, ...], Row]] = {
    "Pod": (
        (
            NAME,
            _col("Ready", "Ready containers out of all containers."),
            _col("Status", "The pod's phase, or why it is not running."),
            _col("Restarts", "Container restarts, with how long ago the latest one was."),
            AGE,
            _wide("IP", "The pod's IP address."),
            _wide("Node", "The node the pod is bound to."),
            _wide("Nominated Node", "The node the scheduler nominated for preemption."),
            _wide("Readiness Gates", "Readiness gates that are true out of all gates."),
        ),
        rows.pod_row,
    ),
    "Deployment": (
        (
            NAME,
            REPLICAS_READY,
            _col("Up-to-date", "Replicas running the latest template.", "integer"),
            _col("Available", "Replicas available to serve.", "integer"),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ),
        rows.deployment_row,
    ),
    "StatefulSet": ((NAME, REPLICAS_READY, AGE, CONTAINERS, IMAGES), rows.statefulset_row),
    "Service": (
        (
            NAME,
            _col("Type", "ClusterIP, NodePort, LoadBalancer or ExternalName."),
            _col("Cluster-IP", "The service's cluster IP."),
            _col("External-IP", "External addresses of the service."),
            _col("Port(s)", "Ports the service exposes."),
            AGE,
            _wide("Selector", "Pods with these labels receive the traffic."),
        ),
        rows.service_row,
    ),
    "Node": (
        (
            NAME,
            _col("Status", "Whether the node is ready and schedulable."),
            _col("Roles", "Roles from node-role.kubernetes.io labels."),
            AGE,
            _col("Version", "The kubelet version."),
            _wide("Internal-IP", "The node's internal address."),
            _wide("External-IP", "The node's external address."),
            _wide("OS-Image", "The operating system image."),
            _wide("Kernel-Version", "The kernel version."),
            _wide("Container-Runtime", "The container runtime and its version."),
        ),
        rows.node_row,
    ),
    "Namespace": ((NAME, _col("Status", "The namespace's phase."), AGE), rows.namespace_row),
    "ConfigMap": ((NAME, _col("Data", "Number of data and binaryData keys.", "integer"), AGE), rows.configmap_row),
    "Secret": (
        (NAME, _col("Type", "The secret's type."), _col("Data", "Number of data keys.", "integer"), AGE),
        rows.secret_row,
    ),
    "ServiceAccount": (
        (NAME, _col("Secrets", "Number of secrets referenced.", "integer"), AGE),
        rows.serviceaccount_row,
    ),
    "Job": (
        (
            NAME,
            _col("Status", "Complete, Failed, Terminating, Suspended, FailureTarget or Running."),
            _col("Completions", "Succeeded pods out of required completions."),
            _col("Duration", "How long the job ran, or has been running."),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ),
        rows.job_row,
    ),
    "Event": (
        (
            _col("Last Seen", "When the event was last observed."),
            _col("Type", "Normal or Warning."),
            _col("Reason", "A short, machine-readable cause."),
            _col("Object", "The object the event is about, as kind/name."),
            _wide("Subobject", "The field path within the object."),
            _wide("Source", "The component that reported the event."),
            _col("Message", "A human-readable description."),
            _wide("First Seen", "When the event was first observed."),
            _wide("Count", "How many times the event occurred.", "integer"),
            _wide("Name", "The event's own name."),
        ),
        rows.event_row,
    ),
    "Lease": ((NAME, _col("Holder", "The identity holding the lease."), AGE), rows.lease_row),
    "CustomResourceDefinition": (
        (NAME, _col("Created At", "When the definition was created.", "date")),
        rows.crd_row,
    ),
}
DEFAULT_PRINTER: tuple[tuple[Column, ...], Row] = ((NAME, AGE), rows.name_age_row)


def _row_object(obj: JsonObj, include_object: str) -> JsonObj | None:
    if include_object == "Object":
        return obj
    if include_object == "None":
        return None
    metadata = dict(obj.get("metadata") or {})
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": metadata}


def _table(
    columns: Sequence[Column],
    cells: Sequence[tuple[list[Any], JsonObj]],
    *,
    list_rv: str,
    continue_token: str | None,
    include_object: str,
) -> JsonObj:
    include_object = include_object or "Metadata"
    if include_object not in INCLUDE_OBJECT:
        supported = ", ".join(f'"{v}"' for v in sorted(INCLUDE_OBJECT))
        raise bad_request(f'includeObject: Unsupported value: "{include_object}": supported values: {supported}')
    metadata: JsonObj = {"resourceVersion": list_rv}
    if continue_token:
        metadata["continue"] = continue_token
    table_rows: list[JsonObj] = []
    for row_cells, obj in cells:
        row: JsonObj = {"cells": row_cells}
        if (shown := _row_object(obj, include_object)) is not None:
            row["object"] = shown
        table_rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": [c.definition() for c in columns],
        "rows": table_rows,
    }


def _crd_columns(printer_columns: list[JsonObj]) -> list[tuple[Column, str]]:
    """(column, jsonPath) for each column after Name; an empty list means a lone Age column."""
    if not printer_columns:
        printer_columns = [{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}]
    out = []
    for spec in printer_columns:
        path = str(spec.get("jsonPath", ""))
        description = spec.get("description") or f"Custom resource definition column (in JSONPath format): {path}"
        column = Column(
            str(spec.get("name", "")),
            str(spec.get("type", "string")),
            description,
            int(spec.get("priority") or 0),
            str(spec.get("format") or ""),
        )
        out.append((column, path))
    return out


def _crd_cell(column: Column, path: jsonpath.JsonPath | None, obj: JsonObj, now: datetime) -> Any:
    found = path.find(obj) if path is not None else []
    if not found or found[0] is None:
        return None
    value = found[0]
    if column.type == "date":
        return human_age(value, now) if isinstance(value, str) else "<invalid>"
    if column.type != "string":
        return value
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


def _compile(path: str) -> jsonpath.JsonPath | None:
    try:
        return jsonpath.parse(path)
    except ValueError:
        return None


def crd_table(
    columns: list[JsonObj],
    objects: list[JsonObj],
    *,
    list_rv: str,
    continue_token: str | None,
    include_object: str,
    now: datetime,
) -> JsonObj:
    """A Table for custom resources from their version's `additionalPrinterColumns`."""
    specs = _crd_columns(columns)
    compiled = [(column, _compile(path)) for column, path in specs]

    def cells(obj: JsonObj) -> list[Any]:
        name = (obj.get("metadata") or {}).get("name", "")
        return [name, *(_crd_cell(column, path, obj, now) for column, path in compiled)]

    return _table(
        [NAME, *(column for column, _ in specs)],
        [(cells(obj), obj) for obj in objects],
        list_rv=list_rv,
        continue_token=continue_token,
        include_object=include_object,
    )


def builtin_table(
    kind: str,
    objects: list[JsonObj],
    *,
    list_rv: str,
    continue_token: str | None,
    include_object: str,
    now: datetime,
) -> JsonObj:
    """A Table for a built-in `kind` with the columns kubectl shows for it (Name and Age for unknown kinds)."""
    columns, row = PRINTERS.get(kind, DEFAULT_PRINTER)
    return _table(
        columns,
        [(row(obj, now), obj) for obj in objects],
        list_rv=list_rv,
        continue_token=continue_token,
        include_object=include_object,
    )
