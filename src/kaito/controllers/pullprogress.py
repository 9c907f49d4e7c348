"""How far a pod's model pull has come: the last line its puller printed, read through the API server's pods/log.

`kaito pull-model --progress-lines` prints one JSON object a line, `{"progress": {"bytes", "totalBytes",
"bytesPerSecond", "etaSeconds"}}`, at intervals, and its summary (also JSON) last. So the last line of the log
(`tailLines=1`) is itself a JSON document: one small GET per pulling pod per poll, no log streaming, no kubelet
access beyond what `kubectl logs` uses. A last line that is not a progress line (a retry warning) reads as no
news until the next poll.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from kaito.controllers.kinds import MODEL_PULLER
from kaito.runtime import errors
from kaito.runtime.client import Client


async def last_progress_line(client: Client, namespace: str, pod: str) -> dict[str, Any] | None:
    """The `progress` object of the puller's last log line, or None when there is none (yet) or it is another line."""
    query = urlencode({"container": MODEL_PULLER, "tailLines": "1"})
    try:
        line = await client.raw("GET", f"/api/v1/namespaces/{namespace}/pods/{pod}/log?{query}")
    except (errors.ApiError, ValueError):  # no log yet, the pod gone, or a last line that is not JSON
        return None
    progress = line.get("progress") if isinstance(line, dict) else None
    return progress if isinstance(progress, dict) else None
