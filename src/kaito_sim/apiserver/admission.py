"""Admission webhooks, called the way kube-apiserver calls them, so operators' webhooks shape and gate sim writes.

For each MutatingWebhookConfiguration or ValidatingWebhookConfiguration (admissionregistration.k8s.io/v1)
and each webhook in it, the request is matched against `rules`, `namespaceSelector` and `objectSelector`; a
matching webhook gets an AdmissionReview v1 POSTed to its `clientConfig.url` over verified TLS. A
`clientConfig.service` is resolved as the Service proxy resolves it (`kaito_sim.nodes.proxy`): a ready
endpoint that is a process pod, called at its local port with the certificate verified for
`NAME.NAMESPACE.svc`. Denials and call failures become the Status errors a real server answers with, and
`response.warnings` are returned for `Warning` headers.
A mutating webhook's `JSONPatch` (RFC 6902, base64 in `response.patch`) is applied to the object the next
webhook sees; a validating webhook that returns a patch is refused.

Differences from kube-apiserver: webhooks run one after another rather than in parallel (the first denial
or failure wins); `matchPolicy: Equivalent` matches only the exact group/version/resource; `matchConditions`
(CEL) are not evaluated; a `clientConfig.service` is reachable only when its endpoints are process pods (none
without a resolver); warnings from a webhook that denies are dropped with the request; mutating webhooks
are called once each (`reinvocationPolicy` is ignored) and only for CREATE and UPDATE.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import ssl
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import aiohttp

from kaito_sim.apiserver.errors import ApiError, JsonObj, internal_error
from kaito_sim.apiserver.patch import json_patch
from kaito_sim.apiserver.selectors import label_selector_from_match

SessionFactory = Callable[[ssl.SSLContext], aiohttp.ClientSession]
"""Builds the client session for one webhook call, given the TLS context that trusts its CA."""
ServiceResolver = Callable[[str, str, int], int]
"""(namespace, service, service port) -> the local port of a ready endpoint; raises ApiError when there is none."""

_DEFAULT_TIMEOUT_S = 10
_MAX_TIMEOUT_S = 30
_REVIEW_VERSION = "admission.k8s.io/v1"
_OPTIONS_KIND = {"CREATE": "CreateOptions", "UPDATE": "UpdateOptions", "DELETE": "DeleteOptions"}
_DRY_RUN_SAFE = {"None", "NoneOnDryRun"}


@dataclass(frozen=True)
class AdmissionAttributes:
    """What one API request is about, as webhook rules and the AdmissionReview describe it."""

    operation: str  # CREATE | UPDATE | DELETE | CONNECT
    group: str
    version: str
    resource: str
    subresource: str
    kind: str
    name: str
    namespace: str  # "" for cluster-scoped objects
    obj: JsonObj | None
    old_obj: JsonObj | None
    namespace_labels: Mapping[str, str] | None  # labels of the object's namespace; None when cluster-scoped
    user: str
    dry_run: bool = False


class _CallFailed(Exception):
    """The webhook could not be called or answered nonsense; the failurePolicy decides what follows."""


_CALL = "failed to call webhook: "
_INVALID = "received invalid webhook response: "


# ----------------------------------------------------------------------------------------------- matching
def _listed(values: Any, wanted: str) -> bool:
    return isinstance(values, list) and ("*" in values or wanted in values)


def _resource_listed(resources: Any, attrs: AdmissionAttributes) -> bool:
    """`pods` matches no subresource, `pods/*` every one, `*/status` the status of anything, `*/*` all."""
    for entry in resources if isinstance(resources, list) else []:
        res, _, sub = str(entry).partition("/")
        if res in ("*", attrs.resource) and sub in ("*", attrs.subresource):
            return True
    return False


def _is_namespace_object(attrs: AdmissionAttributes) -> bool:
    return attrs.group == "" and attrs.resource == "namespaces"


def _scope_matches(scope: Any, attrs: AdmissionAttributes) -> bool:
    if scope in (None, "*"):
        return True
    cluster_scoped = attrs.namespace == "" or (_is_namespace_object(attrs) and attrs.subresource == "")
    return cluster_scoped if scope == "Cluster" else not cluster_scoped


def _rule_matches(rule: JsonObj, attrs: AdmissionAttributes) -> bool:
    return (
        _listed(rule.get("operations"), attrs.operation)
        and _listed(rule.get("apiGroups"), attrs.group)
        and _listed(rule.get("apiVersions"), attrs.version)
        and _resource_listed(rule.get("resources"), attrs)
        and _scope_matches(rule.get("scope"), attrs)
    )


def _selector_matches(selector: Any, labels: Mapping[str, str]) -> bool:
    """metav1.LabelSelector semantics; an absent or empty selector matches everything."""
    if not isinstance(selector, dict):
        return True
    return label_selector_from_match(selector).matches(labels)


def _labels_of(obj: JsonObj | None) -> Mapping[str, str]:
    labels = ((obj or {}).get("metadata") or {}).get("labels")
    return labels if isinstance(labels, dict) else {}


def _namespace_selected(webhook: JsonObj, attrs: AdmissionAttributes) -> bool:
    if _is_namespace_object(attrs):
        labels = _labels_of(attrs.obj if attrs.obj is not None else attrs.old_obj)
    elif attrs.namespace == "":
        return True  # cluster-scoped objects other than namespaces are never exempted
    else:
        labels = attrs.namespace_labels or {}
    return _selector_matches(webhook.get("namespaceSelector"), labels)


def _object_selected(webhook: JsonObj, attrs: AdmissionAttributes) -> bool:
    selector = webhook.get("objectSelector")
    if not isinstance(selector, dict) or not (selector.get("matchLabels") or selector.get("matchExpressions")):
        return True
    candidates = [o for o in (attrs.obj, attrs.old_obj) if o is not None]
    return any(_selector_matches(selector, _labels_of(o)) for o in candidates)


def _webhook_matches(webhook: JsonObj, attrs: AdmissionAttributes) -> bool:
    try:
        return (
            any(_rule_matches(r, attrs) for r in webhook.get("rules") or [] if isinstance(r, dict))
            and _namespace_selected(webhook, attrs)
            and _object_selected(webhook, attrs)
        )
    except ApiError as err:
        raise internal_error(f'webhook "{webhook.get("name", "")}" has an invalid selector: {err.message}') from err


# ----------------------------------------------------------------------------------------------- review
def _options(attrs: AdmissionAttributes) -> JsonObj | None:
    kind = _OPTIONS_KIND.get(attrs.operation)
    if kind is None:
        return None
    options: JsonObj = {"kind": kind, "apiVersion": "meta.k8s.io/v1"}
    if attrs.dry_run:
        options["dryRun"] = ["All"]
    return options


def _review(attrs: AdmissionAttributes, uid: str) -> JsonObj:
    kind = {"group": attrs.group, "version": attrs.version, "kind": attrs.kind}
    resource = {"group": attrs.group, "version": attrs.version, "resource": attrs.resource}
    request: JsonObj = {
        "uid": uid,
        "kind": kind,
        "resource": resource,
        "requestKind": kind,
        "requestResource": resource,
    }
    if attrs.subresource:
        request["subResource"] = request["requestSubResource"] = attrs.subresource
    if attrs.name:
        request["name"] = attrs.name
    if attrs.namespace:
        request["namespace"] = attrs.namespace
    request.update(operation=attrs.operation, userInfo={"username": attrs.user}, dryRun=attrs.dry_run)
    for key, value in (("object", attrs.obj), ("oldObject", attrs.old_obj), ("options", _options(attrs))):
        if value is not None:
            request[key] = value
    return {"apiVersion": _REVIEW_VERSION, "kind": "AdmissionReview", "request": request}


def _timeout(webhook: JsonObj) -> int:
    seconds = webhook.get("timeoutSeconds")
    if not isinstance(seconds, int) or isinstance(seconds, bool):
        return _DEFAULT_TIMEOUT_S
    return max(1, min(seconds, _MAX_TIMEOUT_S))


@dataclass(frozen=True)
class _Target:
    """Where a webhook call goes: the URL posted to, the URL errors name, and the name its certificate must carry."""

    url: str
    shown: str
    server_hostname: str | None = None


def _target(webhook: JsonObj, timeout: int, services: ServiceResolver | None) -> _Target:
    """The URL to POST to, with `?timeout=` as kube-apiserver appends it; a Service's goes to its local endpoint."""
    client = webhook.get("clientConfig") or {}
    service = client.get("service")
    if isinstance(service, dict):
        name, ns, port = str(service.get("name", "")), str(service.get("namespace", "")), service.get("port", 443)
        path = f"{service.get('path') or ''}?timeout={timeout}s"
        where = f"https://{name}.{ns}.svc:{port}{path}"
        if services is None:
            raise _CallFailed(f'{_CALL}Post "{where}": no endpoints available for service "{name}"')
        try:
            local = services(ns, name, int(port))
        except ApiError as err:
            raise _CallFailed(f'{_CALL}Post "{where}": {err.message}') from err
        return _Target(f"https://127.0.0.1:{local}{path}", where, f"{name}.{ns}.svc")
    base = client.get("url")
    if not isinstance(base, str) or not base:
        raise _CallFailed(f"{_CALL}webhook clientConfig has neither url nor service")
    url = f"{base}{'&' if '?' in base else '?'}timeout={timeout}s"
    if not url.startswith("https://"):
        raise _CallFailed(f'{_CALL}Post "{url}": webhook URLs must use the https scheme')
    return _Target(url, url)


