"""The Workspace admission validator: fetches what the rules need from the cluster, then the rules and the plan."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from kaito.presets.catalog import Catalog
from kaito.runtime.client import Client
from kaito.runtime.errors import ignore_not_found
from kaito.runtime.kinds import CONFIG_MAP
from kaito.webhook.server import AdmissionRequest, Validator, Verdict
from kaito.workspaces.hubmodels import HubModels
from kaito.workspaces.imageconfigs import ImageConfigs, model_images_for
from kaito.workspaces.plan import Invalid, Sizing, validate_and_plan
from kaito.workspaces.pullsecrets import api_secret_reader, api_token_reader

PATH = "/validate-workspace"
WEBHOOK_NAME = "validation.workspace.kaito.sh"
RULES = [
    {
        "apiGroups": ["kaito.sh"],
        "apiVersions": ["v1alpha1", "v1beta1"],
        "operations": ["CREATE", "UPDATE"],
        "resources": ["workspaces"],
        "scope": "Namespaced",
    }
]


def workspace_validator(
    *,
    catalog: Callable[[], Catalog],
    cloud: str,
    client: Client | None,
    sizing: Sizing | None = None,
    image_configs: ImageConfigs | None = None,
    model_registry: str | None = None,
    hub_models: HubModels | None = None,
) -> Validator:
    """A validator for `WebhookServer`; `catalog` is called per request so ConfigMap overrides apply at once.

    A preset the catalog lacks, named with a model image, is sized from that image's config, read here (with
    the pull secrets from the API) into `image_configs`, which the controller shares; one named by a Hugging Face
    id is read from the hub (with its modelAccessSecret's token) into `hub_models`, shared the same way.
    """

    async def validate(request: AdmissionRequest) -> Verdict:
        obj: dict[str, Any] = dict(request.object or {})
        obj["metadata"] = {**(obj.get("metadata") or {}), "namespace": request.namespace}
        configs = await _fetch_config(client, request.namespace, obj)
        known = catalog()
        images = await model_images_for(
            obj,
            catalog=known,
            configs=image_configs if client is not None else None,
            registry=model_registry,
            read_secret=api_secret_reader(client) if client is not None else _no_secret,
            hub=hub_models if client is not None else None,
            read_token=api_token_reader(client) if client is not None else None,
        )
        try:
            validate_and_plan(
                obj,
                catalog=known,
                cloud=cloud,
                model_images=images,
                old=request.old_object if request.operation == "UPDATE" else None,
                config_lookup=(lambda ns, name: configs.get((ns, name))) if client is not None else None,
                sizing=sizing,
            )
        except Invalid as exc:
            return Verdict(errors=tuple(exc.problems))
        return Verdict()

    return validate


async def _no_secret(namespace: str, name: str) -> bytes | None:
    return None


async def _fetch_config(
    client: Client | None, namespace: str, obj: Mapping[str, Any]
) -> dict[tuple[str, str], Mapping[str, str]]:
    name = (obj.get("inference") or {}).get("config") or (obj.get("tuning") or {}).get("config")
    if client is None or not isinstance(name, str) or not name:
        return {}
    configmap = await ignore_not_found(client.get(CONFIG_MAP, name, namespace=namespace))
    return {} if configmap is None else {(namespace, name): dict(configmap.get("data") or {})}
