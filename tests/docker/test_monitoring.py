"""The monitoring overlay and the Grafana dashboard agree with the code: what pods expose, what registries hold."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from kaito.api.workspace import LABEL_WORKSPACE
from kaito.cli import main
from kaito.inference.metrics import InferenceMetrics
from kaito.tuning.metrics import TuningMetrics
from tests.docker import dashboard

ROOT = Path(__file__).resolve().parents[2]
OVERLAY = ROOT / "deploy/overlays/monitoring"
EXAMPLES = [
    ROOT / "examples/inference/kaito_workspace_phi_3.yaml",
    ROOT / "examples/tuning/kaito_workspace_tuning_phi_3.yaml",
]
MANAGER_SERVICE = ("kaito-system", "kaito-metrics", "metrics")  # namespace, Service, port name (deploy/base)
# Metric families deliberately left off the dashboard.
NOT_SHOWN = {"kaito_tuning_start_time_seconds"}


def system_tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        hint = "scripts/system-deps installs it (Debian package prometheus)" if name == "promtool" else ""
        pytest.fail(f"{name} must be on PATH; {hint}".rstrip("; "))
    return found


@pytest.fixture(scope="module")
def rendered() -> dict[str, dict[str, Any]]:
    """`kubectl kustomize` of the overlay, by kind."""
    result = subprocess.run(
        [system_tool("kubectl"), "kustomize", str(OVERLAY)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    docs = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    by_kind = {doc["kind"]: doc for doc in docs}
    assert len(by_kind) == len(docs), "one object of each kind expected"
    return by_kind


def pod_templates(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    """The pod templates `kaito render` produces for the README's inference and tuning examples."""
    templates = []
    for example in EXAMPLES:
        assert main(["render", "-f", str(example), "-o", "json"]) == 0
        for item in json.loads(capsys.readouterr().out):
            templates += [obj["spec"]["template"] for obj in item["objects"] if "template" in obj.get("spec", {})]
    return templates


def relabeled_source(key: str) -> str:
    """The meta label Prometheus's Kubernetes discovery gives a pod label."""
    return "__meta_kubernetes_pod_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", key)


def test_overlay_renders_the_two_monitors(rendered: dict[str, dict[str, Any]]) -> None:
    assert set(rendered) == {"ServiceMonitor", "PodMonitor"}
    for doc in rendered.values():
        assert doc["apiVersion"] == "monitoring.coreos.com/v1"
        assert doc["metadata"]["namespace"] == "kaito-system"
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "kaito"


def test_servicemonitor_scrapes_the_manager_metrics_service_only(rendered: dict[str, dict[str, Any]]) -> None:
    namespace, service, port = MANAGER_SERVICE
    spec = rendered["ServiceMonitor"]["spec"]
    assert spec["namespaceSelector"] == {"matchNames": [namespace]}
    [endpoint] = spec["endpoints"]
    assert (endpoint["port"], endpoint["path"], endpoint["scheme"]) == (port, "/metrics", "http")
    keeps = [r for r in endpoint["relabelings"] if r.get("action") == "keep"]
    assert [r["sourceLabels"] for r in keeps] == [["__meta_kubernetes_service_name"]]
    # Prometheus anchors relabel regexes at both ends.
    assert re.fullmatch(keeps[0]["regex"], service)
    assert not re.fullmatch(keeps[0]["regex"], "kaito-webhook")


