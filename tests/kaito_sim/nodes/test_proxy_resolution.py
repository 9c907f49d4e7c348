"""Unit tests of how the API server's proxy resolves a Service, its Endpoints and a pod port to a local port."""

from __future__ import annotations

import pytest

from kaito_sim.apiserver.cluster import Cluster
from kaito_sim.apiserver.errors import ApiError, JsonObj
from kaito_sim.nodes.proxy import Proxy, split_scheme_name_port

NS = "default"
SIMULATED = (
    "is simulated, with no process behind port {port}: only process pods (SimServer(process_pods=...)) can be "
    "reached through the simulated API server's proxy"
)


class Backends:
    """Local ports by (pod name, container port); records what was asked."""

    def __init__(self, ports: dict[tuple[str, int], int]) -> None:
        self.ports = ports
        self.asked: list[tuple[str, str, str, int]] = []

    def local_port(self, namespace: str, pod: str, uid: str, port: int) -> int | None:
        self.asked.append((namespace, pod, uid, port))
        return self.ports.get((pod, port))


def pod(cluster: Cluster, name: str, ip: str, ports: list[JsonObj] | None = None) -> JsonObj:
    container: JsonObj = {"name": "c", "image": "x"}
    if ports is not None:
        container["ports"] = ports
    obj: JsonObj = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"containers": [container]},
        "status": {"podIP": ip},
    }
    cluster.seed(("", "pods"), obj)
    return obj


def endpoints(cluster: Cluster, subsets: list[JsonObj], name: str = "web") -> None:
    obj = {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": name, "namespace": NS}, "subsets": subsets}
    cluster.seed(("", "endpoints"), obj)


def address(name: str, ip: str) -> JsonObj:
    return {"ip": ip, "targetRef": {"kind": "Pod", "name": name, "namespace": NS}}


@pytest.fixture
def cluster() -> Cluster:
    made = Cluster()
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": NS},
        "spec": {
            "ports": [
                {"name": "http", "port": 80, "targetPort": "http"},
                {"name": "metrics", "port": 9090, "targetPort": 8081},
            ]
        },
    }
    made.seed(("", "services"), svc)
    return made


def assert_unavailable(err: pytest.ExceptionInfo[ApiError], message: str) -> None:
    assert (err.value.code, err.value.reason, err.value.message) == (503, "ServiceUnavailable", message)


def test_service_port_number_resolves_by_name_to_the_endpoint_port_and_local_port(cluster: Cluster) -> None:
    web = pod(cluster, "web-0", "10.244.0.5")
    endpoints(
        cluster,
        [
            {"addresses": [address("web-0", "10.244.0.5")], "ports": [{"name": "metrics", "port": 8081}]},
            {"addresses": [address("web-0", "10.244.0.5")], "ports": [{"name": "http", "port": 5000}]},
        ],
    )
    backends = Backends({("web-0", 5000): 41000, ("web-0", 8081): 41001})
    proxy = Proxy(cluster, backends)
    assert proxy.service_port(NS, "web", 80) == 41000
    assert proxy.service_port(NS, "web", 9090) == 41001
    assert backends.asked[-1] == (NS, "web-0", web["metadata"]["uid"], 8081)


def test_unnamed_service_port_matches_the_unnamed_endpoint_port() -> None:
    cluster = Cluster()
    spec = {"ports": [{"port": 80, "targetPort": 8000}]}
    cluster.seed(("", "services"), {"kind": "Service", "metadata": {"name": "web", "namespace": NS}, "spec": spec})
    pod(cluster, "web-0", "10.244.0.5")
    endpoints(cluster, [{"addresses": [address("web-0", "10.244.0.5")], "ports": [{"port": 8000}]}])
    assert Proxy(cluster, Backends({("web-0", 8000): 42000})).service_port(NS, "web", 80) == 42000


def test_named_port_resolution_and_the_identifier_in_errors(cluster: Cluster) -> None:
    web = pod(cluster, "web-0", "10.244.0.5")
    endpoints(cluster, [{"addresses": [address("web-0", "10.244.0.5")], "ports": [{"name": "http", "port": 5000}]}])
    proxy = Proxy(cluster, Backends({}))
    assert proxy._service_target(NS, "web", "http", "https:web:http") == (web, 5000)
    with pytest.raises(ApiError) as err:
        proxy._service_target(NS, "web", "grpc", "https:web:grpc")
    assert_unavailable(err, 'no endpoints available for service "https:web:grpc"')


def test_no_such_service_port(cluster: Cluster) -> None:
    endpoints(cluster, [])
    with pytest.raises(ApiError) as err:
        Proxy(cluster, Backends({})).service_port(NS, "web", 81)
    assert_unavailable(err, 'no service port 81 found for service "web"')


def test_endpoints_without_subsets(cluster: Cluster) -> None:
    endpoints(cluster, [])
    with pytest.raises(ApiError) as err:
        Proxy(cluster, Backends({})).service_port(NS, "web", 80)
    assert_unavailable(err, 'no endpoints available for service "web"')


