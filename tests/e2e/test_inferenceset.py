"""InferenceSets on the simulated AKS cluster through kubectl: children, GPU nodes, scaling, replacement, deletion."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import yaml

from kaito.api.inferenceset import ANNOTATION_DEMAND, LABEL_GATEWAY, LABEL_SET
from tests.conftest import Kubectl
from tests.e2e.conftest import Operator, condition

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples/inference/inferenceset_phi_3.yaml"
NAME = "inferenceset-phi-3-mini"


def manifest(**spec: Any) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    doc["spec"].update(spec)
    return doc


async def apply(kubectl: Kubectl, doc: dict[str, Any], *, check: bool = True) -> Any:
    return await kubectl("apply", "-f", "-", stdin=yaml.safe_dump(doc), check=check)


async def items(kubectl: Kubectl, *args: str) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = (await kubectl("get", *args, "-o", "json")).json()["items"]
    return listed


async def children(kubectl: Kubectl) -> list[dict[str, Any]]:
    return await items(kubectl, "workspaces", "-l", f"{LABEL_SET}={NAME}")


def ready(ws: dict[str, Any]) -> bool:
    return condition(ws, "WorkspaceSucceeded").get("status") == "True" and not ws["metadata"].get("deletionTimestamp")


async def gpu_nodes(kubectl: Kubectl) -> list[dict[str, Any]]:
    nodes = await items(kubectl, "nodes")
    return [n for n in nodes if "nvidia.com/gpu" in (n["status"].get("capacity") or {})]


async def until(probe: Callable[[], Awaitable[bool]], what: str, within: float = 60) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while asyncio.get_running_loop().time() < deadline:
        if await probe():
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


async def ready_children(kubectl: Kubectl, count: int) -> None:
    async def probe() -> bool:
        listed = await children(kubectl)
        return len(listed) == count and all(ready(ws) for ws in listed) and len(await gpu_nodes(kubectl)) == count

    await until(probe, f"{count} Ready children on {count} GPU nodes")


async def nothing_left(kubectl: Kubectl) -> None:
    async def probe() -> bool:
        claims = await items(kubectl, "nodeclaims")
        return not await children(kubectl) and not claims and not await gpu_nodes(kubectl)

    await until(probe, "no child, NodeClaim or GPU node")


async def test_scale_to_three_and_to_zero_with_kubectl(kubectl: Kubectl, namespace: str, operator: Operator) -> None:
    await kubectl("apply", "-f", str(EXAMPLE))
    await ready_children(kubectl, 2)
    names = [ws["metadata"]["name"] for ws in await children(kubectl)]
    assert all(name.startswith(f"{NAME}-") and len(name) == len(NAME) + 6 for name in names)
    table = (await kubectl("get", "inferenceset")).stdout.splitlines()
    assert table[0].split() == ["NAME", "REPLICAS", "READY", "AGE"]
    assert table[1].split()[:3] == [NAME, "2", "2"]
    status = (await kubectl("get", "isets", NAME, "-o", "json")).json()["status"]
    assert status["selector"] == f"{LABEL_SET}={NAME}" and status["replicas"] == 2

    await kubectl("scale", "inferenceset", NAME, "--replicas=3")
    await ready_children(kubectl, 3)

    await kubectl("scale", "inferenceset", NAME, "--replicas=0")
    await nothing_left(kubectl)
    events = await items(kubectl, "events", "--field-selector", f"involvedObject.name={NAME}")
    assert {"ScaleOut", "ScaleToZero"} <= {e["reason"] for e in events}


async def test_the_endpoint_objects_carry_the_contracted_labels(
    kubectl: Kubectl, namespace: str, operator: Operator
) -> None:
    await apply(kubectl, manifest(replicas=0))

    async def made() -> bool:
        return (await kubectl("get", "deployment", f"{NAME}-gateway", check=False)).rc == 0

    await until(made, "the gateway Deployment")
    service = (await kubectl("get", "service", NAME, "-o", "json")).json()
    assert service["spec"]["selector"] == {LABEL_GATEWAY: NAME}
    assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [(80, 5000)]
    gateway = (await kubectl("get", "deployment", f"{NAME}-gateway", "-o", "json")).json()
    pod = gateway["spec"]["template"]
    assert gateway["spec"]["replicas"] == 2 and pod["metadata"]["labels"][LABEL_GATEWAY] == NAME
    [container] = pod["spec"]["containers"]
    assert container["command"] == [
        "kaito",
        "gateway",
        "--namespace",
        namespace,
        "--inferenceset",
        NAME,
        "--port",
        "5000",
    ]
    assert container["image"] == "kaito-runtime:0.1.0" and "nvidia.com/gpu" not in json.dumps(container)
    assert pod["spec"]["serviceAccountName"] == "kaito-gateway"
    await kubectl("get", "serviceaccount", "kaito-gateway")
    binding = (await kubectl("get", "rolebinding", "kaito-gateway", "-o", "json")).json()
    assert binding["roleRef"]["name"] == "kaito-gateway"
    for obj in (service, gateway):
        [owner] = obj["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["name"], owner["controller"]) == ("InferenceSet", NAME, True)


async def test_a_template_change_keeps_replicas_minus_one_ready(
    kubectl: Kubectl, namespace: str, operator: Operator
) -> None:
    await kubectl("apply", "-f", str(EXAMPLE))
    await ready_children(kubectl, 2)
    before = {ws["metadata"]["name"] for ws in await children(kubectl)}
    changed = manifest()
    changed["spec"]["template"]["metadata"] = {"labels": {"release": "two"}}
    await apply(kubectl, changed)
    samples = []
    deadline = asyncio.get_running_loop().time() + 90
    last: tuple[tuple[str, bool], ...] = ()
    while asyncio.get_running_loop().time() < deadline:
        listed = await children(kubectl)
        seen = tuple(sorted((ws["metadata"]["name"], ready(ws)) for ws in listed))
        if seen != last:  # every change observed is sampled
            last = seen
            samples.append(sum(ok for _, ok in seen))
        names = {ws["metadata"]["name"] for ws in listed}
        labelled = all(ws["metadata"]["labels"].get("release") == "two" for ws in listed)
        if len(listed) == 2 and not names & before and labelled and all(ready(ws) for ws in listed):
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError(f"the children were never all replaced: {last}")
    assert len(samples) > 3, samples
    assert min(samples) >= 1, f"ready children at each change: {samples}"


async def test_a_bad_template_is_refused_at_apply_naming_the_field(
    kubectl: Kubectl, namespace: str, operator: Operator
) -> None:
    await until(_webhook_registered(kubectl), "the webhooks")
    unknown = manifest()
    unknown["spec"]["template"]["inference"]["preset"]["name"] = "no-such-model"
    result = await apply(kubectl, unknown, check=False)
    assert result.rc != 0 and "spec.template.inference.preset.name" in result.stderr, result.stderr
    negative = await apply(kubectl, manifest(replicas=-1), check=False)
    assert negative.rc != 0 and "spec.replicas" in negative.stderr, negative.stderr
    duration = await apply(kubectl, manifest(autoscaling={"maxReplicas": 2, "scaleDownDelay": "soon"}), check=False)
    assert duration.rc != 0 and "spec.autoscaling.scaleDownDelay" in duration.stderr, duration.stderr
    assert (await kubectl("get", "inferencesets", "-o", "name")).stdout == ""


def _webhook_registered(kubectl: Kubectl) -> Callable[[], Awaitable[bool]]:
    async def probe() -> bool:
        listed = await kubectl("get", "validatingwebhookconfigurations", "-o", "name", namespaced=False)
        return "kaito-inferenceset-validating-webhook-configuration" in listed.stdout

    return probe


async def test_deleting_the_set_leaves_no_nodeclaim_or_gpu_node(
    kubectl: Kubectl, namespace: str, operator: Operator
) -> None:
    await apply(kubectl, manifest(replicas=1))
    await ready_children(kubectl, 1)
    await kubectl("delete", "inferenceset", NAME)
    await nothing_left(kubectl)


RFC3339 = "%Y-%m-%dT%H:%M:%SZ"


async def demand(kubectl: Kubectl, name: str) -> None:
    """Stamp `kaito.sh/demand` as a gateway does: the time of a held request, after the set's last scale (whose
    time has whole seconds), so it is newer."""
    status = (await kubectl("get", "inferenceset", name, "-o", "json")).json().get("status") or {}
    last = dt.datetime.fromisoformat(status["lastScaleTime"].replace("Z", "+00:00"))
    await asyncio.sleep(max(0.0, (last + dt.timedelta(seconds=1) - dt.datetime.now(dt.UTC)).total_seconds()))
    now = dt.datetime.now(dt.UTC).strftime(RFC3339)
    await kubectl("annotate", "--overwrite", "inferenceset", name, f"{ANNOTATION_DEMAND}={now}")


async def test_demand_brings_a_set_at_zero_back_to_one_replica(
    kubectl: Kubectl, namespace: str, operator: Operator
) -> None:
    await apply(kubectl, manifest(replicas=0, autoscaling={"minReplicas": 0, "maxReplicas": 2}))

    async def scaled_to_zero() -> bool:
        status = (await kubectl("get", "inferenceset", NAME, "-o", "json")).json().get("status") or {}
        return status.get("lastScaleReason") == "ScaleToZero"

    await until(scaled_to_zero, "the set's scale to zero on record")
    status = (await kubectl("get", "inferenceset", NAME, "-o", "json")).json()["status"]
    last = dt.datetime.fromisoformat(status["lastScaleTime"].replace("Z", "+00:00"))
    stale = (last - dt.timedelta(seconds=5)).strftime(RFC3339)
    await kubectl("annotate", "inferenceset", NAME, f"{ANNOTATION_DEMAND}={stale}")
    for _ in range(10):  # a demand older than the scale to zero is not one
        assert (await kubectl("get", "inferenceset", NAME, "-o", "jsonpath={.spec.replicas}")).stdout == "0"
        await asyncio.sleep(0.1)
    await demand(kubectl, NAME)
    await ready_children(kubectl, 1)
    set_now = (await kubectl("get", "inferenceset", NAME, "-o", "json")).json()
    assert set_now["spec"]["replicas"] == 1 and set_now["status"]["lastScaleReason"] == "ScaleFromZero"
    events = await items(kubectl, "events", "--field-selector", f"involvedObject.name={NAME}")
    assert [e["reason"] for e in events].count("ScaleFromZero") == 1
