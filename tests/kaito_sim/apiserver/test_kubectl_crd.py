"""kubectl against the simulated server: CRDs, custom resources, printer columns, apply in both modes."""

from __future__ import annotations

import asyncio

from kaito_sim.server import SimServer
from tests.conftest import Kubectl
from tests.kaito_sim.manifests import CARD, CRD, card


async def install_crd(kubectl: Kubectl) -> None:
    await kubectl("apply", "-f", "-", stdin=CRD, namespaced=False)


async def test_apply_crd_then_resource_prints_columns(kubectl: Kubectl) -> None:
    out = await kubectl("apply", "-f", "-", stdin=CRD, namespaced=False)
    assert "customresourcedefinition.apiextensions.k8s.io/modelcards.demo.kaito.sh created" in out.stdout
    out = await kubectl("apply", "-f", "-", stdin=CARD)
    assert "modelcard.demo.kaito.sh/phi-4-mini created" in out.stdout
    table = (await kubectl("get", "modelcards")).stdout.splitlines()
    assert table[0].split() == ["NAME", "MODEL", "GPUS", "READY", "AGE"]
    assert table[1].split()[:3] == ["phi-4-mini", "phi-4-mini-instruct", "1"]  # gpus defaulted by the schema
    wide = (await kubectl("get", "mc", "-o", "wide")).stdout.splitlines()
    assert wide[0].split()[-1] == "INSTANCE" and wide[1].split()[-1] == "Standard_NC24ads_A100_v4"


async def test_crd_reports_established(kubectl: Kubectl) -> None:
    await install_crd(kubectl)
    crd = (await kubectl("get", "crd", "modelcards.demo.kaito.sh", "-o", "json", namespaced=False)).json()
    conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert conditions == {"Established": "True", "NamesAccepted": "True"}
    await kubectl(
        "wait", "--for=condition=Established", "crd/modelcards.demo.kaito.sh", "--timeout=5s", namespaced=False
    )


async def test_reapply_configures_and_unchanged(kubectl: Kubectl) -> None:
    await install_crd(kubectl)
    await kubectl("apply", "-f", "-", stdin=card("c1", gpus=2))
    rv = (await kubectl("get", "mc", "c1", "-o", "json")).json()["metadata"]["resourceVersion"]
    out = await kubectl("apply", "-f", "-", stdin=card("c1", gpus=2))
    assert "modelcard.demo.kaito.sh/c1 unchanged" in out.stdout
    assert (await kubectl("get", "mc", "c1", "-o", "json")).json()["metadata"]["resourceVersion"] == rv
    out = await kubectl("apply", "-f", "-", stdin=card("c1", gpus=4))
    assert "configured" in out.stdout
    obj = (await kubectl("get", "mc", "c1", "-o", "json")).json()
    assert obj["spec"]["gpus"] == 4 and obj["metadata"]["generation"] == 2
    # Dropping the field from the manifest removes it; the schema default then fills it back in.
    await kubectl("apply", "-f", "-", stdin=card("c1"))
    assert (await kubectl("get", "mc", "c1", "-o", "json")).json()["spec"]["gpus"] == 1


async def test_server_side_apply_and_migration_from_client_side(kubectl: Kubectl) -> None:
    await install_crd(kubectl)
    out = await kubectl("apply", "--server-side", "-f", "-", stdin=card("ssa", gpus=2))
    assert "modelcard.demo.kaito.sh/ssa serverside-applied" in out.stdout
    obj = (await kubectl("get", "mc", "ssa", "-o", "json", "--show-managed-fields")).json()
    managers = {m["manager"]: m["operation"] for m in obj["metadata"]["managedFields"]}
    assert managers == {"kubectl": "Apply"}
    await kubectl("apply", "-f", "-", stdin=card("csa", gpus=2))
    # Taking over a client-side-applied object with the same manifest moves ownership without conflicts.
    out = await kubectl("apply", "--server-side", "-f", "-", stdin=card("csa", gpus=2))
    assert "serverside-applied" in out.stdout
    obj = (await kubectl("get", "mc", "csa", "-o", "json", "--show-managed-fields")).json()
    owners = {m["manager"]: m for m in obj["metadata"]["managedFields"]}
    assert "f:gpus" in str(owners["kubectl"]["fieldsV1"])
    assert "f:gpus" not in str(owners.get("kubectl-client-side-apply", {}).get("fieldsV1", {}))
    await kubectl("apply", "--server-side", "-f", "-", stdin=card("csa", gpus=3))
    obj = (await kubectl("get", "mc", "csa", "-o", "json")).json()
    assert obj["spec"] == {"model": "phi-4", "gpus": 3}