# ----------------------------------------------------------------------------------------------- calling
@functools.lru_cache(maxsize=64)
def _ssl_context(ca_bundle: str | None) -> ssl.SSLContext:
    """A client TLS context trusting `ca_bundle` (base64 PEM) or, without one, the system roots."""
    if ca_bundle is None:
        return ssl.create_default_context()
    try:
        pem = base64.b64decode(ca_bundle, validate=True).decode("ascii")
        return ssl.create_default_context(cadata=pem)
    except (ValueError, ssl.SSLError) as err:  # bad base64, non-ASCII or non-PEM bytes
        raise _CallFailed(f"could not get REST client: unable to load root certificates: {err}") from err


def _default_session(context: ssl.SSLContext) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context))


def _describe(url: str, err: BaseException) -> str:
    """A transport failure worded like Go's net/http errors, which is what kubectl users know."""
    if isinstance(err, TimeoutError):
        return f'Post "{url}": context deadline exceeded'
    if isinstance(err, aiohttp.ClientConnectorCertificateError):
        return f'Post "{url}": tls: failed to verify certificate: {err.certificate_error}'
    if isinstance(err, aiohttp.ClientSSLError):
        return f'Post "{url}": tls: {err}'
    if isinstance(err, aiohttp.ClientConnectorError):
        what = "connection refused" if isinstance(err.os_error, ConnectionRefusedError) else err.strerror
        return f'Post "{url}": dial tcp {err.host}:{err.port}: connect: {what}'
    return f'Post "{url}": {err}'


