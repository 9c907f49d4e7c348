"""A CRD serving two versions and a scale subresource, driven by kubectl and kubernetes-asyncio."""

from __future__ import annotations

from kubernetes_asyncio import client

from tests.conftest import Kubectl

SCHEMA = """        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              properties:
                replicas: {type: integer, minimum: 0}
                size: {type: string, default: small}
            status:
              type: object
              properties:
                replicas: {type: integer}
                selector: {type: string}
"""

CRD = f"""apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {{name: pools.demo.kaito.sh}}
spec:
  group: demo.kaito.sh
  scope: Namespaced
  names: {{plural: pools, singular: pool, kind: Pool}}
  versions:
    - name: v1alpha1
      served: true
      storage: false
      schema:
{SCHEMA}
    - name: v1
      served: true
      storage: true
      subresources:
        status: {{}}
        scale:
          specReplicasPath: .spec.replicas
          statusReplicasPath: .status.replicas
          labelSelectorPath: .status.selector
      schema:
{SCHEMA}
"""


async def test_object_written_in_one_version_reads_in_the_other(kubectl: Kubectl, api: client.ApiClient) -> None:
    await kubectl("apply", "-f", "-", stdin=CRD, namespaced=False)
    old = "apiVersion: demo.kaito.sh/v1alpha1\nkind: Pool\nmetadata: {name: p}\nspec: {replicas: 1}\n"
    await kubectl("apply", "-f", "-", stdin=old)
    preferred = (await kubectl("get", "pools", "p", "-o", "json")).json()
    assert preferred["apiVersion"] == "demo.kaito.sh/v1" and preferred["spec"] == {"replicas": 1, "size": "small"}
    objects = client.CustomObjectsApi(api)
    legacy = await objects.get_namespaced_custom_object("demo.kaito.sh", "v1alpha1", kubectl.namespace, "pools", "p")
    assert legacy["apiVersion"] == "demo.kaito.sh/v1alpha1"
    crd = (await kubectl("get", "crd", "pools.demo.kaito.sh", "-o", "json", namespaced=False)).json()
    assert crd["status"]["storedVersions"] == ["v1"]


async def test_scale_subresource_on_custom_resource(kubectl: Kubectl) -> None:
    await kubectl("apply", "-f", "-", stdin=CRD, namespaced=False)
    await kubectl("apply", "-f", "-", stdin="apiVersion: demo.kaito.sh/v1\nkind: Pool\nmetadata: {name: s}\nspec: {}\n")
    out = await kubectl("scale", "pool/s", "--replicas=3")
    assert "pool.demo.kaito.sh/s scaled" in out.stdout
    obj = (await kubectl("get", "pool", "s", "-o", "json")).json()
    assert obj["spec"]["replicas"] == 3 and obj["metadata"]["generation"] == 2
    out = await kubectl("scale", "pool/s", "--replicas=-1", check=False)
    assert out.rc == 1
