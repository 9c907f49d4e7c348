"""Workload controllers: Deployments, StatefulSets and Jobs run real pods, and Services list them as endpoints."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from kaito_sim.apiserver.errors import JsonObj
from kaito_sim.server import SimServer
from tests.conftest import Kubectl

STATEFULSET = """apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web}
spec:
  replicas: 2
  serviceName: web
  podManagementPolicy: Parallel
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
        - name: nginx
          image: nginx:1.27
          ports: [{name: http, containerPort: 8080}]
  volumeClaimTemplates:
    - metadata: {name: data}
      spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{name: web, port: 80, targetPort: http}]
"""

FAILING_JOB = """apiVersion: batch/v1
kind: Job
metadata: {name: bad}
spec:
  backoffLimit: 1
  template:
    metadata: {labels: {app: bad}}
    spec:
      restartPolicy: Never
      initContainers: [{name: fetch, image: busybox}]
      containers: [{name: main, image: busybox}]
"""


async def get_json(kubectl: Kubectl, *args: str) -> Any:
    return (await kubectl("get", *args, "-o", "json")).json()


async def until(kubectl: Kubectl, what: str, check: Callable[[Any], bool], *, within: float = 15) -> Any:
    """Poll `kubectl get <what> -o json` until `check` holds; return what it held for."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        obj = await get_json(kubectl, *what.split())
        if check(obj):
            return obj
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what} never satisfied the check; last seen:\n{json.dumps(obj, indent=1)[:3000]}")
        await asyncio.sleep(0.05)


def ready(pod: JsonObj) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))


async def pods(kubectl: Kubectl, selector: str) -> list[JsonObj]:
    items: list[JsonObj] = (await get_json(kubectl, "pods", "-l", selector))["items"]
    return items


