"""One registry session per worker thread for a model transfer, all closed together at the end."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Self

from kaito.oci.blobs import BlobSession
from kaito.oci.client import RETRY_DELAYS_S, Auth, credentials_for
from kaito.oci.reference import Reference
from kaito.oci.scheme import Scheme


class SessionPool:
    """Hands each thread its own BlobSession (requests sessions are not shared across threads), all in one scheme."""

    def __init__(self, ref: Reference, auth: Auth, *, scheme: Scheme, ca_file: Path | None, purpose: str) -> None:
        self.ref = ref
        self._credentials = credentials_for(auth, ref.registry)
        self._scheme, self._ca_file, self._purpose = scheme, ca_file, purpose
        self._local = threading.local()
        self._lock = threading.Lock()
        self._sessions: list[BlobSession] = []

    def session(self) -> BlobSession:
        session: BlobSession | None = getattr(self._local, "session", None)
        if session is None:
            session = BlobSession(
                self.ref,
                self._credentials,
                scheme=self._scheme,
                ca_file=self._ca_file,
                purpose=self._purpose,
                retry_delays=RETRY_DELAYS_S,
            )
            self._local.session = session
            with self._lock:
                self._sessions.append(session)
        return session

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            for session in self._sessions:
                session.http.close()
            self._sessions.clear()
