"""The admission webhook server: AdmissionReview v1 over TLS in front of pure validation and mutation functions.

Validators (and mutators, which are validators whose verdict carries a patch) are plain async functions of
an `AdmissionRequest`; this module owns the wire format, TLS
(with certificate hot-reload, for cert-manager rotations) and turning a validator's crash into a 500
denial. That denial fails closed whatever the configuration's failurePolicy, which governs only calls
that get no valid answer (unreachable server, timeout, HTTP errors such as the 400 for a malformed review).
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import logging
import os
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from kaito.api.fielderrors import FieldError, summarize
from kaito.runtime.clock import REAL_CLOCK, Clock
from kaito.runtime.servers import parse_address
from kaito.runtime.tasks import guard

log = logging.getLogger(__name__)

REVIEW_API_VERSION = "admission.k8s.io/v1"
# A review carries the object and the old object, each up to the 1.5 MiB etcd allows.
_MAX_BODY = 8 * 1024 * 1024


@dataclass(frozen=True)
class AdmissionRequest:
    """The parts of `review.request` a validator needs; `namespace` and `name` are "" when absent."""

    uid: str
    operation: str
    kind: dict[str, str]
    resource: dict[str, str]
    namespace: str
    name: str
    object: dict[str, Any] | None
    old_object: dict[str, Any] | None
    dry_run: bool
    user: str


@dataclass(frozen=True)
class Verdict:
    """A validator's answer: errors deny the request; warnings reach the user either way.

    `patch` (RFC 6902 operations) is a mutating webhook's change to the object, sent only when allowed.
    """

    errors: tuple[FieldError, ...] = ()
    warnings: tuple[str, ...] = ()
    patch: tuple[dict[str, Any], ...] = ()

    @property
    def allowed(self) -> bool:
        return not self.errors


Validator = Callable[[AdmissionRequest], Awaitable[Verdict]]


class BadReview(ValueError):
    """The request body is not an AdmissionReview v1 request; answered with HTTP 400."""


def parse_review(body: Any) -> AdmissionRequest:
    """The request of an AdmissionReview v1, or BadReview saying what is wrong with it."""
    if not isinstance(body, dict):
        raise BadReview("expected a JSON object")
    if (body.get("apiVersion"), body.get("kind")) != (REVIEW_API_VERSION, "AdmissionReview"):
        got = f"{body.get('apiVersion')}, Kind={body.get('kind')}"
        raise BadReview(f"expected {REVIEW_API_VERSION}, Kind=AdmissionReview, got {got}")
    request = body.get("request")
    if not isinstance(request, dict):
        raise BadReview("the AdmissionReview has no request")
    uid, operation = request.get("uid"), request.get("operation")
    if not isinstance(uid, str) or not uid:
        raise BadReview("request.uid is missing")
    if not isinstance(operation, str) or not operation:
        raise BadReview("request.operation is missing")
    user = request.get("userInfo")
    return AdmissionRequest(
        uid=uid,
        operation=operation,
        kind=_strings(request.get("kind"), "request.kind"),
        resource=_strings(request.get("resource"), "request.resource"),
        namespace=str(request.get("namespace") or ""),
        name=str(request.get("name") or ""),
        object=_optional_object(request.get("object"), "request.object"),
        old_object=_optional_object(request.get("oldObject"), "request.oldObject"),
        dry_run=request.get("dryRun") is True,
        user=str(user.get("username") or "") if isinstance(user, dict) else "",
    )


def _strings(value: Any, field: str) -> dict[str, str]:
    if not isinstance(value, dict):
        raise BadReview(f"{field} is missing")
    return {str(key): str(item) for key, item in value.items()}


def _optional_object(value: Any, field: str) -> dict[str, Any] | None:
    if value is None or isinstance(value, dict):
        return value
    raise BadReview(f"{field} is not an object")


def review_response(
    uid: str, verdict: Verdict, request: AdmissionRequest | None = None, *, causes: bool = False
) -> dict[str, Any]:
    """The AdmissionReview v1 answering `uid`; a denial carries a 422 Invalid status whose message lists the errors.

    An allowed verdict with a patch carries it as `patchType: JSONPatch` and the base64 of its JSON.

    `causes` adds `details.causes`, one per error, for API clients. It is off by default because kubectl,
    given causes on an Invalid status, prints them in place of the message and so hides which webhook
    denied the request.
    """
    response: dict[str, Any] = {"uid": uid, "allowed": verdict.allowed}
    if not verdict.allowed:
        status: dict[str, Any] = {"code": 422, "reason": "Invalid", "message": summarize(list(verdict.errors))}
        if causes:
            status["details"] = _details(verdict, request)
        response["status"] = status
    elif verdict.patch:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(json.dumps(list(verdict.patch)).encode()).decode("ascii")
    if verdict.warnings:
        response["warnings"] = list(verdict.warnings)
    return {"apiVersion": REVIEW_API_VERSION, "kind": "AdmissionReview", "response": response}


def _details(verdict: Verdict, request: AdmissionRequest | None) -> dict[str, Any]:
    details: dict[str, Any] = {
        "causes": [{"field": e.path, "message": e.message, "reason": "FieldValueInvalid"} for e in verdict.errors]
    }
    if request is not None:
        details.update(name=request.name, group=request.kind.get("group", ""), kind=request.kind.get("kind", ""))
    return details


def _internal_error(uid: str, request: AdmissionRequest, exc: Exception) -> dict[str, Any]:
    message = f"internal error validating {_describe(request)}: {exc}"
    response = {"uid": uid, "allowed": False, "status": {"code": 500, "reason": "InternalError", "message": message}}
    return {"apiVersion": REVIEW_API_VERSION, "kind": "AdmissionReview", "response": response}


def _describe(request: AdmissionRequest) -> str:
    where = f"{request.namespace}/{request.name}" if request.namespace else request.name
    return f"{request.kind.get('kind', 'object')} {where or '(unnamed)'}"


def _bad_request(message: str) -> web.Response:
    return web.json_response({"code": 400, "reason": "BadRequest", "message": message}, status=400)


class CertReloader:
    """Serves the current cert/key files: new connections get a rotated pair, open ones keep theirs.

    The listening socket keeps one front SSLContext whose SNI callback (which OpenSSL calls on every
    handshake, with or without a server name) hands each connection the context of the newest good pair.
    Each pair loads into a fresh context, because a failed `load_cert_chain` on a live context (say, a
    new certificate beside the old key, mid-rotation) leaves it holding a mismatched pair.
    """

    def __init__(self, cert_file: Path, key_file: Path) -> None:
        self.cert_file = cert_file
        self.key_file = key_file
        self.front = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.front.sni_callback = self._select
        self._current: ssl.SSLContext | None = None
        self._seen: tuple[tuple[int, int, int], ...] | None = None

    def load(self) -> None:
        """Load the pair now; raises OSError or ssl.SSLError when it is unreadable or mismatched."""
        stamp = self._stamp()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_file, self.key_file)
        if self._current is None:
            self.front.load_cert_chain(self.cert_file, self.key_file)
        self._current, self._seen = context, stamp

    def reload_if_changed(self) -> bool:
        """Reload when either file changed since the last good load; True when a new pair took effect.

        A failed load keeps the current pair and leaves the change unrecorded, so the next check retries.
        """
        try:
            if self._stamp() == self._seen:
                return False
            self.load()
        except (OSError, ssl.SSLError) as err:
            log.warning("webhook certificate reload failed, keeping the current one: %s", err)
            return False
        log.info("webhook certificate reloaded from %s", self.cert_file)
        return True

    def _select(self, connection: ssl.SSLObject, server_name: str | None, front: ssl.SSLContext) -> None:
        if self._current is not None:
            connection.context = self._current

    def _stamp(self) -> tuple[tuple[int, int, int], ...]:
        # The inode catches atomic replacement (and Kubernetes' symlink swap) within one mtime tick.
        stats = [os.stat(path) for path in (self.cert_file, self.key_file)]
        return tuple((s.st_mtime_ns, s.st_size, s.st_ino) for s in stats)


class WebhookServer:
    """Serves each validator at its path (POST), plus GET /healthz, over TLS on `address`."""

    def __init__(
        self,
        validators: Mapping[str, Validator],
        *,
        address: str = ":9443",
        cert_file: Path,
        key_file: Path,
        reload_interval: float = 60.0,
        status_causes: bool = False,
        clock: Clock = REAL_CLOCK,
    ) -> None:
        if reload_interval <= 0:
            raise ValueError("reload_interval must be positive")
        self.validators = dict(validators)
        self.status_causes = status_causes
        self.host, self._requested_port = parse_address(address)
        self.reload_interval = reload_interval
        self.clock = clock
        self.certs = CertReloader(cert_file, key_file)
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._reloader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.certs.load()
        self._runner = web.AppRunner(self._app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self._requested_port, ssl_context=self.certs.front)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        # Owned by this server rather than a TaskGroup: start/stop bracket its life, and stop cancels it.
        self._reloader = asyncio.create_task(
            guard("webhook-cert-reload", self._watch_certs()), name="webhook-cert-reload"
        )
        log.info("webhook server listening on %s:%d (%s)", self.host, self.port, ", ".join(self.validators))

    async def stop(self) -> None:
        if self._reloader is not None:
            self._reloader.cancel()
            await asyncio.gather(self._reloader, return_exceptions=True)
            self._reloader = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def run(self, stop: asyncio.Event) -> None:
        """A manager runnable: serve until `stop` is set."""
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.stop()

    def url(self, path: str) -> str:
        """The URL of `path` on this server, as a client on this host reaches it."""
        host = self.host
        if host in ("", "0.0.0.0", "::"):
            host = "127.0.0.1"
        elif ":" in host:
            host = f"[{ipaddress.IPv6Address(host)}]"
        return f"https://{host}:{self.port}{path}"

    async def _watch_certs(self) -> None:
        while True:
            await self.clock.sleep(self.reload_interval)
            self.certs.reload_if_changed()

    def _app(self) -> web.Application:
        app = web.Application(client_max_size=_MAX_BODY)
        app.router.add_get("/healthz", _healthz)
        for path, validator in self.validators.items():
            app.router.add_post(path, _review_handler(validator, causes=self.status_causes))
        return app


async def _healthz(_: web.Request) -> web.Response:
    return web.Response(text="ok")


def _review_handler(validator: Validator, *, causes: bool) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handle(http_request: web.Request) -> web.Response:
        try:
            request = parse_review(json.loads(await http_request.read()))
        except ValueError as err:  # JSONDecodeError, UnicodeDecodeError and BadReview all are
            return _bad_request(f"malformed AdmissionReview: {err}")
        try:
            verdict = await validator(request)
        except Exception as exc:
            log.exception("validator for %s failed on %s", http_request.path, _describe(request))
            return web.json_response(_internal_error(request.uid, request, exc))
        if not verdict.allowed:
            log.info("denied %s %s: %s", request.operation, _describe(request), summarize(list(verdict.errors)))
        return web.json_response(review_response(request.uid, verdict, request, causes=causes))

    return handle
