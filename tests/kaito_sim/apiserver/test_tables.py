"""Server-side Table rendering: ages, CRD printer columns and the built-in printers kubectl relies on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kaito_sim.apiserver.errors import ApiError, JsonObj
from kaito_sim.apiserver.tables import builtin_table, crd_table, human_age

NOW = datetime(2024, 6, 1, 12, 0, 0, tzinfo=UTC)


def ago(**delta: float) -> str:
    return (NOW - timedelta(**delta)).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        pytest.param(0, "0s", id="zero"),
        pytest.param(45, "45s", id="seconds"),
        pytest.param(119, "119s", id="just-under-2m"),
        pytest.param(120, "2m", id="2m"),
        pytest.param(5 * 60 + 3, "5m3s", id="minutes-and-seconds"),
        pytest.param(9 * 60 + 59, "9m59s", id="just-under-10m"),
        pytest.param(10 * 60 + 30, "10m", id="10m-drops-seconds"),
        pytest.param(3 * 3600 - 1, "179m", id="just-under-3h"),
        pytest.param(3 * 3600, "3h", id="3h"),
        pytest.param(3 * 3600 + 5 * 60, "3h5m", id="hours-and-minutes"),
        pytest.param(8 * 3600 + 5 * 60, "8h", id="8h-drops-minutes"),
        pytest.param(47 * 3600, "47h", id="just-under-2d"),
        pytest.param(48 * 3600, "2d", id="2d"),
        pytest.param(50 * 3600, "2d2h", id="days-and-hours"),
        pytest.param(8 * 86400 + 3600, "8d", id="8d-drops-hours"),
        pytest.param(729 * 86400, "729d", id="just-under-2y"),
        pytest.param(730 * 86400, "2y", id="2y"),
        pytest.param(731 * 86400, "2y1d", id="years-and-days"),
        pytest.param(8 * 365 * 86400 + 86400, "8y", id="8y-drops-days"),
        pytest.param(-1, "0s", id="one-second-skew"),
        pytest.param(-5, "<invalid>", id="future"),
    ],
)
def test_human_age_boundaries(seconds: int, expected: str) -> None:
    assert human_age(ago(seconds=seconds), NOW) == expected


@pytest.mark.parametrize(
    ("created", "expected"),
    [
        pytest.param(None, "<unknown>", id="absent"),
        pytest.param("yesterday", "<invalid>", id="garbage"),
        pytest.param("2024-06-01T11:59:30.123456Z", "29s", id="micro-time"),
        pytest.param("2024-06-01T13:59:00+02:00", "60s", id="offset"),
    ],
)
def test_human_age_inputs(created: str | None, expected: str) -> None:
    assert human_age(created, NOW) == expected


WS: JsonObj = {
    "apiVersion": "kaito.sh/v1beta1",
    "kind": "Workspace",
    "metadata": {"name": "ws1", "namespace": "default", "creationTimestamp": ago(minutes=5)},
    "resource": {"instanceType": "Standard_NC6s_v3", "count": 2, "labels": {"a": "b"}},
    "status": {"conditions": [{"type": "ResourceReady", "status": "True"}, {"type": "Ready", "status": "False"}]},
}


def crd(columns: list[JsonObj], include_object: str = "Metadata", token: str | None = None) -> JsonObj:
    return crd_table(columns, [WS], list_rv="7", continue_token=token, include_object=include_object, now=NOW)


def test_crd_table_without_columns_shows_name_and_age() -> None:
    table = crd([])
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Age"]
    assert table["columnDefinitions"][0] == {
        "name": "Name",
        "type": "string",
        "format": "name",
        "description": table["columnDefinitions"][0]["description"],
        "priority": 0,
    }
    assert table["columnDefinitions"][1]["type"] == "date"
    assert table["rows"][0]["cells"] == ["ws1", "5m"]
    assert table["metadata"] == {"resourceVersion": "7"}


def test_crd_table_listed_columns_replace_age() -> None:
    columns: list[JsonObj] = [
        {"name": "Instance", "type": "string", "jsonPath": ".resource.instanceType"},
        {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
        {"name": "Count", "type": "integer", "jsonPath": ".resource.count", "priority": 1, "description": "N"},
        {"name": "Missing", "type": "string", "jsonPath": ".status.nope"},
    ]
    table = crd(columns)
    defs = table["columnDefinitions"]
    assert [c["name"] for c in defs] == ["Name", "Instance", "Ready", "Count", "Missing"]
    assert [c["priority"] for c in defs] == [0, 0, 0, 1, 0]
    assert defs[1]["description"] == "Custom resource definition column (in JSONPath format): .resource.instanceType"
    assert defs[3]["description"] == "N"
    assert table["rows"][0]["cells"] == ["ws1", "Standard_NC6s_v3", "False", 2, None]


@pytest.mark.parametrize(
    ("column", "expected"),
    [
        pytest.param({"type": "string", "jsonPath": ".resource.labels"}, '{"a":"b"}', id="string-of-map"),
        pytest.param({"type": "string", "jsonPath": ".resource.count"}, "2", id="string-of-number"),
        pytest.param({"type": "number", "jsonPath": ".resource.count"}, 2, id="number"),
        pytest.param({"type": "boolean", "jsonPath": ".resource.instanceType"}, "Standard_NC6s_v3", id="as-is"),
        pytest.param({"type": "date", "jsonPath": ".metadata.creationTimestamp"}, "5m", id="date"),
        pytest.param({"type": "date", "jsonPath": ".resource.instanceType"}, "<invalid>", id="date-invalid"),
        pytest.param({"type": "date", "jsonPath": ".resource.count"}, "<invalid>", id="date-not-string"),
        pytest.param({"type": "string", "jsonPath": ".status.conditions[9]"}, None, id="missing-is-null"),
        pytest.param({"type": "string", "jsonPath": ".a["}, None, id="bad-path-is-null"),
    ],
)
def test_crd_cell_types(column: JsonObj, expected: Any) -> None:
    assert crd([{"name": "X", **column}])["rows"][0]["cells"][1] == expected


@pytest.mark.parametrize(
    ("include", "expected"),
    [
        pytest.param(
            "Metadata",
            {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": WS["metadata"]},
            id="metadata",
        ),
        pytest.param(
            "",
            {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": WS["metadata"]},
            id="default",
        ),
        pytest.param("Object", WS, id="object"),
        pytest.param("None", None, id="none"),
    ],
)
def test_include_object(include: str, expected: JsonObj | None) -> None:
    row = crd([], include_object=include)["rows"][0]
    assert row.get("object") == expected
    assert ("object" in row) is (expected is not None)


def test_include_object_rejects_unknown_and_keeps_continue() -> None:
    assert crd([], token="abc")["metadata"] == {"resourceVersion": "7", "continue": "abc"}
    with pytest.raises(ApiError) as caught:
        crd([], include_object="Everything")
    assert caught.value.code == 400


def cells(kind: str, obj: JsonObj) -> dict[str, Any]:
    table = builtin_table(kind, [obj], list_rv="1", continue_token=None, include_object="None", now=NOW)
    names = [c["name"] for c in table["columnDefinitions"]]
    return dict(zip(names, table["rows"][0]["cells"], strict=True))


def pod(*statuses: JsonObj, phase: str = "Running", **extra: Any) -> JsonObj:
    names = [s["name"] for s in statuses]
    return {
        "metadata": {"name": "p", "creationTimestamp": ago(hours=1), **extra.pop("metadata", {})},
        "spec": {"containers": [{"name": n} for n in names], **extra.pop("spec", {})},
        "status": {"phase": phase, "containerStatuses": list(statuses), **extra},
    }


RUNNING = {"name": "a", "ready": True, "restartCount": 0, "state": {"running": {}}}
WAITING = {"name": "b", "ready": False, "restartCount": 4, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}
DONE = {"name": "c", "ready": False, "state": {"terminated": {"reason": "Completed", "exitCode": 0}}}
KILLED = {"name": "d", "ready": False, "state": {"terminated": {"exitCode": 137, "signal": 9}}}
EXITED = {"name": "e", "ready": False, "state": {"terminated": {"exitCode": 2}}}
READY_TRUE = [{"type": "Ready", "status": "True"}]


@pytest.mark.parametrize(
    ("obj", "ready", "status"),
    [
        pytest.param(pod(RUNNING), "1/1", "Running", id="running"),
        pytest.param(pod(RUNNING, WAITING), "1/2", "CrashLoopBackOff", id="waiting-reason"),
        pytest.param(pod(phase="Pending"), "0/0", "Pending", id="pending"),
        pytest.param(pod(DONE, phase="Succeeded"), "0/1", "Completed", id="completed"),
        pytest.param(pod(KILLED), "0/1", "Signal:9", id="signal"),
        pytest.param(pod(EXITED), "0/1", "ExitCode:2", id="exit-code"),
        pytest.param(pod(RUNNING, DONE, conditions=READY_TRUE), "1/2", "Running", id="completed-sidecar-ready"),
        pytest.param(pod(RUNNING, DONE), "1/2", "NotReady", id="completed-sidecar-not-ready"),
        pytest.param(
            pod(RUNNING, metadata={"deletionTimestamp": ago(seconds=1)}), "1/1", "Terminating", id="terminating"
        ),
        pytest.param(pod(RUNNING, reason="Evicted", phase="Failed"), "1/1", "Evicted", id="pod-reason"),
        pytest.param(
            pod(
                phase="Pending",
                spec={"initContainers": [{"name": "i"}]},
                initContainerStatuses=[{"name": "i", "state": {"running": {}}}],
            ),
            "0/0",
            "Init:0/1",
            id="init-running",
        ),
        pytest.param(
            pod(
                phase="Pending",
                spec={"initContainers": [{"name": "i"}]},
                initContainerStatuses=[{"name": "i", "state": {"terminated": {"exitCode": 1, "reason": "Error"}}}],
            ),
            "0/0",
            "Init:Error",
            id="init-failed",
        ),
    ],
)
def test_pod_ready_and_status(obj: JsonObj, ready: str, status: str) -> None:
    row = cells("Pod", obj)
    assert (row["Ready"], row["Status"]) == (ready, status)


def test_pod_restarts_and_wide_columns() -> None:
    waiting = {**WAITING, "lastState": {"terminated": {"finishedAt": ago(minutes=3)}}}
    row = cells("Pod", pod(RUNNING, waiting, podIP="10.0.0.5", spec={"nodeName": "n1"}))
    assert row["Restarts"] == "4 (3m ago)"
    assert (row["IP"], row["Node"], row["Nominated Node"], row["Readiness Gates"]) == (
        "10.0.0.5",
        "n1",
        "<none>",
        "<none>",
    )
    assert row["Age"] == "60m"
    assert cells("Pod", pod(RUNNING))["Restarts"] == "0"


def service(kind: str, ports: list[JsonObj], **spec: Any) -> JsonObj:
    return {"metadata": {"name": "svc"}, "spec": {"type": kind, "clusterIP": "10.96.0.10", "ports": ports, **spec}}


@pytest.mark.parametrize(
    ("obj", "external", "ports"),
    [
        pytest.param(
            service("ClusterIP", [{"port": 80}, {"port": 443, "protocol": "TCP"}]),
            "<none>",
            "80/TCP,443/TCP",
            id="plain",
        ),
        pytest.param(service("NodePort", [{"port": 80, "nodePort": 30080}]), "<none>", "80:30080/TCP", id="node-port"),
        pytest.param(service("ClusterIP", [{"port": 53, "protocol": "UDP"}]), "<none>", "53/UDP", id="udp"),
        pytest.param(service("ClusterIP", []), "<none>", "<none>", id="no-ports"),
        pytest.param(
            service("LoadBalancer", [{"port": 80, "nodePort": 31000}]), "<pending>", "80:31000/TCP", id="lb-pending"
        ),
        pytest.param(
            {**service("LoadBalancer", [{"port": 80}]), "status": {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}}},
            "1.2.3.4",
            "80/TCP",
            id="lb-ingress",
        ),
        pytest.param(
            service("ExternalName", [], externalName="db.example.com"), "db.example.com", "<none>", id="external-name"
        ),
    ],
)
def test_service_columns(obj: JsonObj, external: str, ports: str) -> None:
    row = cells("Service", obj)
    assert (row["External-IP"], row["Port(s)"]) == (external, ports)
    assert row["Cluster-IP"] == "10.96.0.10"


@pytest.mark.parametrize(
    ("spec", "status", "ready"),
    [
        pytest.param({"replicas": 3}, {"readyReplicas": 2}, "2/3", id="partly-ready"),
        pytest.param({"replicas": 0}, {}, "0/0", id="scaled-to-zero"),
        pytest.param({}, {"readyReplicas": 1}, "1/1", id="default-one-replica"),
    ],
)
def test_deployment_ready(spec: JsonObj, status: JsonObj, ready: str) -> None:
    assert cells("Deployment", {"metadata": {"name": "d"}, "spec": spec, "status": status})["Ready"] == ready


def test_deployment_wide_columns() -> None:
    obj = {
        "metadata": {"name": "d", "creationTimestamp": ago(days=3)},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "x"}},
            "template": {"spec": {"containers": [{"name": "a", "image": "i:1"}, {"name": "b", "image": "i:2"}]}},
        },
        "status": {"readyReplicas": 2, "updatedReplicas": 2, "availableReplicas": 1},
    }
    assert cells("Deployment", obj) == {
        "Name": "d",
        "Ready": "2/2",
        "Up-to-date": 2,
        "Available": 1,
        "Age": "3d",
        "Containers": "a,b",
        "Images": "i:1,i:2",
        "Selector": "app=x",
    }


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        pytest.param({"status": {"conditions": [{"type": "Ready", "status": "True"}]}}, "Ready", id="ready"),
        pytest.param(
            {"spec": {"unschedulable": True}, "status": {"conditions": [{"type": "Ready", "status": "False"}]}},
            "NotReady,SchedulingDisabled",
            id="cordoned-not-ready",
        ),
        pytest.param({}, "Unknown", id="no-conditions"),
    ],
)
def test_node_status(obj: JsonObj, expected: str) -> None:
    assert cells("Node", {"metadata": {"name": "n"}, **obj})["Status"] == expected


def test_node_roles_and_addresses() -> None:
    node = {
        "metadata": {"name": "n", "labels": {"node-role.kubernetes.io/control-plane": ""}},
        "status": {
            "addresses": [{"type": "InternalIP", "address": "10.1.0.4"}],
            "nodeInfo": {"kubeletVersion": "v1.32.0"},
        },
    }
    row = cells("Node", node)
    assert (row["Roles"], row["Version"], row["Internal-IP"], row["External-IP"]) == (
        "control-plane",
        "v1.32.0",
        "10.1.0.4",
        "<none>",
    )


@pytest.mark.parametrize(
    ("kind", "obj", "expected"),
    [
        pytest.param("Namespace", {"status": {"phase": "Active"}}, {"Status": "Active"}, id="namespace"),
        pytest.param("ConfigMap", {"data": {"a": "1", "b": "2"}}, {"Data": 2}, id="configmap"),
        pytest.param("Secret", {"type": "Opaque", "data": {"k": "dg=="}}, {"Type": "Opaque", "Data": 1}, id="secret"),
        pytest.param("ServiceAccount", {}, {"Secrets": 0}, id="serviceaccount"),
        pytest.param("Lease", {"spec": {"holderIdentity": "me"}}, {"Holder": "me"}, id="lease"),
        pytest.param(
            "StatefulSet", {"spec": {"replicas": 2}, "status": {"readyReplicas": 1}}, {"Ready": "1/2"}, id="sts"
        ),
        pytest.param(
            "Job",
            {
                "spec": {"completions": 1},
                "status": {
                    "succeeded": 1,
                    "startTime": ago(minutes=4),
                    "completionTime": ago(minutes=1),
                    "conditions": [{"type": "Complete", "status": "True"}],
                },
            },
            {"Status": "Complete", "Completions": "1/1", "Duration": "3m"},
            id="job-complete",
        ),
        pytest.param(
            "Job",
            {"spec": {"parallelism": 3}, "status": {"startTime": ago(seconds=30)}},
            {"Status": "Running", "Completions": "0/1 of 3", "Duration": "30s"},
            id="job-running",
        ),
        pytest.param(
            "CustomResourceDefinition",
            {"metadata": {"name": "workspaces.kaito.sh", "creationTimestamp": "2024-05-01T00:00:00Z"}},
            {"Name": "workspaces.kaito.sh", "Created At": "2024-05-01T00:00:00Z"},
            id="crd",
        ),
        pytest.param(
            "Widget",
            {"metadata": {"name": "w", "creationTimestamp": ago(seconds=9)}},
            {"Name": "w", "Age": "9s"},
            id="other",
        ),
    ],
)
def test_other_builtin_columns(kind: str, obj: JsonObj, expected: dict[str, Any]) -> None:
    row = cells(kind, {"metadata": {"name": "x"}, **obj})
    assert {k: row[k] for k in expected} == expected


def test_event_columns() -> None:
    event = {
        "metadata": {"name": "p.17a"},
        "type": "Warning",
        "reason": "BackOff",
        "message": " Back-off restarting failed container \n",
        "involvedObject": {"kind": "Pod", "name": "p"},
        "firstTimestamp": ago(minutes=10),
        "lastTimestamp": ago(minutes=2),
        "count": 5,
    }
    table = builtin_table("Event", [event], list_rv="1", continue_token=None, include_object="None", now=NOW)
    shown = [c["name"] for c in table["columnDefinitions"] if c["priority"] == 0]
    assert shown == ["Last Seen", "Type", "Reason", "Object", "Message"]
    row = cells("Event", event)
    assert (row["Last Seen"], row["Object"], row["Message"], row["Count"]) == (
        "2m",
        "pod/p",
        "Back-off restarting failed container",
        5,
    )