def _unexpected_status(code: int, text: str) -> str:
    if text.strip():
        return f'an error on the server ("{text.strip()[:256]}") has prevented the request from succeeding'
    return f"the server responded with the status code {code} but did not return more information"


async def _post(target: _Target, review: JsonObj, context: ssl.SSLContext, factory: SessionFactory) -> Any:
    url, headers = target.shown, {"Accept": "application/json, */*"}
    try:
        async with (
            factory(context) as session,
            session.post(target.url, json=review, headers=headers, server_hostname=target.server_hostname) as response,
        ):
            text = await response.text()
            if response.status != 200:
                raise _CallFailed(_CALL + _unexpected_status(response.status, text))
            return await response.json(content_type=None)
    except _CallFailed:
        raise
    except (aiohttp.ClientError, OSError) as err:  # before ValueError: TLS errors are ValueErrors too
        raise _CallFailed(_CALL + _describe(url, err)) from err
    except ValueError as err:
        raise _CallFailed(f"{_CALL}failed to decode the webhook response: {err}") from err


async def _post_within(
    seconds: int, target: _Target, review: JsonObj, context: ssl.SSLContext, factory: SessionFactory
) -> Any:
    try:
        async with asyncio.timeout(seconds):
            return await _post(target, review, context, factory)
    except TimeoutError as err:
        raise _CallFailed(_CALL + _describe(target.shown, err)) from err


def _verified_response(body: Any, uid: str, *, mutating: bool) -> JsonObj:
    """The `response` of a well-formed AdmissionReview answer; raises _CallFailed otherwise."""
    if not isinstance(body, dict) or (body.get("apiVersion"), body.get("kind")) != (_REVIEW_VERSION, "AdmissionReview"):
        got = f"{body.get('apiVersion')}, Kind={body.get('kind')}" if isinstance(body, dict) else type(body).__name__
        raise _CallFailed(f"{_INVALID}expected webhook response of {_REVIEW_VERSION}, Kind=AdmissionReview, got {got}")
    response = body.get("response")
    if not isinstance(response, dict):
        raise _CallFailed(f"{_INVALID}webhook response was absent")
    if response.get("uid") != uid:
        raise _CallFailed(f"{_INVALID}expected response.uid={uid!r}, got {response.get('uid')!r}")
    if not mutating and (response.get("patch") or response.get("patchType")):
        raise _CallFailed(f"{_INVALID}validating webhooks may not return patches")
    return response


def _rejection(name: str, response: JsonObj) -> ApiError:
    given = response.get("status")
    status: JsonObj = given if isinstance(given, dict) else {}
    code = status.get("code")
    code = code if isinstance(code, int) and code >= 400 else 403
    denied = f'admission webhook "{name}" denied the request'
    explanation = status.get("message") or status.get("reason")
    message = f"{denied}: {explanation}" if explanation else f"{denied} without explanation"
    details = status.get("details") if isinstance(status.get("details"), dict) else None
    return ApiError(code, status.get("reason") or "Forbidden", message, details)


