"""A stand-in Hugging Face hub on loopback: the API paths huggingface_hub 2.x reads a model through, nothing more.

`GET /api/models/{org}/{name}[/revision/{rev}]` (model_info, with `?blobs=true` for the file sizes) and
`GET|HEAD /{org}/{name}/resolve/{rev}/{file}` (hf_hub_download, file metadata and revision resolution). Errors
carry the `X-Error-Code` header the hub sends, which huggingface_hub turns into its typed errors: a missing repo
(401 RepoNotFound), a missing revision (404 RevisionNotFound), a missing file (404 EntryNotFound), a gated repo's
files without the right token (401/403 GatedRepo). Every request is recorded, so tests count hub calls.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web


@dataclass
class HubRepo:
    """One model repository: its config.json and weight files (name -> bytes) at one commit."""

    config: dict[str, Any]
    weights: dict[str, int]
    parameters: dict[str, int] | None = None  # safetensors parameter counts by dtype; None: the hub has none
    gated: bool = False
    token: str | None = None  # the token that opens a gated repo
    commit: str = ""
    branches: dict[str, str] = field(default_factory=dict)
    sizes_listed: bool = True  # whether the file list carries sizes (a mirror may not)


class StandInHub:
    def __init__(self) -> None:
        self.repos: dict[str, HubRepo] = {}
        self.requests: list[str] = []  # "METHOD path" of every request
        self.url = ""
        self._runner: web.AppRunner | None = None

    def add(self, repo_id: str, repo: HubRepo) -> HubRepo:
        repo.commit = repo.commit or hashlib.sha1(f"{repo_id}{json.dumps(repo.config)}".encode()).hexdigest()
        repo.branches.setdefault("main", repo.commit)
        self.repos[repo_id.lower()] = repo
        return repo

    def calls(self, repo_id: str) -> int:
        """Requests made about `repo_id` (its info or its files)."""
        return sum(1 for line in self.requests if f"/{repo_id}/" in line or line.endswith(f"/{repo_id}"))

    async def start(self) -> str:
        app = web.Application()
        app.router.add_get("/api/models/{org}/{name}", self._info)
        app.router.add_get("/api/models/{org}/{name}/revision/{revision}", self._info)
        app.router.add_route("*", "/{org}/{name}/resolve/{revision}/{filename:.+}", self._file)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _find(self, request: web.Request) -> tuple[str, HubRepo, str]:
        self.requests.append(f"{request.method} {request.path}")
        repo_id = f"{request.match_info['org']}/{request.match_info['name']}"
        repo = self.repos.get(repo_id.lower())
        if repo is None:
            raise _error(401, "RepoNotFound", "Repository not found")
        revision = request.match_info.get("revision") or "main"
        commit = repo.branches.get(revision, revision if revision == repo.commit else "")
        if not commit:
            raise _error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        return repo_id, repo, commit

    async def _info(self, request: web.Request) -> web.Response:
        repo_id, repo, commit = self._find(request)
        blobs = request.query.get("blobs") == "True" or request.query.get("blobs") == "true"
        files = {"config.json": len(json.dumps(repo.config)), **repo.weights}
        siblings = [
            {"rfilename": name, **({"size": size} if blobs and repo.sizes_listed else {})}
            for name, size in files.items()
        ]
        body: dict[str, Any] = {
            "id": repo_id,
            "sha": commit,
            "private": False,
            "gated": "manual" if repo.gated else False,
            "siblings": siblings,
        }
        if repo.parameters is not None:
            body["safetensors"] = {"parameters": repo.parameters, "total": sum(repo.parameters.values())}
        return web.json_response(body)

    async def _file(self, request: web.Request) -> web.Response:
        _, repo, commit = self._find(request)
        if repo.gated:
            given = request.headers.get("Authorization", "").removeprefix("Bearer ")
            if given != repo.token:
                raise _error(403 if given else 401, "GatedRepo", "Access to this model is restricted")
        filename = request.match_info["filename"]
        if filename == "config.json":
            payload = json.dumps(repo.config).encode()
        elif filename == "model.safetensors.index.json":
            payload = json.dumps({"metadata": {"total_size": sum(repo.weights.values())}, "weight_map": {}}).encode()
        else:
            raise _error(404, "EntryNotFound", f"{filename} not found")
        headers = {"ETag": f'"{hashlib.sha1(payload).hexdigest()}"', "X-Repo-Commit": commit}
        if request.method == "HEAD":
            return web.Response(headers={**headers, "Content-Length": str(len(payload))})
        return web.Response(body=payload, headers=headers, content_type="application/json")


def _error(status: int, code: str, message: str) -> web.HTTPException:
    headers = {"X-Error-Code": code, "X-Error-Message": message}
    kinds: dict[int, type[web.HTTPException]] = {
        401: web.HTTPUnauthorized,
        403: web.HTTPForbidden,
        404: web.HTTPNotFound,
    }
    return kinds[status](headers=headers, text=json.dumps({"error": message}), content_type="application/json")


def llama_config(**changes: Any) -> dict[str, Any]:
    """A small Llama-style config.json (GQA: 8 heads, 2 KV heads), with `changes` applied."""
    config: dict[str, Any] = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "num_hidden_layers": 4,
        "num_attention_heads": 8,
        "num_key_value_heads": 2,
        "hidden_size": 512,
        "intermediate_size": 1376,
        "vocab_size": 32000,
        "max_position_embeddings": 4096,
        "torch_dtype": "bfloat16",
    }
    config.update(changes)
    return config


@pytest.fixture
async def hub() -> AsyncIterator[StandInHub]:
    server = StandInHub()
    await server.start()
    yield server
    await server.stop()
