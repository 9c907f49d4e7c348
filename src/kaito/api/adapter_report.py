"""What `kaito serve` says about each adapter of its engine config, on `GET /v1/adapters`; the controller reads it.

    {"adapters": [{"name", "image", "digest", "state": "Pulling" | "Loaded" | "Failed", "message", "retrying"}]}

one entry per adapter in the config the server follows now; `message` carries the registry's or the loader's words,
and `retrying` says that a Failed pull will be tried again (the controller keeps reading until it is not).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

ADAPTERS_PATH = "/v1/adapters"
AdapterState = Literal["Pulling", "Loaded", "Failed"]
PULLING: AdapterState = "Pulling"
LOADED: AdapterState = "Loaded"
FAILED: AdapterState = "Failed"


class AdapterReport(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str
    image: str | None = None
    digest: str | None = None
    state: AdapterState
    message: str = ""
    retrying: bool = False


class AdapterReports(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    adapters: list[AdapterReport]
