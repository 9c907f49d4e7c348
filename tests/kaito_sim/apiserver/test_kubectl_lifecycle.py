"""kubectl against the simulated server: finalizers, cascading deletion and namespace deletion."""

from __future__ import annotations

import asyncio

from tests.conftest import Kubectl


async def _uid(kubectl: Kubectl, kind: str, name: str) -> str:
    return str((await kubectl("get", kind, name, "-o", "json")).json()["metadata"]["uid"])


def _child(name: str, owner: str, uid: str, *, block: bool = False) -> str:
    return (
        f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  ownerReferences:\n"
        f"  - {{apiVersion: v1, kind: ConfigMap, name: {owner}, uid: {uid}, "
        f"blockOwnerDeletion: {str(block).lower()}}}\n"
    )


async def test_delete_waits_for_finalizers(kubectl: Kubectl) -> None:
    cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: held\n  finalizers: [example.com/hold]\n"
    await kubectl("apply", "-f", "-", stdin=cm)
    out = await kubectl("delete", "cm", "held", "--wait=false")
    assert 'configmap "held" deleted' in out.stdout
    obj = (await kubectl("get", "cm", "held", "-o", "json")).json()
    assert obj["metadata"]["deletionTimestamp"] and obj["metadata"]["finalizers"] == ["example.com/hold"]
    waiter = asyncio.create_task(kubectl("wait", "--for=delete", "cm/held", "--timeout=20s"))
    add = await kubectl(
        "patch",
        "cm",
        "held",
        "--type=merge",
        "-p",
        '{"metadata":{"finalizers":["example.com/hold","example.com/new"]}}',
        check=False,
    )
    assert add.rc == 1 and "no new finalizers can be added" in add.stderr
    await kubectl("patch", "cm", "held", "--type=json", "-p", '[{"op":"remove","path":"/metadata/finalizers"}]')
    await waiter
    out = await kubectl("get", "cm", "held", check=False)
    assert out.rc == 1 and "NotFound" in out.stderr


async def test_background_cascade_deletes_dependents(kubectl: Kubectl) -> None:
    await kubectl("create", "configmap", "owner")
    uid = await _uid(kubectl, "cm", "owner")
    await kubectl("apply", "-f", "-", stdin=_child("child", "owner", uid))
    await kubectl("delete", "cm", "owner")
    await kubectl("wait", "--for=delete", "cm/child", "--timeout=10s")


async def test_foreground_cascade_waits_for_blocking_dependents(kubectl: Kubectl) -> None:
    await kubectl("create", "configmap", "fg")
    uid = await _uid(kubectl, "cm", "fg")
    held = _child("fg-child", "fg", uid, block=True).replace(
        "  ownerReferences:", "  finalizers: [example.com/hold]\n  ownerReferences:"
    )
    await kubectl("apply", "-f", "-", stdin=held)
    await kubectl("delete", "cm", "fg", "--cascade=foreground", "--wait=false")
    owner = (await kubectl("get", "cm", "fg", "-o", "json")).json()
    assert "foregroundDeletion" in owner["metadata"]["finalizers"]
    child = (await kubectl("get", "cm", "fg-child", "-o", "json")).json()
    assert child["metadata"]["deletionTimestamp"]
    await kubectl("patch", "cm", "fg-child", "--type=merge", "-p", '{"metadata":{"finalizers":null}}')
    await kubectl("wait", "--for=delete", "cm/fg", "--timeout=10s")


async def test_orphan_cascade_keeps_dependents(kubectl: Kubectl) -> None:
    await kubectl("create", "configmap", "orph")
    uid = await _uid(kubectl, "cm", "orph")
    await kubectl("apply", "-f", "-", stdin=_child("orph-child", "orph", uid))
    await kubectl("delete", "cm", "orph", "--cascade=orphan")
    await kubectl("wait", "--for=delete", "cm/orph", "--timeout=10s")
    child = (await kubectl("get", "cm", "orph-child", "-o", "json")).json()
    assert "ownerReferences" not in child["metadata"]


async def test_deleting_namespace_deletes_contents(kubectl: Kubectl) -> None:
    await kubectl("create", "namespace", "doomed", namespaced=False)
    await kubectl("create", "configmap", "x", "-n", "doomed", namespaced=False)
    await kubectl("delete", "namespace", "doomed", "--timeout=20s", namespaced=False)
    out = await kubectl("get", "cm", "-n", "doomed", namespaced=False, check=False)
    assert "x" not in out.stdout.split()
    out = await kubectl("get", "namespace", "doomed", namespaced=False, check=False)
    assert out.rc == 1 and "NotFound" in out.stderr


async def test_create_in_missing_namespace_is_rejected(kubectl: Kubectl) -> None:
    out = await kubectl("create", "configmap", "x", "-n", "nowhere", namespaced=False, check=False)
    assert out.rc == 1 and 'namespaces "nowhere" not found' in out.stderr
