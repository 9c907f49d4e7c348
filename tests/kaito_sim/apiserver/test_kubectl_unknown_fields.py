"""kubectl against the simulated server: unknown fields in built-in kinds, as strict decoding treats them."""

from __future__ import annotations

from tests.conftest import Kubectl
from tests.kaito_sim.manifests import deployment


async def test_unknown_container_field_rejected_under_strict_and_dropped_otherwise(kubectl: Kubectl) -> None:
    typo = deployment("typo").replace("image: nginx:1.27\n", "image: nginx:1.27\n          imagee: x\n")
    out = await kubectl("apply", "-f", "-", stdin=typo, check=False)
    assert out.rc == 1 and 'unknown field "spec.template.spec.containers[0].imagee"' in out.stderr
    assert 'Deployment in version "v1" cannot be handled as a Deployment: strict decoding error' in out.stderr
    await kubectl("apply", "--validate=false", "-f", "-", stdin=typo)  # fieldValidation=Ignore
    obj = (await kubectl("get", "deploy", "typo", "-o", "json")).json()
    container = obj["spec"]["template"]["spec"]["containers"][0]
    assert "imagee" not in container and container["image"] == "nginx:1.27"
