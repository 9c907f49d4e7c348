"""Runs the real `docker-registry` (distribution) binary for tests: TLS, and htpasswd or Bearer-token auth."""

from __future__ import annotations

import base64
import contextlib
import ctypes
import datetime as dt
import hashlib
import json
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

import bcrypt
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from kaito.oci.dockerconfig import encode_auth
from kaito.webhook.certs import generate_serving_cert

REGISTRY_BINARY = Path("/usr/bin/docker-registry")
TOKEN_SERVICE = "kaito-test-registry"
TOKEN_ISSUER = "kaito-test-token-issuer"
_ACCESS_LINE = re.compile(r'"([A-Z]+) (\S+) HTTP/[0-9.]+" ([0-9]{3}) ')
AuthMode = Literal["htpasswd", "token", "none"]
_PR_SET_PDEATHSIG = 1


def require_registry_binary() -> Path:
    """The docker-registry binary; `make test` installs it (scripts/system-deps), so its absence is a failure."""
    if not REGISTRY_BINARY.is_file():
        pytest.fail(f"{REGISTRY_BINARY} is not installed: run scripts/system-deps (Debian package docker-registry)")
    return REGISTRY_BINARY


def _die_with_parent() -> None:
    """In the registry child: have Linux stop it when the test process dies without calling stop()."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Registry:
    """A docker-registry process on 127.0.0.1 with its storage, certificates and credentials under one directory.

    auth="htpasswd": HTTP Basic with a bcrypt htpasswd file. auth="token": the Bearer challenge flow against a
    small token service in this process (basic credentials or the identity token as an OAuth2 refresh token).
    auth="none": anonymous; with tls=False the registry serves plain HTTP.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        username: str = "kaito",
        password: str = "",
        auth: AuthMode = "htpasswd",
        tls: bool = True,
        access_log: bool = False,
    ) -> None:
        self.workdir = workdir
        self.username = username
        self.password = password or secrets.token_urlsafe(12)
        self.identity_token = secrets.token_urlsafe(24)
        self.auth = auth
        self.tls = tls
        self.access_log = access_log
        self.host = "127.0.0.1"
        self.port = 0
        self.ca_file: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._token_service: _TokenService | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def verify(self) -> str | bool:
        """What `requests` needs to trust this registry."""
        return str(self.ca_file) if self.ca_file else True

    @property
    def token_requests(self) -> list[str]:
        """The grant each token request used ("basic" or "refresh_token"), in order."""
        return list(self._token_service.grants) if self._token_service else []

    def url(self, path: str) -> str:
        return f"{'https' if self.tls else 'http'}://{self.address}{path}"

    def start(self) -> Registry:
        binary = require_registry_binary()
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self._write_config()
        for _ in range(3):  # a port picked free can be taken before the registry binds it
            self.port = free_port()
            config.write_text(json.dumps(self._config()))
            with (self.workdir / "registry.log").open("wb") as log:
                self._process = subprocess.Popen(
                    [str(binary), "serve", str(config)], stdout=log, stderr=log, preexec_fn=_die_with_parent
                )
            if self._wait_until_up():
                return self
            self._terminate()
        self.stop()
        raise RuntimeError(f"docker-registry did not start; log:\n{self._log_tail()}")

    def stop(self) -> None:
        self._terminate()
        if self._token_service:
            self._token_service.stop()
            self._token_service = None

    def __enter__(self) -> Registry:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def docker_config(
        self, path: Path, *, username: str | None = None, password: str | None = None, identity_token: str = ""
    ) -> Path:
        """Write a .dockerconfigjson for this registry (this registry's user and password unless told otherwise)."""
        entry: dict[str, str] = {}
        if identity_token:
            entry = {"username": "00000000-0000-0000-0000-000000000000", "identitytoken": identity_token}
        else:
            user = self.username if username is None else username
            secret = self.password if password is None else password
            entry = {"auth": encode_auth(user, secret)}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"auths": {self.address: entry}}))
        return path

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Stop the registry process (SIGSTOP) while inside: connections are accepted by the kernel, never answered."""
        assert self._process is not None, "the registry is not running"
        self._process.send_signal(signal.SIGSTOP)
        try:
            yield
        finally:
            self._process.send_signal(signal.SIGCONT)

    def requests_logged(self, method: str, path_part: str) -> int:
        """How many requests the access log (access_log=True) shows answered (2xx/3xx) for this method and path part."""
        log = self.workdir / "registry.log"
        found = (_ACCESS_LINE.search(line) for line in log.read_text(errors="replace").splitlines())
        return sum(1 for m in found if m and m[1] == method and path_part in m[2] and m[3] < "400")

    def _write_config(self) -> Path:
        if self.tls:
            bundle = generate_serving_cert(["localhost"], ["127.0.0.1"])
            self.ca_file = self.workdir / "ca.crt"
            self.ca_file.write_bytes(bundle.ca_pem)
            (self.workdir / "tls.crt").write_bytes(bundle.cert_pem)
            (self.workdir / "tls.key").write_bytes(bundle.key_pem)
        if self.auth == "htpasswd":
            hashed = bcrypt.hashpw(self.password.encode(), bcrypt.gensalt(rounds=4)).decode()
            (self.workdir / "htpasswd").write_text(f"{self.username}:{hashed}\n")
        if self.auth == "token":
            self._token_service = _TokenService(self).start()
            (self.workdir / "token-signer.crt").write_bytes(self._token_service.certificate_pem)
        return self.workdir / "config.yml"

    def _config(self) -> dict[str, Any]:
        http: dict[str, Any] = {"addr": self.address, "secret": secrets.token_hex(16)}
        if self.tls:
            http["tls"] = {"certificate": str(self.workdir / "tls.crt"), "key": str(self.workdir / "tls.key")}
        config: dict[str, Any] = {
            "version": 0.1,
            "log": {"level": "warn", "accesslog": {"disabled": not self.access_log}},
            "storage": {"filesystem": {"rootdirectory": str(self.workdir / "storage")}, "delete": {"enabled": True}},
            "http": http,
        }
        if self.auth == "htpasswd":
            config["auth"] = {"htpasswd": {"realm": "kaito-test", "path": str(self.workdir / "htpasswd")}}
        if self.auth == "token" and self._token_service:
            config["auth"] = {
                "token": {
                    "realm": self._token_service.realm,
                    "service": TOKEN_SERVICE,
                    "issuer": TOKEN_ISSUER,
                    "rootcertbundle": str(self.workdir / "token-signer.crt"),
                }
            }
        return config

    def _wait_until_up(self, timeout_s: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                return False
            with contextlib.suppress(requests.RequestException):
                if requests.get(self.url("/v2/"), verify=self.verify, timeout=1).status_code in (200, 401):
                    return True
            time.sleep(0.05)
        return False

    def _terminate(self) -> None:
        if self._process and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def _log_tail(self) -> str:
        log = self.workdir / "registry.log"
        return log.read_text(errors="replace")[-4000:] if log.exists() else "(no log)"


class _TokenService:
    """The token endpoint of the docker token-auth spec: hands out ES256 JWTs the registry trusts via x5c."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.grants: list[str] = []
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._certificate = _self_signed(self._key)
        self.certificate_pem = self._certificate.public_bytes(serialization.Encoding.PEM)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/token"

    def start(self) -> _TokenService:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def grant(self, grant: str, scopes: list[str]) -> str:
        self.grants.append(grant)
        now = int(time.time())
        claims = {
            "iss": TOKEN_ISSUER,
            "sub": self.registry.username,
            "aud": TOKEN_SERVICE,
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": secrets.token_hex(8),
            "access": [_access(scope) for scope in scopes if scope.count(":") >= 2],
        }
        der = self._certificate.public_bytes(serialization.Encoding.DER)
        header = {"typ": "JWT", "alg": "ES256", "x5c": [base64.b64encode(der).decode()]}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        r, s = decode_dss_signature(self._key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        return f"{signing_input}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                grant = service.check_basic(self.headers.get("Authorization", ""))
                self._answer(grant, query.get("scope", []))

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                form = urllib.parse.parse_qs(self.rfile.read(length).decode())
                refresh = form.get("refresh_token", [""])[0]
                ok = form.get("grant_type") == ["refresh_token"] and refresh == service.registry.identity_token
                self._answer("refresh_token" if ok else None, form.get("scope", []))

            def _answer(self, grant: str | None, scopes: list[str]) -> None:
                if grant is None:
                    body, status = b'{"details":"invalid credentials"}', 401
                else:
                    token = service.grant(grant, scopes)
                    body, status = json.dumps({"token": token, "access_token": token}).encode(), 200
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    def check_basic(self, header: str) -> str | None:
        """The grant a GET token request earns: "basic" for the right user and password, None otherwise."""
        if not header.startswith("Basic "):
            return None
        expected = encode_auth(self.registry.username, self.registry.password)
        return "basic" if secrets.compare_digest(header[len("Basic ") :], expected) else None


def _access(scope: str) -> dict[str, Any]:
    kind, _, rest = scope.partition(":")
    name, _, actions = rest.rpartition(":")
    return {"type": kind, "name": name, "actions": actions.split(",")}


def _self_signed(key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, TOKEN_ISSUER)])
    start = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """One real docker-registry (TLS, htpasswd auth) for the whole session; conftests re-export it."""
    require_registry_binary()
    with Registry(tmp_path_factory.mktemp("registry"), username="kaito") as running:
        yield running