async def test_server_side_apply_conflict_names_field(kubectl: Kubectl) -> None:
    await install_crd(kubectl)
    await kubectl("apply", "--server-side", "-f", "-", stdin=card("c2", gpus=2))
    out = await kubectl(
        "apply", "--server-side", "--field-manager=other", "-f", "-", stdin=card("c2", gpus=5), check=False
    )
    assert out.rc != 0
    assert 'conflict with "kubectl"' in out.stderr and ".spec.gpus" in out.stderr
    await kubectl(
        "apply", "--server-side", "--field-manager=other", "--force-conflicts", "-f", "-", stdin=card("c2", gpus=5)
    )
    assert (await kubectl("get", "mc", "c2", "-o", "json")).json()["spec"]["gpus"] == 5


async def test_schema_rejection_names_each_field(kubectl: Kubectl) -> None:
    await install_crd(kubectl)
    bad = "apiVersion: demo.kaito.sh/v1\nkind: ModelCard\nmetadata: {name: bad}\nspec: {gpus: 20, model: 'Bad_Name'}\n"
    out = await kubectl("apply", "-f", "-", stdin=bad, check=False)
    assert out.rc == 1
    assert 'The ModelCard "bad" is invalid' in out.stderr
    assert "spec.gpus" in out.stderr and "spec.model" in out.stderr
    missing = "apiVersion: demo.kaito.sh/v1\nkind: ModelCard\nmetadata: {name: bad2}\nspec: {gpus: 1}\n"
    out = await kubectl("apply", "-f", "-", stdin=missing, check=False)
    assert "spec.model: Required value" in out.stderr


async def test_unknown_field_rejected_under_strict_validation(kubectl: Kubectl) -> None:
    await install_crd(kubectl)
    extra = card("x1") + "  color: blue\n"
    out = await kubectl("apply", "-f", "-", stdin=extra, check=False)
    assert out.rc == 1 and 'unknown field "spec.color"' in out.stderr
    await kubectl("apply", "--validate=false", "-f", "-", stdin=extra)
    assert "color" not in (await kubectl("get", "mc", "x1", "-o", "json")).json()["spec"]


async def test_wait_for_condition_set_later(kubectl: Kubectl) -> None:
    await install_crd(kubectl)
    await kubectl("apply", "-f", "-", stdin=card("w1"))
    waiter = asyncio.create_task(kubectl("wait", "--for=condition=Ready", "mc/w1", "--timeout=20s"))
    await asyncio.sleep(1.0)
    assert not waiter.done()
    status = (
        '{"status":{"conditions":[{"type":"Ready","status":"True","reason":"Up","message":"serving",'
        '"observedGeneration":1,"lastTransitionTime":"2026-01-01T00:00:00Z"}]}}'
    )
    await kubectl("patch", "mc", "w1", "--subresource=status", "--type=merge", "-p", status)
    out = await waiter
    assert "modelcard.demo.kaito.sh/w1 condition met" in out.stdout
    # A status write never bumps generation; a spec write does.
    obj = (await kubectl("get", "mc", "w1", "-o", "json")).json()
    assert obj["metadata"]["generation"] == 1 and obj["status"]["conditions"][0]["status"] == "True"


async def test_wait_times_out_when_condition_stale(kubectl: Kubectl) -> None:
    await install_crd(kubectl)
    await kubectl("apply", "-f", "-", stdin=card("w2"))
    await kubectl("apply", "-f", "-", stdin=card("w2", gpus=2))  # generation 2
    stale = (
        '{"status":{"conditions":[{"type":"Ready","status":"True","reason":"Up","message":"old",'
        '"observedGeneration":1,"lastTransitionTime":"2026-01-01T00:00:00Z"}]}}'
    )
    await kubectl("patch", "mc", "w2", "--subresource=status", "--type=merge", "-p", stale)
    out = await kubectl("wait", "--for=condition=Ready", "mc/w2", "--timeout=2s", check=False)
    assert out.rc == 1 and "timed out" in out.stderr


async def test_status_ignored_on_main_resource_and_spec_on_status(kubectl: Kubectl) -> None:
    await install_crd(kubectl)
    await kubectl("apply", "-f", "-", stdin=card("s1"))
    await kubectl(
        "patch", "mc", "s1", "--type=merge", "-p", '{"status":{"conditions":[{"type":"Ready","status":"True"}]}}'
    )
    assert "status" not in (await kubectl("get", "mc", "s1", "-o", "json")).json()
    await kubectl("patch", "mc", "s1", "--subresource=status", "--type=merge", "-p", '{"spec":{"gpus":7}}')
    assert (await kubectl("get", "mc", "s1", "-o", "json")).json()["spec"]["gpus"] == 1


