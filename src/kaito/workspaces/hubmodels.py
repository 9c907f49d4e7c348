"""Hugging Face models the catalog lacks, read from the hub before planning, pinned and kept.

Admission, the controller and `kaito render` size a preset named by an `org/model` id from the model's own
config. The read happens before the one planning call (which reads nothing over the network), within a short
time, and is kept per (id, revision) with the commit each id's revision resolved to, so admission and the
controller in one manager plan from the same numbers and a reconcile never asks the hub twice. The plan in
status records the model it was sized from (`status.plan.hub`), which is read back first: after a restart the
workspace keeps its pinned revision and numbers without asking the hub. A failure is not kept (the user may add
the Secret, or the hub come back) and its words are the hub's, on the field to change. A gated model kept from
one workspace's read is checked against each other workspace's own token once (its config.json read with that
token), so a token the hub refuses is refused at admission, not later in the pods.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from pydantic import ValidationError

from kaito.api.fielderrors import FieldError
from kaito.api.workspace import Workspace
from kaito.presets.catalog import Catalog
from kaito.workspaces.hubread import PUBLIC_HUB, HubError, check_token, read_hub_model
from kaito.workspaces.modelsource import HubModel, HubRead, hub_id, preset_of, split_hub_id

FETCH_TIMEOUT_S = 4.0  # each request; admission answers within the API server's 10 s webhook timeout
KEPT = 256
TOKEN_KEY = "HF_TOKEN"

TokenReader = Callable[[str, str], Awaitable[str | None]]
"""(namespace, name) -> the HF_TOKEN in that Secret, or None when there is no such Secret or key."""


class Reader(Protocol):
    """`kaito.workspaces.hubread.read_hub_model`, unless a caller hands in another."""

    def __call__(
        self, repository: str, revision: str | None, *, endpoint: str, token: str | None, timeout: float
    ) -> HubModel: ...


class TokenCheck(Protocol):
    """`kaito.workspaces.hubread.check_token`, unless a caller hands in another."""

    def __call__(self, repository: str, commit: str, *, endpoint: str, token: str, timeout: float) -> None: ...


class HubModels:
    """The hub models read (the last `KEPT`), each id's pinned revision, the tokens seen to open a gated one, and
    the reads themselves (blocking)."""

    def __init__(
        self,
        *,
        endpoint: str | None = None,
        timeout: float = FETCH_TIMEOUT_S,
        reader: Reader = read_hub_model,
        token_check: TokenCheck = check_token,
    ) -> None:
        self.endpoint = (endpoint or PUBLIC_HUB).rstrip("/")
        self.timeout = timeout
        self.reader = reader
        self.token_check = token_check
        self._opened: OrderedDict[tuple[str, str, str], None] = OrderedDict()  # (id, commit, token's sha256)
        self.reads = 0  # models read from the hub, for tests and metrics
        self._pinned: dict[tuple[str, str], str] = {}  # (id, revision asked, "" for the default) -> commit
        self._kept: OrderedDict[tuple[str, str], HubModel] = OrderedDict()  # (id, commit) -> model
        self._lock = threading.Lock()

    def known(self, repository: str, revision: str | None) -> HubModel | None:
        key = repository.lower()
        with self._lock:
            commit = self._pinned.get((key, revision or ""), revision or "")
            model = self._kept.get((key, commit))
            if model is not None:
                self._kept.move_to_end((key, commit))
            return model

    def remember(self, model: HubModel, revision: str | None) -> None:
        """Keep `model`, read for `revision` (None: the default branch), and pin that revision to its commit."""
        key = model.config.source_repository.lower()
        with self._lock:
            self._pinned[(key, revision or "")] = model.config.revision
            self._kept[(key, model.config.revision)] = model
            self._kept.move_to_end((key, model.config.revision))
            while len(self._kept) > KEPT:
                self._kept.popitem(last=False)
            if len(self._pinned) > 4 * KEPT:
                self._pinned.pop(next(iter(self._pinned)))

    def fetch(self, repository: str, revision: str | None, token: str | None) -> HubModel:
        """The model (kept, else read and kept); HubError says why it cannot be read."""
        if (model := self.known(repository, revision)) is not None:
            return model
        self.reads += 1
        model = self.reader(repository, revision, endpoint=self.endpoint, token=token, timeout=self.timeout)
        self.remember(model, revision)
        if token is not None:
            self._open(model, token)
        return model

    def check(self, model: HubModel, token: str) -> None:
        """HubError unless `token` opens gated `model` (asked of the hub once per token; nothing for an open one)."""
        if not model.gated or self._opened_by(model, token) in self._opened:
            return
        repository, commit = model.config.source_repository, model.config.revision
        self.token_check(repository, commit, endpoint=self.endpoint, token=token, timeout=self.timeout)
        self._open(model, token)

    def _open(self, model: HubModel, token: str) -> None:
        with self._lock:
            self._opened[self._opened_by(model, token)] = None
            while len(self._opened) > KEPT:
                self._opened.popitem(last=False)

    @staticmethod
    def _opened_by(model: HubModel, token: str) -> tuple[str, str, str]:
        digest = hashlib.sha256(token.encode()).hexdigest()  # the token itself is not kept
        return model.config.source_repository.lower(), model.config.revision, digest


async def hub_models_for(
    raw: Mapping[str, Any], *, catalog: Catalog, hub: HubModels | None, read_token: TokenReader
) -> dict[str, HubRead]:
    """What planning `raw` needs from the hub: its preset's model (from status.plan, kept, or read), or why not."""
    try:
        ws = Workspace.parse(raw)
    except ValidationError:
        return {}  # the rules say what is wrong with it
    name = hub_id(ws, catalog)
    if name is None or hub is None:
        return {}
    preset, spec = preset_of(ws)
    assert preset is not None
    name_field, secret_field = f"{spec}.preset.name", f"{spec}.preset.presetOptions.modelAccessSecret"
    repository, revision = split_hub_id(name)
    org, _, model_name = repository.partition("/")
    if not org or not model_name or "/" in model_name:
        return {name: FieldError(name_field, f"{name!r} is not a Hugging Face id (org/model or org/model@revision)")}
    if (recorded := _recorded(ws, repository)) is not None:
        hub.remember(recorded, revision)
        return {name: recorded}
    kept = hub.known(repository, revision)
    if kept is not None and not kept.gated:
        return {name: kept}
    secret = preset.preset_options.model_access_secret if preset.preset_options else None
    if kept is not None and secret is None:
        return {name: kept}  # the rules refuse a gated model without a Secret, naming the field
    token = await read_token(ws.namespace, secret) if secret else None
    if secret and token is None:
        return {name: FieldError(secret_field, f"Secret {secret!r} in {ws.namespace} not found or has no {TOKEN_KEY}")}
    try:
        if kept is not None and token is not None:
            await asyncio.wait_for(asyncio.to_thread(hub.check, kept, token), 2 * hub.timeout)
            return {name: kept}
        read = asyncio.to_thread(hub.fetch, repository, revision, token)
        return {name: await asyncio.wait_for(read, 2 * hub.timeout)}
    except TimeoutError:
        return {name: FieldError(name_field, f"no answer from the hub at {hub.endpoint} within {2 * hub.timeout:.0f}s")}
    except HubError as exc:
        return {name: _refusal(exc, repository, secret, hub.endpoint, name_field, secret_field)}


def _recorded(ws: Workspace, repository: str) -> HubModel | None:
    """The model the plan in status was sized from, when it is this repository's and still reads."""
    plan = ws.status.plan if ws.status else None
    if plan is None or plan.hub is None or plan.hub.repository.lower() != repository.lower():
        return None
    try:
        return HubModel.from_status(plan.hub)
    except ValueError:
        return None


def _refusal(
    exc: HubError, repository: str, secret: str | None, endpoint: str, name_field: str, secret_field: str
) -> FieldError:
    if exc.problem == "gated" and secret is None:
        gated = f"{repository} is gated on {endpoint}: name a Secret holding {TOKEN_KEY} ({exc})"
        return FieldError(secret_field, gated)
    if exc.problem == "gated":
        return FieldError(secret_field, f"the hub refused the {TOKEN_KEY} in Secret {secret!r} for {repository}: {exc}")
    return FieldError(name_field, f"cannot read {repository} from the hub at {endpoint}: {exc}")
