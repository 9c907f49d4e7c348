"""Commands run under a terminal of their own, as a person types them: `kubectl run -it` wants one for its `-t`."""

from __future__ import annotations

import os
import pty
import subprocess


def run_in_terminal(argv: list[str], env: dict[str, str], *, timeout: float = 180) -> tuple[int, str]:
    """Run `argv` with a new pseudo-terminal as its stdin, stdout and stderr; its exit code and what it printed."""
    main, terminal = pty.openpty()
    try:
        proc = subprocess.Popen(argv, env=env, stdin=terminal, stdout=terminal, stderr=terminal)
    finally:
        os.close(terminal)
    chunks = []
    try:
        while chunk := os.read(main, 65536):
            chunks.append(chunk)
    except OSError:  # EIO: every process holding the terminal has exited
        pass
    finally:
        os.close(main)
    return proc.wait(timeout=timeout), b"".join(chunks).decode(errors="replace").replace("\r\n", "\n")
