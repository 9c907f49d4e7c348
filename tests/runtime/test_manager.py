"""The manager on a running simulated cluster: metrics and probes over HTTP, leader election, graceful shutdown."""

from __future__ import annotations

import asyncio
import os
import signal

import aiohttp
import pytest
from kubernetes_asyncio import client as k8s

from kaito.runtime.builder import Builder
from kaito.runtime.client import Client
from kaito.runtime.kinds import CONFIG_MAP, LEASE
from kaito.runtime.manager import LeadershipLost, Manager, ManagerOptions
from kaito.runtime.metrics import RuntimeMetrics
from kaito.runtime.objects import Obj, ObjectKey
from kaito.runtime.reconcile import Result
from kaito_sim.server import SimServer
from tests.runtime.conftest import eventually

CONTROLLER_RUNTIME_METRICS = [
    "controller_runtime_reconcile_total",
    "controller_runtime_reconcile_errors_total",
    "controller_runtime_reconcile_time_seconds",
    "controller_runtime_max_concurrent_reconciles",
    "controller_runtime_active_workers",
    "workqueue_depth",
    "workqueue_adds_total",
    "workqueue_queue_duration_seconds",
    "workqueue_work_duration_seconds",
    "workqueue_retries_total",
    "workqueue_unfinished_work_seconds",
    "workqueue_longest_running_processor_seconds",
    "rest_client_requests_total",
    "rest_client_request_duration_seconds",
    "leader_election_master_status",
]


def configmap(namespace: str, name: str) -> Obj:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace}}


