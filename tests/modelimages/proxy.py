"""A TCP proxy in front of the registry that can break one connection after a number of bytes sent upstream."""

from __future__ import annotations

import contextlib
import socket
import threading


class CuttingProxy:
    """Forwards 127.0.0.1:<port> to a target; `cut_after(n)` closes the connection that carries byte n upstream."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._server.getsockname()[1]
        self._lock = threading.Lock()
        self._budget: int | None = None
        self._forever = False
        self.cuts = 0
        self._open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def cut_after(self, count: int, *, forever: bool = False) -> None:
        """Cut after count more bytes upstream: once, or (forever) every connection from then on."""
        with self._lock:
            self._budget, self._forever = count, forever

    def disarm(self) -> None:
        with self._lock:
            self._budget, self._forever = None, False

    def close(self) -> None:
        self._server.close()
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self._lock:
                self._open += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, upstream: bool) -> None:
        try:
            while data := source.recv(65536):
                if upstream and self._spend(len(data)):
                    break
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()

    def _spend(self, count: int) -> bool:
        """Count bytes going upstream; True (cut now) once the budget is spent, which disarms the proxy."""
        with self._lock:
            if self._budget is None:
                return False
            self._budget -= count
            if self._budget > 0:
                return False
            self._budget = 0 if self._forever else None
            self.cuts += 1
            return True