async def _call(
    webhook: JsonObj,
    attrs: AdmissionAttributes,
    factory: SessionFactory,
    services: ServiceResolver | None,
    *,
    mutating: bool,
) -> JsonObj:
    """One webhook's answer when it allows the request; raises ApiError when it denies."""
    timeout = _timeout(webhook)
    target = _target(webhook, timeout, services)
    bundle = (webhook.get("clientConfig") or {}).get("caBundle")
    context = _ssl_context(bundle if isinstance(bundle, str) and bundle else None)
    uid = str(uuid.uuid4())
    body = await _post_within(timeout, target, _review(attrs, uid), context, factory)
    response = _verified_response(body, uid, mutating=mutating)
    if response.get("allowed") is not True:
        raise _rejection(str(webhook.get("name", "")), response)
    return response


def _warnings(response: JsonObj) -> list[str]:
    warnings = response.get("warnings")
    return [str(w) for w in warnings] if isinstance(warnings, list) else []


def _patch_operations(response: JsonObj) -> list[Any] | None:
    """The RFC 6902 operations of a mutating webhook's answer, None when it has none; _CallFailed when unreadable."""
    patch_type, encoded = response.get("patchType"), response.get("patch")
    if not encoded:
        return None
    if patch_type != "JSONPatch":
        raise _CallFailed(f'{_INVALID}unsupported patch type "{patch_type}"')
    try:
        operations = json.loads(base64.b64decode(str(encoded), validate=True))
    except ValueError as err:  # bad base64, bad UTF-8 or bad JSON
        raise _CallFailed(f"{_INVALID}the patch is not base64-encoded JSON: {err}") from err
    if not isinstance(operations, list):
        raise _CallFailed(f"{_INVALID}the patch is not a JSON array of operations")
    return operations


def _patched(name: str, obj: JsonObj, operations: list[Any]) -> JsonObj:
    try:
        return json_patch(obj, operations)
    except ApiError as err:
        message = f'admission webhook "{name}" returned a patch that cannot be applied: {err.message}'
        raise internal_error(message) from err


def _matching(configs: Sequence[JsonObj], attrs: AdmissionAttributes) -> Iterator[JsonObj]:
    """The webhooks to call, in order; a dry run reaching one with side effects is refused with 400 when reached."""
    for config in configs:
        for webhook in config.get("webhooks") or []:
            if not isinstance(webhook, dict) or not _webhook_matches(webhook, attrs):
                continue
            if attrs.dry_run and webhook.get("sideEffects") not in _DRY_RUN_SAFE:
                name = str(webhook.get("name", ""))
                raise ApiError(400, "BadRequest", f'admission webhook "{name}" does not support dry run')
            yield webhook


# ----------------------------------------------------------------------------------------------- entry
async def mutate_admission(
    configs: Sequence[JsonObj],
    attrs: AdmissionAttributes,
    *,
    session_factory: SessionFactory | None = None,
    services: ServiceResolver | None = None,
) -> tuple[JsonObj | None, list[str]]:
    """Run every matching mutating webhook in order, each seeing the object as the one before left it.

    Returns the object as the last webhook left it (`attrs.obj` when none patched it) and their warnings.
    Denials and failed calls raise as in `validate_admission`; a patch that is not base64 JSON or not of
    type JSONPatch is a failed call, and one that does not apply to the object is 500 InternalError
    whatever the failurePolicy.
    """
    factory = session_factory or _default_session
    warnings: list[str] = []
    for webhook in _matching(configs, attrs):
        name = str(webhook.get("name", ""))
        try:
            response = await _call(webhook, attrs, factory, services, mutating=True)
            operations = _patch_operations(response)
        except _CallFailed as err:
            if webhook.get("failurePolicy") == "Ignore":
                continue
            raise internal_error(f'failed calling webhook "{name}": {err}') from err
        if operations is not None and attrs.obj is not None:
            attrs = replace(attrs, obj=_patched(name, attrs.obj, operations))
        warnings += _warnings(response)
    return attrs.obj, warnings


async def validate_admission(
    configs: Sequence[JsonObj],
    attrs: AdmissionAttributes,
    *,
    session_factory: SessionFactory | None = None,
    services: ServiceResolver | None = None,
) -> list[str]:
    """Run every matching validating webhook in order; return their warnings or raise the first ApiError.

    A denial raises the webhook's Status (403 Forbidden unless it says otherwise). A failed call raises
    500 InternalError under `failurePolicy: Fail` (the default) and is skipped under `Ignore`. A dry-run
    request reaching a webhook whose `sideEffects` is not None/NoneOnDryRun is refused with 400. `services`
    resolves webhooks reached by `clientConfig.service`; without it they have no endpoints.
    """
    factory = session_factory or _default_session
    warnings: list[str] = []
    for webhook in _matching(configs, attrs):
        try:
            warnings += _warnings(await _call(webhook, attrs, factory, services, mutating=False))
        except _CallFailed as err:
            if webhook.get("failurePolicy") == "Ignore":
                continue
            raise internal_error(f'failed calling webhook "{webhook.get("name", "")}": {err}') from err
    return warnings