@pytest.mark.parametrize(
    "subset",
    [
        {"notReadyAddresses": [address("web-0", "10.244.0.5")], "ports": [{"name": "http", "port": 5000}]},
        {"addresses": [address("web-0", "10.244.0.5")], "ports": [{"name": "metrics", "port": 8081}]},
        {"addresses": [address("web-0", "10.244.0.9")], "ports": [{"name": "http", "port": 5000}]},
        {"addresses": [address("gone", "10.244.0.5")], "ports": [{"name": "http", "port": 5000}]},
        {"addresses": [{"ip": "10.244.0.5"}], "ports": [{"name": "http", "port": 5000}]},
    ],
    ids=["not-ready", "other-port-name", "stale-ip", "missing-pod", "no-target-ref"],
)
def test_no_ready_endpoint_carrying_the_port(cluster: Cluster, subset: JsonObj) -> None:
    pod(cluster, "web-0", "10.244.0.5")
    endpoints(cluster, [subset])
    with pytest.raises(ApiError) as err:
        Proxy(cluster, Backends({("web-0", 5000): 1})).service_port(NS, "web", 80)
    assert_unavailable(err, 'no endpoints available for service "web"')


def test_an_endpoint_with_a_local_process_is_preferred(cluster: Cluster) -> None:
    for i in range(4):
        pod(cluster, f"web-{i}", f"10.244.0.{i + 10}")
    addresses = [address(f"web-{i}", f"10.244.0.{i + 10}") for i in range(4)]
    endpoints(cluster, [{"addresses": addresses, "ports": [{"name": "http", "port": 5000}]}])
    proxy = Proxy(cluster, Backends({("web-2", 5000): 43000}))
    assert {proxy.service_port(NS, "web", 80) for _ in range(20)} == {43000}


@pytest.mark.parametrize("backends", [None, Backends({})], ids=["no-process-pods", "simulated-pod"])
def test_an_endpoint_without_a_process_answers_503(cluster: Cluster, backends: Backends | None) -> None:
    pod(cluster, "web-0", "10.244.0.5")
    endpoints(cluster, [{"addresses": [address("web-0", "10.244.0.5")], "ports": [{"name": "http", "port": 5000}]}])
    with pytest.raises(ApiError) as err:
        Proxy(cluster, backends).service_port(NS, "web", 80)
    assert_unavailable(err, 'pod "web-0" ' + SIMULATED.format(port=5000))


def test_missing_service_or_endpoints_is_not_found(cluster: Cluster) -> None:
    proxy = Proxy(cluster, Backends({}))
    with pytest.raises(ApiError) as err:
        proxy.service_port(NS, "nope", 80)
    assert (err.value.code, err.value.message) == (404, 'services "nope" not found')
    with pytest.raises(ApiError) as err:
        proxy.service_port(NS, "web", 80)
    assert (err.value.code, err.value.message) == (404, 'endpoints "web" not found')


def test_pod_port_by_number_name_first_declared_or_scheme(cluster: Cluster) -> None:
    proxy = Proxy(cluster, None)
    declared = pod(cluster, "p", "10.244.0.5", [{"name": "http", "containerPort": 5000}, {"containerPort": 8081}])
    bare = pod(cluster, "q", "10.244.0.6")
    assert proxy._pod_port(declared, "7000", "http") == 7000
    assert proxy._pod_port(declared, "http", "http") == 5000
    assert proxy._pod_port(declared, "8081", "http") == 8081
    assert proxy._pod_port(declared, "", "https") == 5000
    assert proxy._pod_port(bare, "", "http") == 80
    assert proxy._pod_port(bare, "", "https") == 443
    with pytest.raises(ApiError) as err:
        proxy._pod_port(declared, "grpc", "http")
    assert_unavailable(err, 'pod "p" has no port named "grpc"')


@pytest.mark.parametrize(
    ("ident", "expected"),
    [
        ("web", ("http", "web", "")),
        ("web:", ("http", "web", "")),
        ("web:http", ("http", "web", "http")),
        ("http:web", ("http", "http", "web")),
        ("https:web:", ("https", "web", "")),
        ("http:web:8080", ("http", "web", "8080")),
    ],
)
def test_split_scheme_name_port(ident: str, expected: tuple[str, str, str]) -> None:
    assert split_scheme_name_port(ident, "service") == expected


@pytest.mark.parametrize("ident", ["", ":80", "https::80", "tcp:web:80", "a:b:c:d"])
def test_split_rejects_malformed_identifiers(ident: str) -> None:
    with pytest.raises(ApiError) as err:
        split_scheme_name_port(ident, "pod")
    expected = (400, "BadRequest", f'invalid pod request "{ident}"')
    assert (err.value.code, err.value.reason, err.value.message) == expected
