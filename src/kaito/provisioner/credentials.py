"""Azure credentials: a fixed token for the ARM simulator and tests, and the real chain for real clusters."""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any

from azure.core.credentials import AccessToken, AccessTokenInfo, TokenRequestOptions
from azure.core.credentials_async import AsyncTokenCredential

_TEN_YEARS = 10 * 365 * 24 * 3600


class StaticTokenCredential:
    """Hands out one bearer token, valid for years, for any scope (implements azure-core's AsyncTokenCredential)."""

    def __init__(self, token: str) -> None:
        self.token = token
        self._expires_on = int(time.time()) + _TEN_YEARS

    async def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        return AccessToken(self.token, self._expires_on)

    async def get_token_info(self, *scopes: str, options: TokenRequestOptions | None = None) -> AccessTokenInfo:
        return AccessTokenInfo(self.token, self._expires_on)

    async def close(self) -> None:
        return None

    async def __aenter__(self) -> StaticTokenCredential:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        await self.close()


def default_credential(*, managed_identity_client_id: str | None = None) -> AsyncTokenCredential:
    """azure-identity's DefaultAzureCredential (async): workload identity (AZURE_CLIENT_ID, AZURE_TENANT_ID,
    AZURE_FEDERATED_TOKEN_FILE), then environment, managed identity and developer logins, in that order."""
    from azure.identity.aio import DefaultAzureCredential  # imported late: only real clusters need it

    return DefaultAzureCredential(managed_identity_client_id=managed_identity_client_id)
