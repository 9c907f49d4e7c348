"""The gateway's identity in each namespace that has an InferenceSet: ServiceAccount `kaito-gateway`, bound to the
`kaito-gateway` ClusterRole that deploy/ installs, so the gateway reads the set's Workspaces and Services there."""

from __future__ import annotations

from kaito.controllers.inferenceset_build import build_gateway_identity
from kaito.runtime import errors
from kaito.runtime.client import Client
from kaito.runtime.kinds import SERVICE_ACCOUNT, Kind

ROLE_BINDING = Kind("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings")


class GatewayIdentity:
    """Creates the pair once per namespace per manager run (an existing one is kept as it is).

    They are shared by every set in the namespace, so no set owns them; they stay when the last set goes,
    as a namespace's `default` ServiceAccount does. Neither is cached: one create each, then memory.
    """

    def __init__(self, client: Client) -> None:
        self.client = client
        self._done: set[str] = set()

    async def ensure(self, namespace: str) -> None:
        if namespace in self._done:
            return
        account, binding = build_gateway_identity(namespace)
        await errors.ignore_already_exists(self.client.create(SERVICE_ACCOUNT, account))
        await errors.ignore_already_exists(self.client.create(ROLE_BINDING, binding))
        self._done.add(namespace)
