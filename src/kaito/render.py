"""`kaito render`: what kaito would do with a Workspace manifest, with no cluster — a review before paying for GPUs."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

import yaml

from kaito.api.engine import with_engine_args
from kaito.api.fielderrors import FieldError
from kaito.api.workspace import Workspace
from kaito.controllers import planning
from kaito.presets.catalog import Catalog
from kaito.presets.choice import Choice, plan_for
from kaito.presets.overrides import CONFIG_KEY, Overrides
from kaito.presets.sizing import PlanError, Request
from kaito.webhook.validation import validate_workspace


def load_catalog(path: str | None) -> Catalog:
    """The built-in catalog, plus overrides from a ConfigMap manifest or a directory of catalog YAML files."""
    catalog = Catalog.builtin()
    if path is None:
        return catalog
    source = Path(path)
    if source.is_dir():
        data = {p.name: p.read_text() for p in source.glob("*.yaml")}
    else:
        doc = yaml.safe_load(source.read_text()) or {}
        data = dict(doc.get("data") or {})
    return catalog.with_overrides(data)


def local_configmaps(docs: list[dict[str, Any]]) -> dict[tuple[str, str], Mapping[str, str]]:
    """ConfigMaps given in the same files, so an inference config can be checked without a cluster."""
    found: dict[tuple[str, str], Mapping[str, str]] = {}
    for doc in docs:
        if doc.get("kind") == "ConfigMap":
            meta = doc.get("metadata") or {}
            found[(meta.get("namespace") or "default", meta.get("name") or "")] = dict(doc.get("data") or {})
    return found


def plan_workspace(ws: Workspace, catalog: Catalog, cloud: str, overrides: Overrides) -> Choice | None:
    if ws.inference is None or ws.inference.preset is None:
        return None
    model = catalog.model(ws.inference.preset.name)
    request = Request(adapters=len(ws.inference.adapters or []), overrides=overrides)
    return plan_for(model, catalog, ws.resource.instance_type, cloud=cloud, request=request)


def plan_status(choice: Choice) -> dict[str, Any]:
    """The plan as it appears in `status.plan`."""
    return planning.plan_status(choice).to_wire()


def render(paths: list[str], *, cloud: str, catalog: Catalog, output: str, out: TextIO, err: TextIO) -> int:
    docs = [doc for path in paths for doc in _read(path) if isinstance(doc, dict)]
    configmaps = local_configmaps(docs)
    failed = False
    rendered: list[dict[str, Any]] = []
    for doc in docs:
        if doc.get("kind") != "Workspace":
            continue
        name = (doc.get("metadata") or {}).get("name", "?")
        doc.setdefault("metadata", {}).setdefault("namespace", "default")
        errors = validate_workspace(
            doc, catalog=catalog, cloud=cloud, config_lookup=lambda ns, n: configmaps.get((ns, n))
        )
        if errors:
            failed = True
            _print_errors(name, errors, err)
            continue
        rendered.append(_render_one(Workspace.parse(doc), catalog, cloud, configmaps))
    if output == "text":
        for item in rendered:
            _print_text(item, out)
    else:
        text = json.dumps(rendered, indent=2) if output == "json" else yaml.safe_dump_all(rendered, sort_keys=False)
        out.write(text + ("\n" if output == "json" else ""))
    return 1 if failed else 0


def _read(path: str) -> list[Any]:
    text = Path(path).read_text() if path != "-" else sys.stdin.read()
    return list(yaml.safe_load_all(text))


def _render_one(
    ws: Workspace, catalog: Catalog, cloud: str, configmaps: dict[tuple[str, str], Mapping[str, str]]
) -> dict[str, Any]:
    item: dict[str, Any] = {"workspace": f"{ws.namespace}/{ws.name}", "apiVersion": ws.api_version}
    overrides = Overrides()
    if ws.inference and ws.inference.config:
        data = configmaps.get((ws.namespace, ws.inference.config)) or {}
        if CONFIG_KEY in data:
            overrides = Overrides.from_config_text(data[CONFIG_KEY])
    if ws.tuning is not None:
        item["mode"] = "tuning"
        item["model"] = ws.preset_name
        item["method"] = (ws.tuning.method or "").lower()
        item["objects"] = would_create(ws, catalog, cloud, configmaps)
        return item
    if ws.inference is not None and ws.inference.template is not None:
        item["mode"] = "inference (pod template)"
        return item
    item["mode"] = "inference"
    try:
        choice = plan_workspace(ws, catalog, cloud, overrides)
    except PlanError as exc:  # validated already; kept for a clear message if the catalog changed underneath
        item["error"] = str(exc)
        return item
    assert choice is not None
    model = catalog.model(ws.preset_name or "")
    item["model"] = f"{model.name} ({model.hf_repo}@{model.revision})"
    item["plan"] = plan_status(choice)
    sized = choice.plan
    recorded = with_engine_args(
        planning.plan_status(choice),
        max_num_batched_tokens=sized.max_num_batched_tokens,
        kv_cache_dtype=sized.kv_cache_dtype,
    )
    item["vllmArgs"] = recorded.engine_args
    item["objects"] = would_create(ws, catalog, cloud, configmaps)
    return item


def would_create(
    ws: Workspace, catalog: Catalog, cloud: str, configmaps: dict[tuple[str, str], Mapping[str, str]]
) -> list[dict[str, Any]]:
    """The objects the workspace controller would create, built by the controller's own builders."""
    from kaito.controllers.build_job import build_job, build_tuning_configmap
    from kaito.controllers.build_nodeclaims import build_nodeclaims
    from kaito.controllers.build_workload import build_engine_configmap, build_services, build_workload
    from kaito.controllers.context import Settings, Target
    from kaito.controllers.planning import plan_for_workspace

    plan, model = plan_for_workspace(ws, catalog, cloud, lambda ns, name: configmaps.get((ns, name)))
    target = Target(ws=ws, uid="<uid of the workspace>", plan=plan, model=model, settings=Settings())
    if ws.tuning is not None:
        return [*build_nodeclaims(target), build_tuning_configmap(target), build_job(target, revision="1")]
    objects = [*build_nodeclaims(target), build_engine_configmap(target), *build_services(target)]
    return [*objects, build_workload(target, revision="1")]


