"""Registers the webhook with the API server, so a manager that made itself a certificate is trusted and called."""

from __future__ import annotations

import base64
from typing import Any

from kaito.runtime.client import Client
from kaito.runtime.kinds import Kind

VALIDATING_WEBHOOK_CONFIGURATION = Kind(
    "admissionregistration.k8s.io",
    "v1",
    "ValidatingWebhookConfiguration",
    "validatingwebhookconfigurations",
    namespaced=False,
)
MUTATING_WEBHOOK_CONFIGURATION = Kind(
    "admissionregistration.k8s.io",
    "v1",
    "MutatingWebhookConfiguration",
    "mutatingwebhookconfigurations",
    namespaced=False,
)

ServiceRef = tuple[str, str, int, str]
"""(namespace, name, port, path) of the Service in front of the webhook server."""


def client_config(*, ca_pem: bytes, url: str | None, service: ServiceRef | None) -> dict[str, Any]:
    """A webhook clientConfig reaching exactly one of `url` or `service`, trusting `ca_pem`."""
    if (url is None) == (service is None):
        raise ValueError("give exactly one of url or service")
    config: dict[str, Any] = {"caBundle": base64.b64encode(ca_pem).decode("ascii")}
    if url is not None:
        config["url"] = url
    elif service is not None:
        namespace, name, port, path = service
        config["service"] = {"namespace": namespace, "name": name, "port": port, "path": path}
    return config


async def ensure_validating_webhook(
    client: Client,
    *,
    name: str,
    webhook_name: str,
    ca_pem: bytes,
    url: str | None = None,
    service: ServiceRef | None = None,
    rules: list[dict[str, Any]],
    failure_policy: str = "Fail",
    side_effects: str = "None",
    timeout_seconds: int = 10,
    namespace_selector: dict[str, Any] | None = None,
    object_selector: dict[str, Any] | None = None,
    field_manager: str = "kaito-webhook",
) -> dict[str, Any]:
    """Server-side apply the ValidatingWebhookConfiguration `name` holding one webhook; returns the stored object.

    Applying again (a restart with a new certificate) updates the caBundle in place. The apply is
    forced: this manager is the authority on how its own webhook is reached, so a stale caBundle left
    by another field manager must not block startup.
    """
    webhook = _webhook(
        webhook_name,
        client_config(ca_pem=ca_pem, url=url, service=service),
        rules=rules,
        failure_policy=failure_policy,
        side_effects=side_effects,
        timeout_seconds=timeout_seconds,
        namespace_selector=namespace_selector,
        object_selector=object_selector,
    )
    body = {"metadata": {"name": name}, "webhooks": [webhook]}
    return await client.apply(VALIDATING_WEBHOOK_CONFIGURATION, body, field_manager=field_manager, force=True)


async def ensure_mutating_webhook(
    client: Client,
    *,
    name: str,
    webhook_name: str,
    ca_pem: bytes,
    url: str | None = None,
    service: ServiceRef | None = None,
    rules: list[dict[str, Any]],
    failure_policy: str = "Fail",
    side_effects: str = "None",
    timeout_seconds: int = 10,
    field_manager: str = "kaito-webhook",
) -> dict[str, Any]:
    """Server-side apply the MutatingWebhookConfiguration `name` holding one webhook, as ensure_validating_webhook.

    The webhook is called once per request (`reinvocationPolicy: Never`): what it adds no later webhook removes.
    """
    webhook = _webhook(
        webhook_name,
        client_config(ca_pem=ca_pem, url=url, service=service),
        rules=rules,
        failure_policy=failure_policy,
        side_effects=side_effects,
        timeout_seconds=timeout_seconds,
    )
    webhook["reinvocationPolicy"] = "Never"
    body = {"metadata": {"name": name}, "webhooks": [webhook]}
    return await client.apply(MUTATING_WEBHOOK_CONFIGURATION, body, field_manager=field_manager, force=True)


def _webhook(
    name: str,
    config: dict[str, Any],
    *,
    rules: list[dict[str, Any]],
    failure_policy: str,
    side_effects: str,
    timeout_seconds: int,
    namespace_selector: dict[str, Any] | None = None,
    object_selector: dict[str, Any] | None = None,
) -> dict[str, Any]:
    webhook: dict[str, Any] = {
        "name": name,
        "admissionReviewVersions": ["v1"],
        "clientConfig": config,
        "rules": rules,
        "failurePolicy": failure_policy,
        "sideEffects": side_effects,
        "timeoutSeconds": timeout_seconds,
    }
    if namespace_selector is not None:
        webhook["namespaceSelector"] = namespace_selector
    if object_selector is not None:
        webhook["objectSelector"] = object_selector
    return webhook
