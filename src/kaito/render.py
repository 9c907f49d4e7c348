"""`kaito render`: what kaito would do with a Workspace manifest, with no cluster — a review before paying for GPUs."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

import yaml
from pydantic import ValidationError

from kaito.api.fielderrors import FieldError
from kaito.api.workspace import PlanStatus, Workspace
from kaito.oci.dockerconfig import default_docker_config_path
from kaito.presets.catalog import Catalog, ModelSpec
from kaito.workspaces.hubmodels import HubModels, hub_models_for
from kaito.workspaces.imageconfigs import ImageConfigs
from kaito.workspaces.modelsource import HubModel, ModelImages, model_from_hub, uncatalogued_image
from kaito.workspaces.plan import Invalid, Planned, Sizing, validate_and_plan


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


def _plan_wire(plan: PlanStatus) -> dict[str, Any]:
    """The plan as it appears in `status.plan`, less the model, engine flags and inputs hash shown apart."""
    return plan.model_copy(update={"model": None, "engine_args": None, "inputs_hash": None}).to_wire()


def render(
    paths: list[str],
    *,
    cloud: str,
    catalog: Catalog,
    output: str,
    out: TextIO,
    err: TextIO,
    sizing: Sizing | None = None,
    image_configs: ImageConfigs | None = None,
    hub_models: HubModels | None = None,
) -> int:
    """Print what each Workspace in `paths` would become; 1 when any is invalid. Each manifest is sized once.

    A preset outside the catalog is sized from its model image's config, read with `image_configs` (and the
    docker config in $DOCKER_CONFIG, if any), as admission reads it with the pull secrets; or, named by a Hugging
    Face id, from the hub with `hub_models` (and $HF_TOKEN for a gated model), as admission reads it.
    """
    docs = [doc for path in paths for doc in _read(path) if isinstance(doc, dict)]
    configmaps = local_configmaps(docs)
    failed = False
    rendered: list[dict[str, Any]] = []
    for doc in docs:
        if doc.get("kind") != "Workspace":
            continue
        name = (doc.get("metadata") or {}).get("name", "?")
        doc.setdefault("metadata", {}).setdefault("namespace", "default")
        try:
            planned = validate_and_plan(
                doc,
                catalog=catalog,
                cloud=cloud,
                config_lookup=lambda ns, n: configmaps.get((ns, n)),
                sizing=sizing,
                model_images=_model_images(doc, catalog, image_configs, hub_models),
            )
        except Invalid as exc:
            failed = True
            _print_errors(name, exc.problems, err)
            continue
        rendered.append(_render_one(planned))
    if output == "text":
        for item in rendered:
            _print_text(item, out)
    else:
        text = json.dumps(rendered, indent=2) if output == "json" else yaml.safe_dump_all(rendered, sort_keys=False)
        out.write(text + ("\n" if output == "json" else ""))
    return 1 if failed else 0


def _model_images(
    doc: Mapping[str, Any], catalog: Catalog, configs: ImageConfigs | None, hub: HubModels | None
) -> ModelImages:
    if hub is not None and (models := asyncio.run(hub_models_for(doc, catalog=catalog, hub=hub, read_token=_token))):
        return ModelImages(hub=models)
    try:
        image = uncatalogued_image(Workspace.parse(doc), catalog)
    except ValidationError:
        return ModelImages()  # the rules say what is wrong
    if image is None or configs is None:
        return ModelImages()
    local = default_docker_config_path()
    secrets = [(str(local), local.read_bytes())] if local is not None else []
    return ModelImages(configs={image: configs.fetch(image, secrets)})


async def _token(namespace: str, name: str) -> str | None:
    """A model access Secret's token, here: $HF_TOKEN."""
    return os.environ.get("HF_TOKEN") or None


def list_models(catalog: Catalog, out: TextIO, *, paths: Sequence[str] = (), hub: HubModels | None = None) -> int:
    """The catalog's models (each with what it requires), then the hub models the manifests in `paths` name, read
    from the hub as admission reads them; 1 when one of those cannot be read."""
    for model in sorted(catalog.models.values(), key=lambda m: m.name):
        notes = [f"deprecated: {model.deprecated}"] if model.deprecated else []
        if needs := requirements(model):
            notes.append(f"requires {needs}")
        note = f"  ({'; '.join(notes)})" if notes else ""
        out.write(f"{model.name:36} catalog  {model.hf_repo}{note}\n")
    failed = False
    docs = [doc for path in paths for doc in _read(path) if isinstance(doc, dict) and doc.get("kind") == "Workspace"]
    for doc in docs:
        doc.setdefault("metadata", {}).setdefault("namespace", "default")
        for name, read in _model_images(doc, catalog, None, hub).hub.items():
            if isinstance(read, HubModel):
                model = model_from_hub(name, read)
                out.write(f"{model.name:36} hub      {model.hf_repo}@{model.revision}\n")
            else:
                failed = True
                out.write(f"{name:36} hub      cannot be read: {read}\n")
    return 1 if failed else 0


def requirements(model: ModelSpec) -> str:
    """What a model needs of the GPU, briefly: `cc 9.0+, FP8, deepgemm`; empty when any CUDA GPU runs it."""
    parts = [f"cc {cc}+"] if (cc := model.min_compute_capability) is not None else []
    return ", ".join(parts + model.requires.features())


def _read(path: str) -> list[Any]:
    text = Path(path).read_text() if path != "-" else sys.stdin.read()
    return list(yaml.safe_load_all(text))


def _render_one(planned: Planned) -> dict[str, Any]:
    ws, plan, model = planned.workspace, planned.plan, planned.model
    item: dict[str, Any] = {"workspace": f"{ws.namespace}/{ws.name}", "apiVersion": ws.api_version}
    if ws.tuning is not None:
        item["mode"] = "tuning"
        item["model"] = ws.preset_name
        item["method"] = (ws.tuning.method or "").lower()
        item["objects"] = would_create(ws, plan=plan, model=model)
        return item
    if ws.inference is not None and ws.inference.template is not None:
        item["mode"] = "inference (pod template)"
        return item
    assert model is not None
    item["mode"] = "inference"
    item["model"] = f"{model.name} ({model.hf_repo}@{model.revision})"
    item["plan"] = _plan_wire(plan)
    item["vllmArgs"] = list(plan.engine_args or [])
    item["objects"] = would_create(ws, plan=plan, model=model)
    return item


def would_create(ws: Workspace, *, plan: PlanStatus, model: ModelSpec | None) -> list[dict[str, Any]]:
    """The objects the workspace controller would create for `plan`, built by the controller's own builders."""
    from kaito.controllers.build_job import build_job, build_tuning_configmap
    from kaito.controllers.build_nodeclaims import build_nodeclaims
    from kaito.controllers.build_workload import build_engine_configmap, build_services, build_workload
    from kaito.controllers.context import Settings, Target

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