def _print_errors(name: str, errors: list[FieldError], err: TextIO) -> None:
    err.write(f"workspace {name} is invalid:\n")
    for error in errors:
        err.write(f"  - {error}\n")


def _steps(obj: Mapping[str, Any]) -> str:
    """A Job's containers in the order they run, e.g. `: data-downloader (kaito fetch-data) -> tuner (kaito tune)`."""
    if obj.get("kind") != "Job":
        return ""
    pod = obj["spec"]["template"]["spec"]
    containers = [*(pod.get("initContainers") or []), *pod["containers"]]
    return ": " + " -> ".join(f"{c['name']} ({' '.join(c['command'][:2])})" for c in containers)


def _print_text(item: Mapping[str, Any], out: TextIO) -> None:
    out.write(f"workspace {item['workspace']} ({item['apiVersion']}): {item['mode']}\n")
    if "model" in item:
        out.write(f"  model: {item['model']}\n")
    if "method" in item:
        out.write(f"  method: {item['method']}\n")
    if "error" in item:
        out.write(f"  error: {item['error']}\n")
    plan = item.get("plan")
    if plan:
        keys: tuple[str, ...] = ("instanceType", "nodes", "gpusPerNode", "tensorParallelSize", "pipelineParallelSize")
        keys += ("dataParallelSize", "dtype", "gpuMemoryUtilization", "maxModelLen", "maxNumSeqs", "kvCacheTokens")
        for key in keys:
            out.write(f"  {key}: {plan.get(key)}\n")
        out.write("  why:\n")
        for line in plan.get("explanation", []):
            out.write(f"    - {line}\n")
        out.write(f"  vllm: {' '.join(item['vllmArgs'])}\n")
    if item.get("objects"):
        out.write("  would create:\n")
        for obj in item["objects"]:
            out.write(f"    - {obj['kind']} {obj['metadata']['name']}{_steps(obj)}\n")
    out.write("\n")