async def test_get_watch_streams_changes(kubectl: Kubectl, sim: SimServer) -> None:
    await install_crd(kubectl)
    await kubectl("apply", "-f", "-", stdin=card("g1"))
    proc = await kubectl.start("get", "mc", "-w", "--output-watch-events")
    assert proc.stdout is not None
    first = await asyncio.wait_for(proc.stdout.readline(), 10)
    header = first.decode().split()
    assert header[:3] == ["EVENT", "NAME", "MODEL"]
    assert (await asyncio.wait_for(proc.stdout.readline(), 10)).decode().split()[:2] == ["ADDED", "g1"]
    await kubectl("apply", "-f", "-", stdin=card("g2", model="llama"))
    line = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode().split()
    assert line[:3] == ["ADDED", "g2", "llama"]
    await kubectl("delete", "mc", "g1")
    line = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode().split()
    assert line[:2] == ["DELETED", "g1"]
    proc.terminate()
    await proc.wait()


async def test_label_and_field_selectors(kubectl: Kubectl) -> None:
    await install_crd(kubectl)
    for name, labels in [("a", "tier=gpu,team=x"), ("b", "tier=cpu,team=x"), ("c", "tier=gpu")]:
        await kubectl("apply", "-f", "-", stdin=card(name, labels=labels))

    async def names(*selector: str) -> list[str]:
        out = await kubectl("get", "mc", *selector, "-o", "jsonpath={.items[*].metadata.name}")
        return out.stdout.split()

    assert await names("-l", "tier=gpu") == ["a", "c"]
    assert await names("-l", "tier!=gpu") == ["b"]
    assert await names("-l", "tier in (cpu,tpu)") == ["b"]
    assert await names("-l", "tier notin (cpu)") == ["a", "c"]
    assert await names("-l", "team") == ["a", "b"]
    assert await names("-l", "!team") == ["c"]
    assert await names("-l", "tier=gpu,team=x") == ["a"]
    assert await names("--field-selector", "metadata.name=b") == ["b"]
    assert await names("--field-selector", "metadata.name!=b") == ["a", "c"]
    out = await kubectl("get", "mc", "--field-selector", "spec.model=x", check=False)
    assert out.rc == 1 and "field label not supported: spec.model" in out.stderr


async def test_paging_with_chunk_size(kubectl: Kubectl) -> None:
    await install_crd(kubectl)
    docs = "---\n".join(card(f"p{i:02d}") for i in range(7))
    await kubectl("apply", "-f", "-", stdin=docs)
    out = await kubectl("get", "mc", "--chunk-size=2", "-o", "name")
    assert out.stdout.split() == [f"modelcard.demo.kaito.sh/p{i:02d}" for i in range(7)]
    table = await kubectl("get", "mc", "--chunk-size=3")
    assert len(table.stdout.splitlines()) == 8


async def test_get_all_includes_custom_resources_in_category(kubectl: Kubectl) -> None:
    await install_crd(kubectl)
    await kubectl("apply", "-f", "-", stdin=card("all1"))
    out = await kubectl("get", "all")
    assert "modelcard.demo.kaito.sh/all1" in out.stdout


async def test_deleting_crd_removes_its_resources(kubectl: Kubectl) -> None:
    await install_crd(kubectl)
    await kubectl("apply", "-f", "-", stdin=card("d1"))
    await kubectl("delete", "crd", "modelcards.demo.kaito.sh", "--timeout=20s", namespaced=False)
    out = await kubectl("get", "crd", namespaced=False, check=False)
    assert "modelcards" not in out.stdout
    await install_crd(kubectl)
    out = await kubectl("get", "mc", check=False)
    assert "d1" not in out.stdout


async def test_malformed_crd_is_rejected_with_fields_named(kubectl: Kubectl) -> None:
    broken = CRD.replace("  group: demo.kaito.sh", "  group: nodots").replace(
        "        openAPIV3Schema:\n          type: object", "        openAPIV3Schema:\n          type: array"
    )
    out = await kubectl("apply", "-f", "-", stdin=broken, namespaced=False, check=False)
    assert out.rc == 1 and 'The CustomResourceDefinition "modelcards.demo.kaito.sh" is invalid' in out.stderr
    assert "spec.group" in out.stderr and "spec.versions[0].schema.openAPIV3Schema.type" in out.stderr


async def test_create_refused_while_crd_terminates(kubectl: Kubectl) -> None:
    await install_crd(kubectl)
    held = card("held").replace("metadata:\n", "metadata:\n  finalizers: [example.com/hold]\n")
    await kubectl("apply", "-f", "-", stdin=held)
    await kubectl("delete", "crd", "modelcards.demo.kaito.sh", "--wait=false", namespaced=False)
    out = await kubectl("apply", "-f", "-", stdin=card("late"), check=False)
    assert out.rc == 1 and "create not allowed while custom resource definition is terminating" in out.stderr
    await kubectl("patch", "mc", "held", "--type=merge", "-p", '{"metadata":{"finalizers":null}}')
    await kubectl("wait", "--for=delete", "crd/modelcards.demo.kaito.sh", "--timeout=10s", namespaced=False)
