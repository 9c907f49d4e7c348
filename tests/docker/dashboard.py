"""The Grafana dashboard's PromQL and the metric names kaito registers, shared by the static and the live checks."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

import kaito.controllers.metrics  # registers kaito_workspace_* in the runtime registry
import kaito.provisioner.metrics  # noqa: F401  (registers kaito_cloudprovider_* in the runtime registry)
from kaito.inference.metrics import InferenceMetrics
from kaito.runtime.metrics import REGISTRY
from kaito.tuning.metrics import TuningMetrics

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy/monitoring/grafana-dashboard.json"

# What Grafana puts in place of the dashboard's variables; `.*` is the variables' "All" value.
SUBSTITUTIONS = {"$__rate_interval": "1m", "$job": ".*", "$workspace": ".*"}
# Panels that only show failures; a healthy run leaves them empty.
FAILURE_PANELS = {"Cloud provider errors per second", "Server error ratio (5xx)"}
# PromQL keywords that read like metric names once label lists and matchers are stripped.
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "and", "or", "unless"}
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
    "stateset": ("",),
    "gauge": ("",),
    "unknown": ("",),
}


@dataclass(frozen=True)
class Query:
    row: str  # the title of the row the panel is in
    panel: str
    expr: str

    def resolved(self) -> str:
        """The expression as Grafana sends it with every variable at its default."""
        expr = self.expr
        for variable, value in SUBSTITUTIONS.items():
            expr = expr.replace(variable, value)
        return expr


def load() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def panels(dashboard: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(row title, panel) for every non-row panel, including those inside collapsed rows."""
    row = ""
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            row = panel["title"]
            for inner in panel.get("panels") or []:
                yield row, inner
        else:
            yield row, panel


def queries(dashboard: dict[str, Any]) -> list[Query]:
    return [
        Query(row, panel["title"], target["expr"])
        for row, panel in panels(dashboard)
        for target in panel.get("targets") or []
    ]


def variable_queries(dashboard: dict[str, Any]) -> dict[str, str]:
    """Query variables by name: their `label_values(...)` queries."""
    found = {}
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            found[variable["name"]] = query["query"] if isinstance(query, dict) else query
    return found


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: identifiers left once strings, matchers, ranges, label lists,
    function calls and keywords are taken out."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.$])[A-Za-z_:][A-Za-z0-9_:]*", text):
        if text[match.end() :].lstrip().startswith("(") or match.group() in _KEYWORDS:
            continue
        names.add(match.group())
    return names


def label_values_metric(query: str) -> str | None:
    """The series selector of `label_values(selector, label)`; None for `label_values(label)`."""
    match = re.fullmatch(r"\s*label_values\(\s*(.+?)\s*,\s*\w+\s*\)\s*", query)
    return match.group(1) if match else None


def exposed_names(registry: CollectorRegistry) -> set[str]:
    """Every sample name a registry's metric families can expose, whether or not a labelled child exists yet."""
    names: set[str] = set()
    for family in registry.collect():
        names.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names


def families(registry: CollectorRegistry) -> set[str]:
    return {family.name for family in registry.collect()}


def registered_metric_names() -> set[str]:
    """Sample names of the manager's registry (runtime, workspace and cloud provider metrics), the inference
    server's and the tuning run's, read from the registries themselves."""
    inference, tuning = InferenceMetrics().registry, TuningMetrics().registry
    return exposed_names(REGISTRY) | exposed_names(inference) | exposed_names(tuning)
