"""One read of a Hugging Face model's sizing facts from a hub, through huggingface_hub (blocking: run it off-loop).

Two requests: the model's info with its file list (the commit the hub resolved the revision to, gating, the
safetensors files' sizes and parameter count), then config.json at that commit. A sharded checkpoint whose file
list carries no sizes adds a third, its safetensors index. Nothing is written to disk.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import httpx2
from huggingface_hub import HfApi, get_session, hf_hub_url, hf_raise_for_status
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from pydantic import ValidationError

from kaito.api.modelconfig import ModelDescriptionError, config_facts
from kaito.api.modelimage import ModelImageConfig
from kaito.workspaces.modelsource import HubModel

PUBLIC_HUB = "https://huggingface.co"
INDEX_FILE = "model.safetensors.index.json"
MAX_JSON_BYTES = 16 * 1024 * 1024
_BYTES_PER_PARAMETER = {"bfloat16": 2, "float16": 2, "float32": 4}

Problem = Literal["unreachable", "repository", "revision", "gated", "hub", "config"]


class HubError(Exception):
    """The hub could not give the model's facts; `problem` says which field to blame, the message is the hub's."""

    def __init__(self, problem: Problem, message: str) -> None:
        super().__init__(" ".join(message.split()))
        self.problem = problem


def read_hub_model(
    repository: str, revision: str | None, *, endpoint: str, token: str | None, timeout: float
) -> HubModel:
    """The facts of `repository` at `revision` (the default branch when None), pinned to the commit read."""
    auth: str | bool = token or False  # never a token saved on this machine: only the one the workspace names
    try:
        info = HfApi(endpoint=endpoint).model_info(
            repository, revision=revision, files_metadata=True, timeout=timeout, token=auth
        )
        commit = info.sha
        if not commit:
            raise HubError("hub", f"the hub at {endpoint} did not say which commit of {repository} it read")
        gated = bool(info.gated) or bool(info.private)
        if gated and token is None:
            raise HubError("gated", f"{repository} is gated on {endpoint}: downloading it needs a token")
        config = _json(repository, "config.json", commit, endpoint=endpoint, token=auth, timeout=timeout)
        sizes = {s.rfilename: s.size for s in info.siblings or [] if s.rfilename.endswith(".safetensors")}
        if not sizes:
            raise HubError("config", f"{repository}@{commit} has no *.safetensors files (kaito sizes safetensors)")
        if all(size is not None for size in sizes.values()):
            weight_bytes = sum(size or 0 for size in sizes.values())
        else:
            index = _json(repository, INDEX_FILE, commit, endpoint=endpoint, token=auth, timeout=timeout)
            weight_bytes = int((index.get("metadata") or {}).get("total_size") or 0)
    except GatedRepoError as exc:
        raise HubError("gated", str(exc)) from None
    except RevisionNotFoundError as exc:
        raise HubError("revision", str(exc)) from None
    except RepositoryNotFoundError as exc:
        raise HubError("repository", str(exc)) from None
    except HfHubHTTPError as exc:
        raise HubError("hub", str(exc)) from None
    except (httpx2.HTTPError, OSError) as exc:
        raise HubError("unreachable", f"{type(exc).__name__}: {exc}") from None
    stored = dict(info.safetensors.parameters) if info.safetensors else {}
    source = f"{repository}@{commit} config.json"
    try:
        facts = config_facts(config, source=source, stored_dtypes=set(stored))
        if info.safetensors and info.safetensors.total:
            parameters = info.safetensors.total
        else:  # no safetensors metadata from this hub: the weights' bytes at the checkpoint's dtype
            parameters = weight_bytes // _BYTES_PER_PARAMETER[facts["dtype"]]
        facts.update(
            parameters_b=max(round(parameters / 1e9, 3), 0.001),
            weight_bytes=weight_bytes,
            source_repository=repository,
            revision=commit,
        )
        return HubModel(config=ModelImageConfig.model_validate(facts), gated=gated)
    except ModelDescriptionError as exc:
        raise HubError("config", str(exc)) from None
    except ValidationError as exc:
        raise HubError("config", f"{source} does not size a model: {exc}") from None


def check_token(repository: str, commit: str, *, endpoint: str, token: str, timeout: float) -> None:
    """HubError unless `token` opens `repository` at `commit`: its config.json read with that token alone."""
    try:
        _json(repository, "config.json", commit, endpoint=endpoint, token=token, timeout=timeout)
    except GatedRepoError as exc:
        raise HubError("gated", str(exc)) from None
    except (RepositoryNotFoundError, RevisionNotFoundError) as exc:  # a private repository hides from a wrong token
        raise HubError("gated", str(exc)) from None
    except HfHubHTTPError as exc:
        raise HubError("hub", str(exc)) from None
    except (httpx2.HTTPError, OSError) as exc:
        raise HubError("unreachable", f"{type(exc).__name__}: {exc}") from None


def _json(
    repository: str, filename: str, commit: str, *, endpoint: str, token: str | bool, timeout: float
) -> dict[str, Any]:
    """A small JSON file of the repository, read into memory (hf_hub_download would write a cache on disk)."""
    url = hf_hub_url(repository, filename, revision=commit, endpoint=endpoint)
    headers = {"Authorization": f"Bearer {token}"} if isinstance(token, str) else {}
    response = get_session().get(url, headers=headers, timeout=timeout, follow_redirects=True)
    hf_raise_for_status(response)
    if len(response.content) > MAX_JSON_BYTES:
        raise HubError("config", f"{repository}@{commit} {filename} is {len(response.content)} bytes: not a config")
    try:
        body = json.loads(response.content)
    except ValueError as exc:
        raise HubError("config", f"{repository}@{commit} {filename} is not JSON ({exc})") from None
    if not isinstance(body, dict):
        raise HubError("config", f"{repository}@{commit} {filename} is not a JSON object")
    return body
