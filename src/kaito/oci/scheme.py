"""Whether a transfer speaks HTTPS or plain HTTP to a registry: Docker's rule for loopback and insecure registries.

Docker tries HTTPS first with every registry. A registry on a loopback address, or one named insecure, that
answers the TLS handshake in plain HTTP is then spoken to in plain HTTP; any other registry must speak TLS.
A transfer never goes back from HTTP to HTTPS, and an explicit plain-HTTP choice skips the HTTPS attempt.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import socket
import ssl
import threading
from collections.abc import Collection

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 5.0
_HTTP_ANSWER = b"HTTP/"


def is_loopback(registry: str) -> bool:
    """Whether host[:port] names this machine: localhost or 127.0.0.0/8 (the hosts a reference can spell)."""
    host = registry.rpartition(":")[0] if ":" in registry else registry
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Scheme:
    """The scheme of one transfer's requests to one registry, shared by the transfer's sessions (one per thread)."""

    def __init__(self, *, plain_http: bool = False, may_fall_back: bool = False) -> None:
        self._plain_http = plain_http
        self.may_fall_back = may_fall_back and not plain_http
        self._lock = threading.Lock()

    @classmethod
    def docker_rule(cls, registry: str, *, plain_http: bool = False, insecure: Collection[str] = ()) -> Scheme:
        """HTTPS, falling back to plain HTTP only for a loopback registry or one in `insecure`; or plain HTTP."""
        return cls(plain_http=plain_http, may_fall_back=is_loopback(registry) or registry in insecure)

    @property
    def name(self) -> str:
        return "http" if self._plain_http else "https"

    def falls_back(self, api_host: str) -> bool:
        """After a failed TLS request to api_host: whether its requests now go in plain HTTP (the caller sends again).

        True when another session of the transfer has already fallen back, or when this registry may fall back
        and answers a TLS ClientHello in plain HTTP; never for a registry the rule keeps on TLS.
        """
        if not self.may_fall_back:
            return False
        with self._lock:
            if self._plain_http:
                return True
            if not answers_tls_in_plain_http(api_host):
                return False
            self._plain_http = True
        log.warning("registry %s answered the TLS handshake in plain HTTP; speaking plain HTTP to it", api_host)
        return True


def answers_tls_in_plain_http(api_host: str, *, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Whether the server at host[:port] (port 443 by default) answers a TLS ClientHello with an HTTP response.

    The handshake's first flight goes out through memory buffers, so what comes back is read as sent: a TLS
    server answers with a TLS record, a plain HTTP server with a status line (`HTTP/1.1 400 Bad Request`).
    Connection failures count as no.
    """
    host, _, port = api_host.rpartition(":") if ":" in api_host else (api_host, "", "443")
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # nothing is trusted from this exchange: it only asks what protocol answers
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=host)
    with contextlib.suppress(ssl.SSLWantReadError):  # it waits for the server's answer, which is read below
        tls.do_handshake()
    hello = outgoing.read()
    answer = b""
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as sock:
            sock.sendall(hello)
            while len(answer) < len(_HTTP_ANSWER):
                chunk = sock.recv(len(_HTTP_ANSWER) - len(answer))
                if not chunk:
                    break
                answer += chunk
    except OSError:
        return False
    return answer == _HTTP_ANSWER