async def fetch(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        return resp.status, await resp.text()


def elected_options(namespace: str, identity: str, **overrides: object) -> ManagerOptions:
    settings: dict[str, object] = {
        "metrics_address": None,
        "health_address": None,
        "namespace": namespace,
        "leader_election": True,
        "leader_election_id": "example-lock",
        "leader_election_namespace": namespace,
        "identity": identity,
        "lease_duration": 2.0,
        "renew_deadline": 1.5,
        "retry_period": 0.1,
    }
    settings.update(overrides)
    return ManagerOptions(**settings)  # type: ignore[arg-type]


async def test_metrics_and_probes_are_served(api: k8s.ApiClient, namespace: str) -> None:
    kclient = Client(api, qps=0, burst=0, metrics=RuntimeMetrics())  # the manager serves the client's metrics
    options = ManagerOptions(
        metrics_address="127.0.0.1:0",
        health_address="127.0.0.1:0",
        namespace=namespace,
        leader_election=True,
        leader_election_id="metrics-lock",
        leader_election_namespace=namespace,
    )
    manager = Manager(kclient, options=options)
    handled: list[ObjectKey] = []

    async def reconcile(key: ObjectKey) -> None:
        handled.append(key)

    Builder(manager, "metrics-demo").for_(CONFIG_MAP).complete(reconcile)
    stop = asyncio.Event()
    task = asyncio.create_task(manager.run(stop))
    await asyncio.wait_for(manager.elected.wait(), 10)
    await kclient.create(CONFIG_MAP, configmap(namespace, "a"))
    await eventually(lambda: bool(handled))
    status, text = await fetch(manager.servers["metrics"].url + "/metrics")
    assert status == 200
    for name in CONTROLLER_RUNTIME_METRICS:
        assert f"\n{name}" in text, f"{name} missing from /metrics"
    assert 'controller_runtime_reconcile_total{controller="metrics-demo",result="success"} 1.0' in text
    assert 'leader_election_master_status{name="metrics-lock"} 1.0' in text
    assert 'rest_client_requests_total{code="200",host=' in text
    health = manager.servers["health"].url
    assert await fetch(health + "/healthz") == (200, "ok")
    status, body = await fetch(health + "/readyz?verbose")
    assert status == 200 and "[+]cache-sync ok" in body
    stop.set()
    await asyncio.wait_for(task, 10)


async def test_crashed_runnable_fails_health(kclient: Client, namespace: str) -> None:
    options = ManagerOptions(metrics_address=None, health_address="127.0.0.1:0", namespace=namespace)
    manager = Manager(kclient, options=options)

    async def broken(stop: asyncio.Event) -> None:
        raise RuntimeError("disk on fire")

    manager.add(broken, name="broken-runnable", leader_elected=False)
    stop = asyncio.Event()
    task = asyncio.create_task(manager.run(stop))
    await asyncio.wait_for(manager.elected.wait(), 10)
    await eventually(lambda: not manager.crashes.healthy)
    status, body = await fetch(manager.servers["health"].url + "/healthz")
    assert status == 500
    assert "broken-runnable" in body and "disk on fire" in body
    stop.set()
    await asyncio.wait_for(task, 10)


async def test_only_the_leader_reconciles_and_a_standby_takes_over(kclient: Client, namespace: str) -> None:
    handled: dict[str, list[str]] = {"one": [], "two": []}
    managers: dict[str, Manager] = {}
    stops = {name: asyncio.Event() for name in handled}
    for name in handled:
        manager = Manager(kclient, options=elected_options(namespace, name))

        async def reconcile(key: ObjectKey, name: str = name) -> None:
            handled[name].append(key.name)

        Builder(manager, f"elected-{name}").for_(CONFIG_MAP).complete(reconcile)
        managers[name] = manager
    tasks = {name: asyncio.create_task(managers[name].run(stops[name])) for name in handled}
    done, _ = await asyncio.wait(
        [asyncio.ensure_future(m.elected.wait()) for m in managers.values()],
        return_when=asyncio.FIRST_COMPLETED,
        timeout=10,
    )
    assert done, "nobody became leader"
    leader = next(name for name, m in managers.items() if m.elected.is_set())
    standby = "two" if leader == "one" else "one"
    await kclient.create(CONFIG_MAP, configmap(namespace, "first"))
    await eventually(lambda: handled[leader] == ["first"])
    await asyncio.sleep(0.5)
    assert handled[standby] == []
    assert not managers[standby].elected.is_set()

    stops[leader].set()
    await asyncio.wait_for(tasks[leader], 10)
    lease = await kclient.get(LEASE, "example-lock", namespace=namespace)
    assert lease["spec"]["holderIdentity"] in ("", standby)
    started = asyncio.get_running_loop().time()
    await asyncio.wait_for(managers[standby].elected.wait(), 2.0)  # within one lease duration
    took_over = asyncio.get_running_loop().time() - started
    await kclient.create(CONFIG_MAP, configmap(namespace, "second"))
    await eventually(lambda: "second" in handled[standby])
    assert handled[leader] == ["first"]
    lease = await kclient.get(LEASE, "example-lock", namespace=namespace)
    assert lease["spec"]["holderIdentity"] == standby
    assert lease["spec"]["leaseTransitions"] >= 1
    assert took_over < 1.0  # released lease: no need to wait it out
    stops[standby].set()
    await asyncio.wait_for(tasks[standby], 10)


async def test_standby_waits_out_an_unreleased_lease(kclient: Client, namespace: str) -> None:
    holder = Manager(kclient, options=elected_options(namespace, "crashed", release_lease_on_stop=False))
    stop_holder = asyncio.Event()
    holder_task = asyncio.create_task(holder.run(stop_holder))
    await asyncio.wait_for(holder.elected.wait(), 10)
    stop_holder.set()
    await asyncio.wait_for(holder_task, 10)

    standby = Manager(kclient, options=elected_options(namespace, "standby"))
    stop_standby = asyncio.Event()
    started = asyncio.get_running_loop().time()
    standby_task = asyncio.create_task(standby.run(stop_standby))
    await asyncio.wait_for(standby.elected.wait(), 5)
    waited = asyncio.get_running_loop().time() - started
    assert 1.5 <= waited <= 3.5  # about one lease duration (2 s), measured from first sight of the record
    stop_standby.set()
    await asyncio.wait_for(standby_task, 10)


async def test_losing_the_lease_stops_controllers(sim: SimServer, kclient: Client, namespace: str) -> None:
    manager = Manager(kclient, options=elected_options(namespace, "loser"))
    handled: list[str] = []

    async def reconcile(key: ObjectKey) -> None:
        handled.append(key.name)

    Builder(manager, "loser").for_(CONFIG_MAP).complete(reconcile)
    task = asyncio.create_task(manager.run(asyncio.Event()))
    await asyncio.wait_for(manager.elected.wait(), 10)
    # Another replica steals the lease (as after a long pause of this one).
    lease = await kclient.get(LEASE, "example-lock", namespace=namespace)
    lease["spec"]["holderIdentity"] = "thief"
    lease["spec"]["leaseDurationSeconds"] = 3600
    await kclient.update(LEASE, lease)
    with pytest.raises(LeadershipLost):
        await asyncio.wait_for(task, 10)
    assert not manager.elected.is_set()


async def test_shutdown_drains_in_flight_work(kclient: Client, namespace: str) -> None:
    manager = Manager(kclient, options=ManagerOptions(metrics_address=None, health_address=None, namespace=namespace))
    started = asyncio.Event()
    finished: list[str] = []

    async def reconcile(key: ObjectKey) -> Result:
        started.set()
        await asyncio.sleep(0.5)
        finished.append(key.name)
        return Result()

    Builder(manager, "drain").for_(CONFIG_MAP).complete(reconcile)
    stop = asyncio.Event()
    task = asyncio.create_task(manager.run(stop))
    await asyncio.wait_for(manager.elected.wait(), 10)
    await kclient.create(CONFIG_MAP, configmap(namespace, "slow"))
    await asyncio.wait_for(started.wait(), 10)
    stop.set()
    await asyncio.wait_for(task, 10)
    assert finished == ["slow"]


async def test_sigterm_stops_the_manager_and_releases_the_lease(kclient: Client, namespace: str) -> None:
    manager = Manager(kclient, options=elected_options(namespace, "signalled"))
    task = asyncio.create_task(manager.run(handle_signals=True))
    await asyncio.wait_for(manager.elected.wait(), 10)
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.wait_for(task, 10)
    lease = await kclient.get(LEASE, "example-lock", namespace=namespace)
    assert lease["spec"]["holderIdentity"] == ""
