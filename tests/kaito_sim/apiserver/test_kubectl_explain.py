"""`kubectl explain` against the simulated server: our CRDs, CRDs installed at runtime, and built-in kinds."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.conftest import Kubectl
from tests.kaito_sim.apiserver.test_kubectl_crd import install_crd
from tests.kaito_sim.manifests import CRD, card, deployment

CRDS = Path(__file__).resolve().parents[3] / "crds"


def _flat(text: str) -> str:
    """kubectl wraps descriptions at 76 columns; compare them with whitespace collapsed."""
    return " ".join(text.split())


async def _install_kaito_crds(kubectl: Kubectl) -> None:
    await kubectl("apply", "-f", str(CRDS), namespaced=False)


async def test_workspace_field_prints_its_description_from_the_crd(kubectl: Kubectl) -> None:
    await _install_kaito_crds(kubectl)
    crd = yaml.safe_load((CRDS / "kaito.sh_workspaces.yaml").read_text())
    stored = next(v for v in crd["spec"]["versions"] if v["storage"])
    adapters = stored["schema"]["openAPIV3Schema"]["properties"]["inference"]["properties"]["adapters"]
    out = await kubectl("explain", "workspace.inference.adapters", namespaced=False)
    assert "GROUP:      kaito.sh" in out.stdout and "KIND:       Workspace" in out.stdout
    assert "FIELD: adapters <[]Object>" in out.stdout
    assert _flat(adapters["description"]) in _flat(out.stdout)
    assert "strength\t<string>" in out.stdout


async def test_nodeclaim_fields_print_their_descriptions(kubectl: Kubectl) -> None:
    await _install_kaito_crds(kubectl)
    crd = yaml.safe_load((CRDS / "karpenter.sh_nodeclaims.yaml").read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    spec = schema["properties"]["spec"]
    out = await kubectl("explain", "nodeclaims.spec", namespaced=False)
    assert "GROUP:      karpenter.sh" in out.stdout and "KIND:       NodeClaim" in out.stdout
    assert _flat(spec["description"]) in _flat(out.stdout)
    assert "<no description>" not in out.stdout
    requirements = await kubectl("explain", "nodeclaims.spec.requirements", namespaced=False)
    assert "FIELD: requirements <[]Object>" in requirements.stdout
    assert _flat(spec["properties"]["requirements"]["description"]) in _flat(requirements.stdout)
    assert "instance-type In [<sku>]" in _flat(requirements.stdout)
    assert "<no description>" not in requirements.stdout
    top = await kubectl("explain", "nodeclaims", namespaced=False)
    assert _flat(schema["description"]) in _flat(top.stdout)
    conditions = await kubectl("explain", "nodeclaims.status.conditions.reason", namespaced=False)
    assert "AwaitingLaunch" in conditions.stdout


async def test_workspace_recursive_and_metadata_as_object_meta(kubectl: Kubectl) -> None:
    await _install_kaito_crds(kubectl)
    out = await kubectl("explain", "workspace", "--recursive", namespaced=False)
    lines = [line.strip() for line in out.stdout.splitlines()]
    assert "metadata\t<ObjectMeta>" in lines and "resource\t<Object> -required-" in lines
    assert "adapters\t<[]Object>" in lines and "ownerReferences\t<[]OwnerReference>" in lines
    meta = await kubectl("explain", "workspace.metadata.labels", namespaced=False)
    assert "FIELD: labels <map[string]string>" in meta.stdout
    older = await kubectl("explain", "workspace.resource", "--api-version=kaito.sh/v1alpha1", namespaced=False)
    assert "VERSION:    v1alpha1" in older.stdout and "labelSelector\t<Object> -required-" in older.stdout


async def test_builtin_kinds(kubectl: Kubectl) -> None:
    containers = await kubectl("explain", "pods.spec.containers", namespaced=False)
    assert "FIELD: containers <[]Container>" in containers.stdout
    assert "name\t<string> -required-" in containers.stdout and "image\t<string>" in containers.stdout
    replicas = await kubectl("explain", "deploy.spec.replicas", namespaced=False)
    assert "GROUP:      apps" in replicas.stdout and "FIELD: replicas <integer>" in replicas.stdout
    assert "DESCRIPTION:\n    <empty>" not in replicas.stdout
    svc = await kubectl("explain", "svc", namespaced=False)
    assert "KIND:       Service" in svc.stdout and "spec\t<ServiceSpec>" in svc.stdout
    assert "<empty>" not in svc.stdout
    for resource in ("sts.spec.serviceName", "cm.data", "secret.type", "node.spec.taints", "ev.involvedObject"):
        assert "FIELD:" in (await kubectl("explain", resource, namespaced=False)).stdout
    for resource in ("jobs.spec.backoffLimit", "ns.status.phase", "sa.imagePullSecrets", "pod.metadata.name"):
        assert "FIELD:" in (await kubectl("explain", resource, namespaced=False)).stdout


async def test_missing_field_is_kubectls_usual_error(kubectl: Kubectl) -> None:
    await _install_kaito_crds(kubectl)
    for path in ("workspace.inference.nope", "pods.spec.nope"):
        out = await kubectl("explain", path, namespaced=False, check=False)
        assert out.rc == 1 and 'field "nope" does not exist' in out.stderr, out


async def test_crd_created_changed_and_deleted_at_runtime(kubectl: Kubectl) -> None:
    before = await kubectl("explain", "modelcards", namespaced=False, check=False)
    assert before.rc != 0
    await install_crd(kubectl)
    out = await kubectl("explain", "modelcards.spec.instanceType", namespaced=False)
    assert "GROUP:      demo.kaito.sh" in out.stdout and "Standard_NC24ads_A100_v4" in out.stdout
    missing = await kubectl("explain", "modelcards.spec.owner", namespaced=False, check=False)
    assert missing.rc == 1 and 'field "owner" does not exist' in missing.stderr
    # A field added to the CRD is explainable at once; deleting the CRD takes the kind away.
    crd = yaml.safe_load(CRD)
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec["properties"]["owner"] = {"type": "string", "description": "Who looks after this card"}
    await kubectl("apply", "-f", "-", stdin=yaml.safe_dump(crd), namespaced=False)
    owner = await kubectl("explain", "modelcards.spec.owner", namespaced=False)
    assert "FIELD: owner <string>" in owner.stdout and "Who looks after this card" in owner.stdout
    await kubectl("delete", "crd", "modelcards.demo.kaito.sh", namespaced=False)
    gone = await kubectl("explain", "modelcards", namespaced=False, check=False)
    assert gone.rc != 0


async def test_edit_and_reapply_keep_working_with_schemas_published(kubectl: Kubectl, tmp_path: Path) -> None:
    editor = tmp_path / "editor.sh"
    editor.write_text("#!/bin/sh\nsed -i 's/^  replicas: 1$/  replicas: 3/; s/^  gpus: 1$/  gpus: 2/' \"$1\"\n")
    editor.chmod(0o755)
    kubectl.env["KUBE_EDITOR"] = str(editor)
    await install_crd(kubectl)
    await kubectl("apply", "-f", "-", stdin=card("e1"))
    await kubectl("apply", "-f", "-", stdin=deployment("e2"))
    assert "edited" in (await kubectl("edit", "mc", "e1")).stdout
    assert "edited" in (await kubectl("edit", "deploy", "e2")).stdout
    assert (await kubectl("get", "mc", "e1", "-o", "json")).json()["spec"]["gpus"] == 2
    assert (await kubectl("get", "deploy", "e2", "-o", "json")).json()["spec"]["replicas"] == 3
    # Re-applying a changed image patches the one container (matched by name), as kubectl's own strategies do.
    await kubectl("apply", "-f", "-", stdin=deployment("e2", image="nginx:1.28", replicas=3))
    containers = (await kubectl("get", "deploy", "e2", "-o", "json")).json()["spec"]["template"]["spec"]["containers"]
    assert [(c["name"], c["image"]) for c in containers] == [("web", "nginx:1.28")]