async def test_deployment_runs_and_scales(kubectl: Kubectl) -> None:
    await kubectl("create", "deployment", "web", "--image=nginx", "--replicas=2")
    await kubectl("rollout", "status", "deployment/web", "--timeout=20s")
    deploy = await get_json(kubectl, "deployment", "web")
    status = deploy["status"]
    assert (status["readyReplicas"], status["availableReplicas"], status["updatedReplicas"]) == (2, 2, 2)
    assert status["observedGeneration"] == deploy["metadata"]["generation"]
    assert {c["type"]: c["status"] for c in status["conditions"]} == {"Available": "True", "Progressing": "True"}
    running = await pods(kubectl, "app=web")
    assert len(running) == 2 and all(ready(p) for p in running)
    template_hash = running[0]["metadata"]["labels"]["pod-template-hash"]
    for pod in running:
        assert pod["metadata"]["name"].startswith(f"web-{template_hash}-") and len(template_hash) == 10
        [owner] = pod["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["name"], owner["controller"]) == ("Deployment", "web", True)

    await kubectl("scale", "deployment/web", "--replicas=3")
    await kubectl("wait", "--for=jsonpath={.status.readyReplicas}=3", "deployment/web")
    assert len(await pods(kubectl, "app=web")) == 3
    await kubectl("scale", "deployment/web", "--replicas=1")
    await until(kubectl, "pods -l app=web", lambda listed: len(listed["items"]) == 1)
    await kubectl("wait", "--for=jsonpath={.status.replicas}=1", "deployment/web")


async def test_deployment_template_change_replaces_pods(kubectl: Kubectl) -> None:
    await kubectl("create", "deployment", "roll", "--image=nginx:1.27", "--replicas=2")
    await kubectl("rollout", "status", "deployment/roll", "--timeout=20s")
    before = {p["metadata"]["name"] for p in await pods(kubectl, "app=roll")}
    await kubectl("set", "image", "deployment/roll", "nginx=nginx:1.28")
    await kubectl("rollout", "status", "deployment/roll", "--timeout=20s")
    after = await until(kubectl, "pods -l app=roll", lambda listed: len(listed["items"]) == 2)
    assert not before & {p["metadata"]["name"] for p in after["items"]}
    assert {p["spec"]["containers"][0]["image"] for p in after["items"]} == {"nginx:1.28"}


async def test_deleting_a_deployment_removes_its_pods(kubectl: Kubectl) -> None:
    await kubectl("create", "deployment", "gone", "--image=nginx", "--replicas=2")
    await kubectl("wait", "--for=jsonpath={.status.readyReplicas}=2", "deployment/gone")
    await kubectl("delete", "deployment", "gone")
    await until(kubectl, "pods -l app=gone", lambda listed: not listed["items"])


async def test_statefulset_pods_claims_and_endpoints(kubectl: Kubectl) -> None:
    await kubectl("apply", "-f", "-", stdin=STATEFULSET)
    await kubectl("wait", "--for=jsonpath={.status.readyReplicas}=2", "statefulset/web")
    members = {p["metadata"]["name"]: p for p in await pods(kubectl, "app=web")}
    assert sorted(members) == ["web-0", "web-1"]
    for name, pod in members.items():
        labels, spec = pod["metadata"]["labels"], pod["spec"]
        assert labels["statefulset.kubernetes.io/pod-name"] == name
        assert labels["apps.kubernetes.io/pod-index"] == name[-1]
        assert labels["controller-revision-hash"].startswith("web-")
        assert (spec["hostname"], spec["subdomain"]) == (name, "web")
        assert {"name": "data", "persistentVolumeClaim": {"claimName": f"data-{name}"}} in spec["volumes"]
    claims = (await get_json(kubectl, "pvc"))["items"]
    assert sorted(c["metadata"]["name"] for c in claims) == ["data-web-0", "data-web-1"]

    ips = sorted(p["status"]["podIP"] for p in members.values())
    endpoints = await until(
        kubectl, "endpoints web", lambda e: len(e.get("subsets", [{}])[0].get("addresses", [])) == 2
    )
    [subset] = endpoints["subsets"]
    assert sorted(a["ip"] for a in subset["addresses"]) == ips
    assert {a["hostname"] for a in subset["addresses"]} == {"web-0", "web-1"}
    assert subset["ports"] == [{"name": "web", "port": 8080, "protocol": "TCP"}]
    [endpoint_slice] = (await get_json(kubectl, "endpointslices", "-l", "kubernetes.io/service-name=web"))["items"]
    assert sorted(e["addresses"][0] for e in endpoint_slice["endpoints"]) == ips
    assert all(e["conditions"]["ready"] for e in endpoint_slice["endpoints"])
    assert endpoint_slice["ports"] == [{"name": "web", "port": 8080, "protocol": "TCP"}]


async def test_statefulset_template_change_rolls_pods(kubectl: Kubectl) -> None:
    await kubectl("apply", "-f", "-", stdin=STATEFULSET)
    await kubectl("wait", "--for=jsonpath={.status.readyReplicas}=2", "statefulset/web")
    old = (await get_json(kubectl, "statefulset", "web"))["status"]["updateRevision"]
    await kubectl("set", "image", "statefulset/web", "nginx=nginx:1.28")
    sts = await until(
        kubectl,
        "statefulset web",
        lambda s: (
            s["status"].get("updatedReplicas") == 2
            and s["status"].get("readyReplicas") == 2
            and s["status"]["currentRevision"] == s["status"]["updateRevision"] != old
        ),
    )
    new = sts["status"]["updateRevision"]
    members = await pods(kubectl, "app=web")
    assert {p["metadata"]["labels"]["controller-revision-hash"] for p in members} == {new}
    assert {p["spec"]["containers"][0]["image"] for p in members} == {"nginx:1.28"}


async def test_ordered_statefulset_waits_for_each_pod(kubectl: Kubectl, sim: SimServer) -> None:
    sim.pod_ready_delay = 1.0
    await kubectl("apply", "-f", "-", stdin=STATEFULSET.replace("podManagementPolicy: Parallel", ""))
    await until(kubectl, "pods -l app=web", lambda listed: len(listed["items"]) == 1)
    await asyncio.sleep(0.3)
    assert [p["metadata"]["name"] for p in await pods(kubectl, "app=web")] == ["web-0"]
    await kubectl("wait", "--for=jsonpath={.status.readyReplicas}=2", "statefulset/web")


async def test_not_ready_pods_are_listed_apart(kubectl: Kubectl, sim: SimServer) -> None:
    sim.pod_faults.add({"app": "web"}, "ProbeFailure")
    await kubectl("apply", "-f", "-", stdin=STATEFULSET)
    endpoints = await until(
        kubectl, "endpoints web", lambda e: len(e.get("subsets", [{}])[0].get("notReadyAddresses", [])) == 2
    )
    assert "addresses" not in endpoints["subsets"][0]
    sim.pod_faults.clear()
    await until(kubectl, "endpoints web", lambda e: len(e.get("subsets", [{}])[0].get("addresses", [])) == 2)


async def test_job_completes(kubectl: Kubectl) -> None:
    await kubectl("create", "job", "once", "--image=busybox")
    await kubectl("wait", "--for=condition=Complete", "job/once", "--timeout=20s")
    job = await get_json(kubectl, "job", "once")
    status = job["status"]
    assert status["succeeded"] == 1 and "active" not in status and status["completionTime"] >= status["startTime"]
    assert {c["type"] for c in status["conditions"]} == {"SuccessCriteriaMet", "Complete"}
    [pod] = await pods(kubectl, "job-name=once")
    assert pod["status"]["phase"] == "Succeeded"
    assert pod["metadata"]["labels"]["batch.kubernetes.io/controller-uid"] == job["metadata"]["uid"]
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 0


async def test_job_fails_past_its_backoff_limit(kubectl: Kubectl, sim: SimServer) -> None:
    sim.pod_faults.add({"app": "bad"}, "InitFailure", namespace=kubectl.namespace)
    await kubectl("apply", "-f", "-", stdin=FAILING_JOB)
    await kubectl("wait", "--for=condition=Failed", "job/bad", "--timeout=20s")
    status = (await get_json(kubectl, "job", "bad"))["status"]
    failed = next(c for c in status["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "BackoffLimitExceeded" and status["failed"] == 2
    attempts = await pods(kubectl, "job-name=bad")
    assert len(attempts) == 2 and {p["status"]["phase"] for p in attempts} == {"Failed"}
    init = attempts[0]["status"]["initContainerStatuses"][0]["state"]["terminated"]
    assert (init["exitCode"], init["reason"]) == (1, "Error")


async def test_idle_cluster_makes_no_writes(kubectl: Kubectl, sim: SimServer) -> None:
    await kubectl("apply", "-f", "-", stdin=STATEFULSET)
    await kubectl("create", "deployment", "idle", "--image=nginx", "--replicas=2")
    await kubectl("create", "job", "done", "--image=busybox")
    await kubectl("wait", "--for=jsonpath={.status.readyReplicas}=2", "statefulset/web")
    await kubectl("wait", "--for=jsonpath={.status.readyReplicas}=2", "deployment/idle")
    await kubectl("wait", "--for=condition=Complete", "job/done")
    await asyncio.sleep(0.2)
    rv = sim.cluster.store.rv
    await asyncio.sleep(2)
    assert sim.cluster.store.rv == rv
