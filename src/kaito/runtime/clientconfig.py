"""Where the manager finds its cluster: a kubeconfig or the pod's service account, decided like controller-runtime."""

from __future__ import annotations

import os
from collections.abc import Mapping

from kaito.runtime.k8slib import (
    SERVICE_CERT_FILENAME,
    SERVICE_HOST_ENV_NAME,
    SERVICE_TOKEN_FILENAME,
    Configuration,
    InClusterConfigLoader,
    load_kube_config,
)

DEFAULT_KUBECONFIG = "~/.kube/config"
INCLUSTER_TOKEN_PATH = SERVICE_TOKEN_FILENAME
INCLUSTER_CA_PATH = SERVICE_CERT_FILENAME


async def load_configuration(
    *,
    kubeconfig: str | os.PathLike[str] | None = None,
    context: str | None = None,
    incluster_token_path: str | os.PathLike[str] = INCLUSTER_TOKEN_PATH,
    incluster_ca_path: str | os.PathLike[str] = INCLUSTER_CA_PATH,
    environ: Mapping[str, str] | None = None,
) -> Configuration:
    """A kubernetes-asyncio `Configuration`, tried in controller-runtime's order.

    An explicit `kubeconfig`, then `$KUBECONFIG`, then the in-cluster service account when
    `KUBERNETES_SERVICE_HOST` is set, then `~/.kube/config`.
    """
    env = os.environ if environ is None else environ
    configuration = Configuration()
    path = str(kubeconfig) if kubeconfig is not None else env.get("KUBECONFIG")
    if not path and env.get(SERVICE_HOST_ENV_NAME):
        # The loader re-reads the token file about once a minute, so projected token rotation is picked up.
        loader = InClusterConfigLoader(
            token_filename=str(incluster_token_path),
            cert_filename=str(incluster_ca_path),
            environ=dict(env),
        )
        loader.load_and_set(configuration)
        return configuration
    config_file = path or DEFAULT_KUBECONFIG  # the loader expands `~` and splits `:`-separated lists
    # persist_config=False: a token refresh must never rewrite the user's kubeconfig behind their back.
    await load_kube_config(
        config_file=config_file, context=context, client_configuration=configuration, persist_config=False
    )
    return configuration