def test_podmonitor_scrapes_the_pods_kaito_creates(
    rendered: dict[str, dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    spec = rendered["PodMonitor"]["spec"]
    assert spec["namespaceSelector"] == {"any": True}
    assert spec["selector"] == {"matchExpressions": [{"key": LABEL_WORKSPACE, "operator": "Exists"}]}
    endpoints = {e["port"]: e for e in spec["podMetricsEndpoints"]}
    templates = pod_templates(capsys)
    assert len(templates) == 2, "one inference Deployment and one tuning Job"
    scraped = set()
    for template in templates:
        assert LABEL_WORKSPACE in template["metadata"]["labels"]
        ports = {p["name"] for c in template["spec"]["containers"] for p in c.get("ports") or []}
        assert len(ports & set(endpoints)) == 1, f"pod ports {ports}: exactly one scrape endpoint should match"
        scraped |= ports & set(endpoints)
    assert scraped == set(endpoints) == {"http", "metrics"}  # every endpoint scrapes some kind of pod
    for endpoint in endpoints.values():
        assert endpoint["path"] == "/metrics"
        assert {"sourceLabels": [relabeled_source(LABEL_WORKSPACE)], "targetLabel": "workspace"} in endpoint[
            "relabelings"
        ]


def test_dashboard_queries_only_metrics_kaito_registers() -> None:
    dash = dashboard.load()
    registered = dashboard.registered_metric_names()
    used: set[str] = set()
    for query in dashboard.queries(dash):
        names = dashboard.metric_names(query.expr)
        assert names, f"{query.panel}: no metric in {query.expr!r}"
        assert names <= registered, f"{query.panel}: {sorted(names - registered)} not registered by kaito"
        used |= names
    for name, variable_query in dashboard.variable_queries(dash).items():
        selector = dashboard.label_values_metric(variable_query)
        if selector is not None:
            assert dashboard.metric_names(selector) <= registered, f"variable {name}: {variable_query}"
    # Every inference and tuning metric is on the dashboard, unless left off on purpose.
    for registry in (InferenceMetrics().registry, TuningMetrics().registry):
        for family in dashboard.families(registry) - NOT_SHOWN:
            assert any(name.startswith(family) for name in used), f"{family} is on no panel"
    for prefix in ("kaito_workspace_", "controller_runtime_reconcile_", "kaito_inference_", "kaito_tuning_"):
        assert any(name.startswith(prefix) for name in used), f"no {prefix}* panel"


def test_metric_name_extraction_is_not_fooled_by_promql_syntax() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (controller, le) (rate(a_bucket{job=~"$job", x="y{z}"}[$__rate_interval])))'
        " / on (controller) group_left (w) b_total offset 5m > bool 0 unless c"
    )
    assert dashboard.metric_names(expr) == {"a_bucket", "b_total", "c"}
    assert dashboard.label_values_metric("label_values(kaito_workspace_count, job)") == "kaito_workspace_count"
    assert dashboard.label_values_metric("label_values(workspace)") is None


def test_dashboard_layout_and_variables() -> None:
    dash = dashboard.load()
    ids = [panel["id"] for panel in dash["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"
    rows = {row for row, _ in dashboard.panels(dash)}
    assert rows == {"Workspaces (kaito manager)", "Inference (kaito serve)", "Fine-tuning (kaito tune)"}
    titles = {panel["title"] for _, panel in dashboard.panels(dash)}
    assert titles >= dashboard.FAILURE_PANELS
    for _, panel in dashboard.panels(dash):
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        box = panel["gridPos"]
        assert box["x"] + box["w"] <= 24, panel["title"]
        for target in panel["targets"]:
            used = set(re.findall(r"\$\w+", target["expr"])) - {"$__rate_interval"}
            assert used <= {"$" + name for name in variables}, f"{panel['title']}: unknown variable in {used}"


def test_dashboard_promql_parses(tmp_path: Path) -> None:
    """promtool parses every expression (as recording rules), and does refuse a broken one."""
    promtool = system_tool("promtool")
    exprs = [q.resolved() for q in dashboard.queries(dashboard.load())]
    recorded = [{"record": f"r{i}", "expr": e} for i, e in enumerate(exprs)]
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": recorded}]}))
    result = subprocess.run([promtool, "check", "rules", str(good)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in result.stdout
    broken = [*recorded, {"record": "broken", "expr": "sum by (le (rate(x[1m]))"}]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": broken}]}))
    result = subprocess.run([promtool, "check", "rules", str(bad)], capture_output=True, text=True, check=False)
    assert result.returncode != 0


def test_monitoring_readme_lists_the_dashboards_metrics() -> None:
    used = set().union(*(dashboard.metric_names(q.expr) for q in dashboard.queries(dashboard.load())))
    readme = (ROOT / "deploy/monitoring/README.md").read_text()
    listed = set(re.findall(r"`((?:kaito|controller_runtime|workqueue)_\w+)`", readme))
    assert listed == used, (
        f"missing from the README: {sorted(used - listed)}; not on the dashboard: {sorted(listed - used)}"
    )
