"""The engine's refusal to start, as `kaito serve` writes it to the server container's termination message.

One JSON object, read by the controller from the pod's status:

    {"reason": "EngineKVCacheTooSmall" | "EngineOutOfMemory", "message": <the engine's own words>,
     "maxModelLen": <what was asked>, "kvCacheTokens": <what the KV cache holds>, "fitsMaxModelLen": <what would fit>}

(numbers present only when the engine said them).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

KV_TOO_SMALL = "EngineKVCacheTooSmall"
OUT_OF_MEMORY = "EngineOutOfMemory"
REASONS = (KV_TOO_SMALL, OUT_OF_MEMORY)
TERMINATION_BYTES = 4096  # the kubelet reads no more of a termination message


@dataclass(frozen=True)
class Refusal:
    reason: str
    message: str
    max_model_len: int | None = None
    kv_cache_tokens: int | None = None
    fits_max_model_len: int | None = None

    def to_json(self) -> str:
        """The termination message: the numbers first, the words trimmed so the whole fits the kubelet's 4 KiB."""
        body: dict[str, object] = {"reason": self.reason}
        numbers = {
            "maxModelLen": self.max_model_len,
            "kvCacheTokens": self.kv_cache_tokens,
            "fitsMaxModelLen": self.fits_max_model_len,
        }
        body.update({k: v for k, v in numbers.items() if v is not None})
        room = TERMINATION_BYTES - len(json.dumps({**body, "message": ""}).encode())
        message = self.message
        while len(json.dumps(message).encode()) - 2 > room:
            message = message[: max(0, len(message) - max(1, len(message) // 8))]
        return json.dumps({**body, "message": message})

    @classmethod
    def from_json(cls, text: str) -> Refusal | None:
        """A termination message written by `to_json`; None for any other text."""
        try:
            body = json.loads(text)
        except ValueError:
            return None
        if not isinstance(body, dict) or body.get("reason") not in REASONS:
            return None

        def number(key: str) -> int | None:
            value = body.get(key)
            return value if isinstance(value, int) and not isinstance(value, bool) else None

        return cls(
            str(body["reason"]),
            str(body.get("message") or ""),
            max_model_len=number("maxModelLen"),
            kv_cache_tokens=number("kvCacheTokens"),
            fits_max_model_len=number("fitsMaxModelLen"),
        )
