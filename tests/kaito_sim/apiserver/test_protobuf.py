"""The protobuf body decoder, checked against the bytes kubectl 1.32 really sends for each `kubectl create` generator.

A small plain-HTTP capture server answers kubectl's discovery and records request bodies. Each generator runs twice:
once with `--dry-run=client -o json` (the object as JSON) and once for real (the same object as protobuf), and the
decoded protobuf must equal the JSON.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shlex
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from kaito_sim.apiserver.errors import ApiError
from kaito_sim.apiserver.protobuf import (
    MAGIC,
    PROTOBUF,
    SCALARS,
    SPECIALS,
    WireError,
    decode_k8s_protobuf,
    decode_message,
    iter_fields,
    read_varint,
    to_signed,
)
from kaito_sim.apiserver.protobuf_schemas import KINDS, MESSAGES
from kaito_sim.apiserver.tls import make_ca

# --- a tiny encoder, for hand-built messages -------------------------------------------------------------------


def varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def pb(number: int, value: int | str | bytes) -> bytes:
    """One field: ints as varints, str/bytes length-delimited."""
    if isinstance(value, int):
        return varint(number << 3) + varint(value)
    data = value.encode() if isinstance(value, str) else value
    return varint(number << 3 | 2) + varint(len(data)) + data


def envelope(api_version: str, kind: str, raw: bytes, *extra: bytes) -> bytes:
    return MAGIC + pb(1, pb(1, api_version) + pb(2, kind)) + pb(2, raw) + b"".join(extra)


def bad_request(data: bytes) -> ApiError:
    with pytest.raises(ApiError) as info:
        decode_k8s_protobuf(data)
    assert info.value.code == 400 and info.value.reason == "BadRequest"
    return info.value


# --- the wire reader ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "value"),
    [
        pytest.param(b"\x00", 0, id="zero"),
        pytest.param(b"\x01", 1, id="one-byte"),
        pytest.param(b"\xac\x02", 300, id="two-bytes"),
        pytest.param(b"\xff\xff\xff\xff\x0f", 2**32 - 1, id="uint32-max"),
        pytest.param(varint(2**63 + 5), 2**63 + 5, id="above-int64-max"),
    ],
)
def test_read_varint(data: bytes, value: int) -> None:
    assert read_varint(data + b"\x7f", 0) == (value, len(data))


def test_negative_ints_are_ten_byte_twos_complement() -> None:
    encoded = varint(-2)
    assert len(encoded) == 10
    raw, _ = read_varint(encoded, 0)
    assert to_signed(raw) == -2
    assert to_signed(2**63 - 1) == 2**63 - 1
    assert decode_message(pb(10, -30), "ObjectMeta") == {"deletionGracePeriodSeconds": -30}


def test_iter_fields_reads_every_wire_type() -> None:
    data = pb(1, 150) + pb(2, "hi") + varint(3 << 3 | 1) + (7).to_bytes(8, "little")
    data += varint(4 << 3 | 5) + (9).to_bytes(4, "little")
    assert list(iter_fields(data)) == [(1, 0, 150), (2, 2, b"hi"), (3, 1, 7), (4, 5, 9)]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param(b"\x08", "truncated varint", id="truncated-varint"),
        pytest.param(b"\x08" + b"\xff" * 11, "longer than 10 bytes", id="overlong-varint"),
        pytest.param(b"\x0a\x05ab", "runs past the end", id="short-length"),
        pytest.param(b"\x09\x01\x02", "truncated fixed64", id="short-fixed64"),
        pytest.param(b"\x0b", "unsupported wire type 3", id="group"),
        pytest.param(b"\x00\x00", "field number 0", id="field-zero"),
    ],
)
def test_iter_fields_rejects_bad_wire_data(data: bytes, message: str) -> None:
    with pytest.raises(WireError, match=message):
        list(iter_fields(data))


def test_unknown_fields_are_skipped_and_packed_ints_are_read() -> None:
    data = pb(99, "ignored") + pb(98, 7) + pb(1, "n") + pb(2, "g")
    assert decode_message(data, "ObjectMeta") == {"name": "n", "generateName": "g"}
    packed = pb(4, varint(1) + varint(2) + varint(-3))
    assert decode_message(packed + pb(4, 4), "PodSecurityContext") == {"supplementalGroups": [1, 2, -3, 4]}


def test_special_types_have_their_json_forms() -> None:
    meta = pb(8, pb(1, 1_700_000_000)) + pb(9, b"") + pb(17, pb(7, pb(1, '{"f:data":{}}')))
    assert decode_message(meta, "ObjectMeta") == {
        "creationTimestamp": "2023-11-14T22:13:20Z",
        "managedFields": [{"fieldsV1": {"f:data": {}}}],
    }
    lease = pb(3, pb(1, 1_700_000_000) + pb(2, 123_456_789)) + pb(2, 0) + pb(1, "")
    assert decode_message(lease, "LeaseSpec") == {
        "acquireTime": "2023-11-14T22:13:20.123456Z",
        "leaseDurationSeconds": 0,
        "holderIdentity": "",
    }
    strategy = pb(1, "RollingUpdate") + pb(2, pb(1, pb(1, 1) + pb(3, "25%")) + pb(2, pb(2, 2)))
    assert decode_message(strategy, "DeploymentStrategy") == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": 2},
    }
    limits = pb(1, pb(1, "cpu") + pb(2, pb(1, "500m"))) + pb(1, pb(1, "memory"))
    assert decode_message(limits, "ResourceRequirements") == {"limits": {"cpu": "500m", "memory": "0"}}


def test_zero_scalars_follow_omitempty_but_messages_are_kept() -> None:
    spec = pb(1, 0) + pb(7, 0) + pb(4, b"") + pb(3, pb(1, b""))
    assert decode_message(spec, "DeploymentSpec") == {"replicas": 0, "strategy": {}, "template": {"metadata": {}}}
    volume = pb(1, "scratch") + pb(2, pb(2, b""))
    assert decode_message(volume, "Volume") == {"name": "scratch", "emptyDir": {}}
    assert decode_message(pb(2, pb(1, "k") + pb(2, b"")), "Secret") == {"data": {"k": ""}}
    no_values = pb(6, pb(1, "a")) + pb(6, pb(1, "b"))
    extra = decode_message(no_values, "CertificateSigningRequestSpec")["extra"]
    assert extra == {"a": [], "b": []} and extra["a"] is not extra["b"]


def test_every_table_refers_to_known_types() -> None:
    for name, table in MESSAGES.items():
        for number, fld in table.items():
            for type_ in (fld.type, fld.map_value or "string"):
                known = type_ in SCALARS or type_ in SPECIALS or type_ in MESSAGES
                assert type_ != "map" or fld.map_value, f"{name}.{number}"
                assert known or type_ == "map", f"{name}.{number} ({fld.name}) refers to unknown type {type_}"
    assert all(message in MESSAGES for message in KINDS.values())


# --- the envelope ---------------------------------------------------------------------------------------------


def test_envelope_sets_api_version_and_kind() -> None:
    raw = pb(1, pb(1, "cm") + pb(11, pb(1, "a") + pb(2, "b"))) + pb(2, pb(1, "k") + pb(2, "v"))
    data = envelope("v1", "ConfigMap", raw, pb(3, ""), pb(4, ""))
    assert decode_k8s_protobuf(data) == {
        "kind": "ConfigMap",
        "apiVersion": "v1",
        "metadata": {"name": "cm", "labels": {"a": "b"}},
        "data": {"k": "v"},
    }


def test_bad_magic_is_a_400_naming_the_prefix() -> None:
    assert "k8s\\x00" in bad_request(b'{"kind":"ConfigMap"}').message


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param(envelope("v1", "Widget", b""), "cannot decode Widget (v1)", id="unknown-kind"),
        pytest.param(envelope("apps/v2", "Deployment", b""), "Deployment (apps/v2)", id="unknown-version"),
        pytest.param(MAGIC + pb(2, b""), "does not name its apiVersion and kind", id="no-type-meta"),
        pytest.param(envelope("v1", "ConfigMap", b"", pb(3, "gzip")), "contentEncoding 'gzip'", id="encoded"),
        pytest.param(MAGIC + b"\x0a\x10", "runs past the end", id="truncated"),
        pytest.param(envelope("v1", "ConfigMap", pb(1, 5)), "ConfigMap.metadata: expected a length", id="wire-type"),
        pytest.param(envelope("v1", "ConfigMap", pb(1, pb(1, b"\xff"))), "not valid UTF-8", id="utf8"),
        pytest.param(envelope("v1", "ConfigMap", pb(1, pb(8, pb(1, 2**60)))), "out of range", id="time-range"),
    ],
)
def test_bad_envelopes_are_400s(data: bytes, message: str) -> None:
    assert message in bad_request(data).message


# --- kubectl round trips --------------------------------------------------------------------------------------

VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]
DISCOVERY: dict[str, list[tuple[str, str, bool]]] = {
    "v1": [
        ("namespaces", "Namespace", False),
        ("configmaps", "ConfigMap", True),
        ("secrets", "Secret", True),
        ("serviceaccounts", "ServiceAccount", True),
        ("services", "Service", True),
        ("pods", "Pod", True),
        ("resourcequotas", "ResourceQuota", True),
    ],
    "apps/v1": [("deployments", "Deployment", True)],
    "autoscaling/v1": [("horizontalpodautoscalers", "HorizontalPodAutoscaler", True)],
    "batch/v1": [("jobs", "Job", True), ("cronjobs", "CronJob", True)],
    "rbac.authorization.k8s.io/v1": [
        ("roles", "Role", True),
        ("rolebindings", "RoleBinding", True),
        ("clusterroles", "ClusterRole", False),
        ("clusterrolebindings", "ClusterRoleBinding", False),
    ],
    "networking.k8s.io/v1": [("ingresses", "Ingress", True)],
    "policy/v1": [("poddisruptionbudgets", "PodDisruptionBudget", True)],
    "scheduling.k8s.io/v1": [("priorityclasses", "PriorityClass", False)],
    "certificates.k8s.io/v1": [("certificatesigningrequests", "CertificateSigningRequest", False)],
}


def _resource_list(group_version: str) -> dict[str, Any]:
    resources = [
        {"name": plural, "singularName": kind.lower(), "namespaced": namespaced, "kind": kind, "verbs": VERBS}
        for plural, kind, namespaced in DISCOVERY[group_version]
    ]
    if group_version == "v1":
        resources.append({"name": "serviceaccounts/token", "namespaced": True, "kind": "TokenRequest", "verbs": []})
    if group_version == "apps/v1":
        scale = {"group": "autoscaling", "version": "v1", "kind": "Scale", "verbs": ["get", "patch", "update"]}
        resources.append({"name": "deployments/scale", "namespaced": True, **scale})
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}


def _group_list() -> dict[str, Any]:
    groups = []
    for group_version in DISCOVERY:
        if "/" in group_version:
            name, version = group_version.split("/")
            gv = {"groupVersion": group_version, "version": version}
            groups.append({"name": name, "versions": [gv], "preferredVersion": gv})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


@dataclass
class Capture:
    """A discovery-only API server that records what kubectl writes, plus objects kubectl may read first."""

    root: Path
    url: str = ""
    bodies: list[tuple[str, str, bytes]] = field(default_factory=list)
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if request.method in ("POST", "PUT"):
            self.bodies.append((f"{request.method} {path}", request.content_type, await request.read()))
            return web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Success"}, status=201)
        if path == "/version":
            return web.json_response({"major": "1", "minor": "32", "gitVersion": "v1.32.0"})
        if path == "/api":
            return web.json_response({"kind": "APIVersions", "versions": ["v1"]})
        if path == "/apis":
            return web.json_response(_group_list())
        group_version = path.removeprefix("/api/").removeprefix("/apis/")
        if group_version in DISCOVERY:
            return web.json_response(_resource_list(group_version))
        if path in self.objects:
            return web.json_response(self.objects[path])
        return web.json_response({"kind": "Status", "apiVersion": "v1", "code": 404, "reason": "NotFound"}, status=404)

    async def kubectl(self, *args: str) -> tuple[int, str, str]:
        env = {
            **os.environ,
            "HOME": str(self.root),
            "KUBECONFIG": str(self.root / "kubeconfig"),
            "KUBECACHEDIR": str(self.root / "cache"),
        }
        argv = ["kubectl", f"--server={self.url}", "-n", "default", *args]
        proc = await asyncio.create_subprocess_exec(
            *argv, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        return proc.returncode or 0, out.decode(), err.decode()

    async def dry_run(self, *args: str) -> dict[str, Any]:
        split = args.index("--") if "--" in args else len(args)
        rc, out, err = await self.kubectl(*args[:split], "--dry-run=client", "-o", "json", *args[split:])
        assert rc == 0, err
        result: dict[str, Any] = json.loads(out)
        return result

    async def body(self, *args: str) -> bytes:
        """The single request body kubectl writes for `args`; it must be protobuf."""
        before = len(self.bodies)
        _rc, out, err = await self.kubectl(*args)
        written = self.bodies[before:]
        assert len(written) == 1, f"expected one write, got {[w[0] for w in written]}: {err}{out}"
        assert written[0][1] == PROTOBUF, f"kubectl sent {written[0][1]} for {args}"
        return written[0][2]


@pytest.fixture
async def capture(tmp_path: Path) -> AsyncIterator[Capture]:
    if shutil.which("kubectl") is None:
        pytest.fail("kubectl must be on PATH for the protobuf round-trip tests")
    (tmp_path / "kubeconfig").write_text("apiVersion: v1\nkind: Config\n")
    _files(tmp_path / "files")
    cap = Capture(tmp_path)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", cap.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    cap.url = f"http://{host}:{port}"
    yield cap
    await runner.cleanup()


def _files(directory: Path) -> None:
    directory.mkdir()
    (directory / "app.properties").write_text("color=blue\nsize=2\n")
    (directory / "blob.bin").write_bytes(bytes(range(256)))
    (directory / "vars.env").write_text("A=1\nB=two words\n")
    make_ca("tls.example").write(directory, "tls")


def without_nulls(value: Any) -> Any:
    """Go writes `null` for nil slices and zero times; a JSON client leaving them out sends the same object."""
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value


GENERATORS = [
    pytest.param("create configmap cm --from-literal=a=1 --from-literal=empty=", id="configmap-literal"),
    pytest.param(
        "create configmap cm --from-file={files}/app.properties --from-file=b={files}/blob.bin", id="configmap-file"
    ),
    pytest.param("create configmap cm --from-env-file={files}/vars.env --append-hash", id="configmap-env-file"),
    pytest.param(
        "create secret generic s --from-literal=a=b --from-file={files}/blob.bin --type=x/y", id="secret-generic"
    ),
    pytest.param(
        "create secret docker-registry d --docker-server=r.io --docker-username=u --docker-password=p",
        id="secret-docker-registry",
    ),
    pytest.param("create secret tls t --cert={files}/tls.crt --key={files}/tls.key", id="secret-tls"),
    pytest.param("create namespace team-a", id="namespace"),
    pytest.param("create serviceaccount bot", id="serviceaccount"),
    pytest.param("create deployment web --image=nginx --replicas=3 --port=80", id="deployment"),
    pytest.param(
        "create deployment pair --image=nginx --image=busybox --replicas=0", id="deployment-two-images-zero-replicas"
    ),
    pytest.param("create deployment cmd --image=busybox -- sleep 3600", id="deployment-command"),
    pytest.param("create service clusterip s --tcp=80:8080 --tcp=443:https", id="service-clusterip"),
    pytest.param("create service clusterip h --clusterip=None", id="service-headless"),
    pytest.param("create service nodeport np --tcp=80:8080 --node-port=30080", id="service-nodeport"),
    pytest.param("create service loadbalancer lb --tcp=80", id="service-loadbalancer"),
    pytest.param("create service externalname ext --external-name=db.example.com", id="service-externalname"),
    pytest.param("create job j --image=busybox -- echo hi", id="job"),
    pytest.param("create job copy --from=cronjob/src", id="job-from-cronjob"),
    pytest.param("create cronjob cj --image=busybox '--schedule=*/5 * * * *' --restart=Never -- date", id="cronjob"),
    pytest.param(
        "create role r --verb=get,list --resource=pods,deployments.apps,pods/log --resource-name=x", id="role"
    ),
    pytest.param("create rolebinding rb --role=r --user=u --group=g --serviceaccount=ns:sa", id="rolebinding"),
    pytest.param("create rolebinding rb --clusterrole=view --user=u", id="rolebinding-clusterrole"),
    pytest.param(
        "create clusterrole cr --verb=get --non-resource-url=/healthz --non-resource-url=/logs/*", id="clusterrole"
    ),
    pytest.param(
        "create clusterrole agg --aggregation-rule=rbac.example.com/aggregate=true", id="clusterrole-aggregation"
    ),
    pytest.param(
        "create clusterrolebinding crb --clusterrole=cr --user=u --serviceaccount=kube-system:x",
        id="clusterrolebinding",
    ),
    pytest.param("create quota q --hard=pods=2,requests.cpu=500m,limits.memory=1Gi --scopes=BestEffort", id="quota"),
    pytest.param("create pdb pdb '--selector=app=x,tier in (a,b),!canary' --min-available=50%", id="pdb-min-available"),
    pytest.param("create pdb pdb --selector=app=x --max-unavailable=1", id="pdb-max-unavailable"),
    pytest.param(
        "create priorityclass hi --value=1000 --global-default --description=d --preemption-policy=Never",
        id="priorityclass",
    ),
    pytest.param(
        "create ingress ing --class=nginx --rule=foo.com/bar*=svc:8080,tls=cert --rule=/=web:http"
        " --default-backend=def:80 --annotation=a=b",
        id="ingress",
    ),
    pytest.param("autoscale deployment web --min=2 --max=5 --cpu-percent=50", id="autoscale"),
]


@pytest.mark.parametrize("command", GENERATORS)
async def test_kubectl_body_decodes_to_its_dry_run_json(capture: Capture, command: str) -> None:
    capture.objects.update(READABLE_OBJECTS)
    argv = shlex.split(command.format(files=capture.root / "files"))
    expected, body = await asyncio.gather(capture.dry_run(*argv), capture.body(*argv))
    assert decode_k8s_protobuf(body) == without_nulls(expected)


CONTAINER: dict[str, Any] = {
    "name": "main",
    "image": "registry.example/app:1",
    "command": ["/app"],
    "args": ["--port", "8080"],
    "workingDir": "/work",
    "ports": [
        {"name": "http", "containerPort": 8080, "protocol": "TCP"},
        {"containerPort": 9090, "hostPort": 19090, "hostIP": "0.0.0.0", "protocol": "UDP"},
    ],
    "env": [
        {"name": "PLAIN", "value": "1"},
        {"name": "EMPTY"},
        {"name": "NODE", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "spec.nodeName"}}},
        {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
        {"name": "CM", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "k", "optional": False}}},
        {"name": "SEC", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "k"}}},
    ],
    "envFrom": [{"prefix": "P_", "configMapRef": {"name": "cfg"}}, {"secretRef": {"name": "sec", "optional": True}}],
    "resources": {
        "limits": {"cpu": "2", "memory": "1Gi", "nvidia.com/gpu": "1"},
        "requests": {"cpu": "500m", "memory": "512Mi"},
        "claims": [{"name": "gpu", "request": "one"}],
    },
    "volumeMounts": [
        {"name": "scratch", "mountPath": "/scratch"},
        {"name": "cfg", "mountPath": "/etc/cfg", "readOnly": True, "subPath": "a", "mountPropagation": "None"},
        {"name": "sec", "mountPath": "/etc/sec", "subPathExpr": "$(POD)", "recursiveReadOnly": "Disabled"},
    ],
    "volumeDevices": [{"name": "raw", "devicePath": "/dev/xvda"}],
    "livenessProbe": {
        "httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTP", "httpHeaders": [{"name": "X", "value": ""}]},
        "initialDelaySeconds": 5,
        "periodSeconds": 10,
        "failureThreshold": 3,
        "terminationGracePeriodSeconds": 0,
    },
    "readinessProbe": {"tcpSocket": {"port": 8080, "host": "localhost"}, "timeoutSeconds": 2, "successThreshold": 1},
    "startupProbe": {"grpc": {"port": 9090, "service": ""}},
    "lifecycle": {"postStart": {"exec": {"command": ["touch", "/ready"]}}, "preStop": {"sleep": {"seconds": 0}}},
    "terminationMessagePath": "/dev/termination-log",
    "terminationMessagePolicy": "FallbackToLogsOnError",
    "imagePullPolicy": "IfNotPresent",
    "securityContext": {
        "capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]},
        "privileged": False,
        "seLinuxOptions": {"level": "s0:c1"},
        "runAsUser": 0,
        "runAsNonRoot": False,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "runAsGroup": 1000,
        "procMount": "Default",
        "seccompProfile": {"type": "RuntimeDefault"},
        "appArmorProfile": {"type": "Localhost", "localhostProfile": "p"},
    },
    "stdin": True,
    "stdinOnce": True,
    "tty": True,
    "resizePolicy": [{"resourceName": "cpu", "restartPolicy": "NotRequired"}],
}
POD_SPEC: dict[str, Any] = {
    "volumes": [
        {"name": "scratch", "emptyDir": {}},
        {"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
        {"name": "cfg", "configMap": {"name": "cfg", "items": [{"key": "a", "path": "a.txt", "mode": 256}]}},
        {"name": "sec", "secret": {"secretName": "sec", "defaultMode": 420, "optional": True}},
        {"name": "host", "hostPath": {"path": "/var/log", "type": "Directory"}},
        {"name": "claim", "persistentVolumeClaim": {"claimName": "data", "readOnly": True}},
        {"name": "nfs", "nfs": {"server": "nfs.example", "path": "/export"}},
        {"name": "down", "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
        {
            "name": "proj",
            "projected": {
                "defaultMode": 288,
                "sources": [
                    {"serviceAccountToken": {"audience": "vault", "expirationSeconds": 600, "path": "token"}},
                    {"configMap": {"name": "cfg", "optional": True}},
                    {"secret": {"name": "sec", "items": [{"key": "k", "path": "k"}]}},
                    {"downwardAPI": {"items": [{"path": "cpu", "resourceFieldRef": {"resource": "limits.cpu"}}]}},
                ],
            },
        },
        {"name": "csi", "csi": {"driver": "d.example", "readOnly": True, "volumeAttributes": {"a": "b"}}},
        {
            "name": "eph",
            "ephemeral": {
                "volumeClaimTemplate": {
                    "metadata": {"labels": {"a": "b"}},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "storageClassName": "fast",
                        "volumeMode": "Filesystem",
                        "resources": {"requests": {"storage": "1Gi"}},
                    },
                }
            },
        },
        {"name": "img", "image": {"reference": "registry.example/data:1", "pullPolicy": "IfNotPresent"}},
        {"name": "raw", "persistentVolumeClaim": {"claimName": "raw"}},
    ],
    "initContainers": [
        {"name": "init", "image": "busybox", "command": ["true"]},
        {"name": "sidecar", "image": "envoy", "restartPolicy": "Always"},
    ],
    "containers": [CONTAINER, {"name": "second", "image": "busybox"}],
    "restartPolicy": "OnFailure",
    "terminationGracePeriodSeconds": 0,
    "activeDeadlineSeconds": 3600,
    "dnsPolicy": "ClusterFirstWithHostNet",
    "nodeSelector": {"kubernetes.io/os": "linux", "gpu": ""},
    "serviceAccountName": "runner",
    "serviceAccount": "runner",
    "automountServiceAccountToken": False,
    "nodeName": "node-1",
    "hostNetwork": True,
    "hostPID": True,
    "hostIPC": True,
    "shareProcessNamespace": False,
    "securityContext": {
        "runAsUser": 1000,
        "runAsGroup": 0,
        "runAsNonRoot": True,
        "fsGroup": 2000,
        "supplementalGroups": [4, 5],
        "fsGroupChangePolicy": "OnRootMismatch",
        "sysctls": [{"name": "net.core.somaxconn", "value": "1024"}],
        "seccompProfile": {"type": "Localhost", "localhostProfile": "prof.json"},
        "windowsOptions": {
            "gmsaCredentialSpecName": "spec-name",
            "gmsaCredentialSpec": "{}",
            "runAsUserName": "ContainerUser",
            "hostProcess": False,
        },
        "supplementalGroupsPolicy": "Strict",
        "seLinuxChangePolicy": "MountOption",
    },
    "imagePullSecrets": [{"name": "regcred"}],
    "hostname": "h",
    "subdomain": "sub",
    "affinity": {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {
                        "matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}],
                        "matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["n0"]}],
                    }
                ]
            },
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 10, "preference": {"matchExpressions": [{"key": "ssd", "operator": "Exists"}]}}
            ],
        },
        "podAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {
                    "labelSelector": {"matchLabels": {"app": "db"}},
                    "topologyKey": "zone",
                    "namespaces": ["data"],
                    "namespaceSelector": {},
                    "matchLabelKeys": ["v"],
                    "mismatchLabelKeys": ["w"],
                }
            ]
        },
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 100, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname"}}
            ]
        },
    },
    "schedulerName": "custom",
    "tolerations": [
        {"key": "gpu", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "t", "operator": "Equal", "value": "v", "effect": "NoExecute", "tolerationSeconds": 0},
        {"operator": "Exists"},
    ],
    "hostAliases": [{"ip": "10.0.0.1", "hostnames": ["a.local", "b.local"]}],
    "priorityClassName": "high",
    "priority": 0,
    "dnsConfig": {"nameservers": ["1.1.1.1"], "searches": ["s.local"], "options": [{"name": "ndots", "value": "2"}]},
    "readinessGates": [{"conditionType": "example.com/ready"}],
    "runtimeClassName": "nvidia",
    "enableServiceLinks": False,
    "preemptionPolicy": "Never",
    "overhead": {"cpu": "100m"},
    "topologySpreadConstraints": [
        {
            "maxSkew": 1,
            "topologyKey": "zone",
            "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["x"]}]},
            "minDomains": 2,
            "nodeAffinityPolicy": "Honor",
            "nodeTaintsPolicy": "Ignore",
            "matchLabelKeys": ["pod-template-hash"],
        }
    ],
    "setHostnameAsFQDN": False,
    "os": {"name": "linux"},
    "hostUsers": False,
    "schedulingGates": [{"name": "wait"}],
    "resources": {"limits": {"cpu": "4"}},
}
SOURCE_CRONJOB: dict[str, Any] = {
    "apiVersion": "batch/v1",
    "kind": "CronJob",
    "metadata": {"name": "src", "namespace": "default", "uid": "0b0e5c7a-0000-4000-8000-000000000001"},
    "spec": {
        "schedule": "@hourly",
        "jobTemplate": {
            "metadata": {"labels": {"team": "ml"}, "annotations": {"note": "from template"}},
            "spec": {
                "parallelism": 2,
                "completions": 4,
                "activeDeadlineSeconds": 600,
                "backoffLimit": 0,
                "ttlSecondsAfterFinished": 0,
                "completionMode": "Indexed",
                "suspend": False,
                "manualSelector": True,
                "selector": {
                    "matchLabels": {"job": "x"},
                    "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["a"]}],
                },
                "podFailurePolicy": {
                    "rules": [
                        {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [1, 42]}},
                        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
                    ]
                },
                "backoffLimitPerIndex": 1,
                "maxFailedIndexes": 2,
                "podReplacementPolicy": "Failed",
                "template": {"metadata": {"labels": {"job": "x"}}, "spec": POD_SPEC},
            },
        },
    },
}


async def test_kubectl_create_token_body(capture: Capture) -> None:
    args = ["create", "token", "bot", "--audience=vault", "--duration=1h", "--bound-object-kind=Pod"]
    body = await capture.body(*args, "--bound-object-name=p", "--bound-object-uid=0b0e5c7a")
    assert decode_k8s_protobuf(body) == {
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {},
        "spec": {
            "audiences": ["vault"],
            "expirationSeconds": 3600,
            "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "p", "uid": "0b0e5c7a"},
        },
        "status": {"token": ""},
    }


CSR_PATH = "/apis/certificates.k8s.io/v1/certificatesigningrequests/csr1"
SOURCE_CSR: dict[str, Any] = {
    "apiVersion": "certificates.k8s.io/v1",
    "kind": "CertificateSigningRequest",
    "metadata": {
        "name": "csr1",
        "generateName": "csr-",
        "namespace": "ignored",
        "selfLink": "/x",
        "uid": "0b0e5c7a-0000-4000-8000-000000000002",
        "resourceVersion": "42",
        "generation": 3,
        "creationTimestamp": "2024-05-06T07:08:09Z",
        "deletionTimestamp": "2024-05-06T07:09:09Z",
        "deletionGracePeriodSeconds": 0,
        "labels": {"a": "1", "empty": ""},
        "annotations": {"note": "x"},
        "ownerReferences": [
            {"apiVersion": "v1", "kind": "Node", "name": "n1", "uid": "u1", "controller": True},
            {"apiVersion": "apps/v1", "kind": "Deployment", "name": "d", "uid": "u2", "blockOwnerDeletion": False},
        ],
        "finalizers": ["example.com/keep", "other"],
        "managedFields": [
            {
                "manager": "kubectl-client-side-apply",
                "operation": "Update",
                "apiVersion": "certificates.k8s.io/v1",
                "time": "2024-05-06T07:08:09Z",
                "fieldsType": "FieldsV1",
                "fieldsV1": {"f:spec": {"f:usages": {}}, "f:metadata": {"f:labels": {".": {}, "f:a": {}}}},
            },
            {"manager": "ctrl", "operation": "Update", "subresource": "status", "fieldsType": "FieldsV1"},
        ],
    },
    "spec": {
        "request": base64.b64encode(b"-----BEGIN CERTIFICATE REQUEST-----\n").decode(),
        "signerName": "kubernetes.io/kube-apiserver-client",
        "expirationSeconds": 86400,
        "usages": ["client auth", "digital signature"],
        "username": "admin",
        "uid": "u-1",
        "groups": ["system:masters", "system:authenticated"],
        "extra": {"scopes": ["a", "b"], "none": []},
    },
    "status": {
        "conditions": [
            {
                "type": "Pending",
                "status": "Unknown",
                "reason": "R",
                "message": "M",
                "lastUpdateTime": "2024-05-06T07:08:09Z",
                "lastTransitionTime": "2024-05-06T07:08:10Z",
            }
        ],
        "certificate": base64.b64encode(b"\x00\x01").decode(),
    },
}


async def test_kubectl_certificate_approve_round_trips_object_meta(capture: Capture) -> None:
    """`certificate approve` reads the CSR as JSON and writes it back whole as protobuf: every ObjectMeta field."""
    capture.objects[CSR_PATH] = SOURCE_CSR
    decoded = decode_k8s_protobuf(await capture.body("certificate", "approve", "csr1"))
    conditions = decoded["status"].pop("conditions")
    expected = json.loads(json.dumps(SOURCE_CSR))
    assert conditions[0] == expected["status"].pop("conditions")[0]
    assert decoded == expected
    approved = conditions[1]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", approved.pop("lastUpdateTime"))
    assert approved == {
        "type": "Approved",
        "status": "True",
        "reason": "KubectlApprove",
        "message": "This CSR was approved by kubectl certificate approve.",
    }


WEB_DEPLOYMENT: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web", "namespace": "default"},
    "spec": {
        "replicas": 1,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}},
    },
}
READABLE_OBJECTS = {
    "/apis/batch/v1/namespaces/default/cronjobs/src": SOURCE_CRONJOB,
    "/apis/apps/v1/namespaces/default/deployments/web": WEB_DEPLOYMENT,
}
