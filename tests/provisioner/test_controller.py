"""The NodeClaim controller against the simulated cluster and the fake cloud, observed the way a user would."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from kaito.api.nodeclaim import FINALIZER, LABEL_INSTANCE_TYPE, NODECLAIM
from kaito.provisioner import cloud
from kaito.provisioner.cloud import InstanceRequest, InstanceState
from kaito.provisioner.controller import REGISTRATION_HOLD_POLLS, NodeClaimReconciler, setup
from kaito.provisioner.fake import FakeCloudProvider
from kaito.provisioner.metrics import CloudProviderMetrics, MeteredCloudProvider
from kaito.runtime import errors
from kaito.runtime.client import Client
from kaito.runtime.clock import REAL_CLOCK, Clock, FakeClock
from kaito.runtime.events import EventRecorder
from kaito.runtime.kinds import NODE
from kaito.runtime.manager import Manager
from kaito.runtime.objects import Obj, ObjectKey
from kaito_sim.server import SimServer
from tests.conftest import Kubectl
from tests.provisioner.conftest import (
    SKU,
    claim_name,
    condition,
    counted,
    gpu_node,
    joiner,
    nodeclaim,
    options,
    read_claim,
    running,
    until,
)
from tests.runtime.conftest import eventually

pytestmark = pytest.mark.usefixtures("crds")
POLL = 0.05  # the manager's poll interval, in (virtual, where a test gives a FakeClock) seconds

QUOTA_MESSAGE = (
    "Operation could not be completed as it results in exceeding approved standardNCSv3Family Cores quota. "
    "Location: eastus, Current Limit: 0, Current Usage: 0, Additional Required: 6."
)


def manager_with(
    kclient: Client,
    namespace: str,
    provider: cloud.CloudProvider,
    *,
    retry_interval: float = 0.3,
    orphan_interval: float = 300.0,
    clock: Clock = REAL_CLOCK,
) -> Manager:
    manager = Manager(kclient, options=options(namespace), clock=clock)
    setup(manager, provider, poll_interval=POLL, retry_interval=retry_interval, orphan_interval=orphan_interval)
    return manager


def has(type_: str, status: str, reason: str | None = None) -> Any:
    def check(claim: Obj | None) -> bool:
        cond = condition(claim, type_)
        return cond.get("status") == status and (reason is None or cond.get("reason") == reason)

    return check


async def claim_table(kubectl: Kubectl) -> dict[str, dict[str, str]]:
    """`kubectl get nodeclaims` as {name: {column: value}}."""
    lines = (await kubectl("get", "nodeclaims", namespaced=False)).stdout.splitlines()
    header = lines[0].split()
    return {row.split()[0]: dict(zip(header, row.split(), strict=False)) for row in lines[1:]}


async def claim_events(kubectl: Kubectl, name: str) -> list[tuple[str, str]]:
    """(type, reason) of the Events about NodeClaim `name`, oldest first, as `kubectl get events` lists them."""
    listing = await kubectl("get", "events", "-n", "default", "-o", "json", namespaced=False)
    items = [e for e in listing.json()["items"] if e["involvedObject"].get("name") == name]
    items.sort(key=lambda e: (e.get("firstTimestamp") or "", e["metadata"].get("resourceVersion", "")))
    return [(e["type"], e["reason"]) for e in items]


async def test_claim_launches_registers_and_becomes_ready(
    kclient: Client, namespace: str, kubectl: Kubectl, fake: FakeCloudProvider
) -> None:
    name = claim_name("phi-3", namespace)
    async with running(manager_with(kclient, namespace, fake)):
        await kclient.create(NODECLAIM, nodeclaim(name, namespace=namespace))
        launched = await until(lambda: read_claim(kclient, name), has("Launched", "True", "Launched"))
        assert FINALIZER in launched["metadata"]["finalizers"]
        assert launched["metadata"]["labels"]["node.kubernetes.io/instance-type"] == SKU
        assert has("Ready", "Unknown")(launched)
        await asyncio.sleep(0.2)  # several polls while the cloud is still building
        assert fake.count("create") == 1

        await fake.finish(name)  # the VM is up; its kubelet registers the Node
        ready = await until(lambda: read_claim(kclient, name), has("Ready", "True", "Ready"))
        table = await claim_table(kubectl)

    status = ready["status"]
    node = f"aks-{name}-vmss000000"
    assert status["nodeName"] == node
    assert status["providerID"] == f"fake:///{name}"
    assert status["capacity"]["nvidia.com/gpu"] == "1" and status["allocatable"]["nvidia.com/gpu"] == "1"
    assert all(has(t, "True")(ready) for t in ("Launched", "Registered", "Initialized"))
    assert all(c["observedGeneration"] == ready["metadata"]["generation"] for c in status["conditions"])
    assert table[name]["TYPE"] == SKU and table[name]["READY"] == "True" and table[name]["NODE"] == node

    request = fake.requests[0]
    assert request == InstanceRequest(
        nodeclaim=name,
        instance_type=SKU,
        labels={
            "kaito.sh/workspace": "phi-3",
            "kaito.sh/workspacenamespace": namespace,
            "kaito.sh/nodeclaim": name,
            "karpenter.sh/nodepool": "kaito",
            "node.kubernetes.io/instance-type": SKU,
            "kubernetes.io/os": "linux",
        },
        taints=("sku=gpu:NoSchedule",),
        os_disk_gb=1024,
    )
    # The arrival is told by the conditions above; the claim makes no Normal Events.
    assert [e for e in await claim_events(kubectl, name) if e[0] == "Normal"] == []


async def test_ready_claim_makes_no_writes_and_no_cloud_calls(
    sim: SimServer, kclient: Client, namespace: str, fake: FakeCloudProvider
) -> None:
    fake.auto_finish = True
    name = claim_name("idle", namespace)
    async with running(manager_with(kclient, namespace, fake)):
        await kclient.create(NODECLAIM, nodeclaim(name, workspace="idle", namespace=namespace))
        await until(lambda: read_claim(kclient, name), has("Ready", "True"))
        await asyncio.sleep(0.3)  # let the last write's own watch event come back and be reconciled
        writes, calls = sum(r.is_write for r in sim.requests), len(fake.calls)
        await asyncio.sleep(2.0)
        assert sum(r.is_write for r in sim.requests) == writes
        assert len(fake.calls) == calls


async def test_instance_up_at_once_is_one_status_write_and_no_event(
    sim: SimServer, kclient: Client, namespace: str, kubectl: Kubectl
) -> None:
    fake = FakeCloudProvider(auto_finish=True)  # the instance is up at the first look after creating it
    name = claim_name("quick", namespace)
    claim = nodeclaim(name, namespace=namespace)
    claim["metadata"]["finalizers"] = [FINALIZER]  # as the workspace controller creates its claims
    claim["metadata"]["labels"][LABEL_INSTANCE_TYPE] = SKU
    clock = FakeClock()  # the held write's fallback requeue stays in the future
    manager = manager_with(kclient, namespace, fake, clock=clock)
    [controller] = manager.controllers
    key = ObjectKey("", name)

    def launched() -> bool:
        return fake.count("get") >= 1 and not controller.queue.is_processing(key) and not controller.queue.is_dirty(key)

    def claim_writes() -> list[tuple[str, str]]:
        return [(r.method, r.path.rsplit("/", 1)[-1]) for r in sim.requests if f"/nodeclaims/{name}" in r.path]

    async with running(manager):
        await kclient.create(NODECLAIM, claim)
        await eventually(launched)
        assert [w for w in claim_writes() if w[0] != "GET"] == []  # launched, the write waiting for the Node
        # Its kubelet registers the Node: Ready with its GPU by the time it is labelled as the claim's.
        [instance] = await fake.list()
        node = gpu_node(instance)
        node_name, labels = node["metadata"]["name"], node["metadata"].pop("labels")
        await kclient.create(NODE, node)
        await kclient.patch_status(NODE, node_name, {"status": node["status"]})
        await kclient.patch(NODE, node_name, {"metadata": {"labels": labels}})
        ready = await until(lambda: read_claim(kclient, name), has("Ready", "True"))
        assert all(has(t, "True")(ready) for t in ("Launched", "Registered", "Initialized"))
        await eventually(launched)  # the pass that wrote Ready (and would have told of it) is over
        events = await claim_events(kubectl, name)
    assert events == []
    assert [w for w in claim_writes() if w[0] != "GET"] == [("PATCH", "status")]


async def test_launch_waits_a_few_polls_for_its_node_then_is_written_alone(
    sim: SimServer, kclient: Client, namespace: str
) -> None:
    fake = FakeCloudProvider(auto_finish=True)  # up at the first look; no kubelet ever registers its Node
    name = claim_name("slow-node", namespace)
    claim = nodeclaim(name, namespace=namespace)
    claim["metadata"]["finalizers"] = [FINALIZER]
    claim["metadata"]["labels"][LABEL_INSTANCE_TYPE] = SKU
    clock = FakeClock()
    manager = manager_with(kclient, namespace, fake, clock=clock)
    [controller] = manager.controllers
    key = ObjectKey("", name)

    def looked(times: int) -> Callable[[], bool]:
        def done() -> bool:
            idle = not controller.queue.is_processing(key) and not controller.queue.is_dirty(key)
            return fake.count("get") >= times and idle

        return done

    def status_writes() -> int:
        return sum(1 for r in sim.requests if r.is_write and r.path.endswith(f"/nodeclaims/{name}/status"))

    async with running(manager):
        await kclient.create(NODECLAIM, claim)
        await eventually(looked(1))
        for polls in range(2, REGISTRATION_HOLD_POLLS + 1):  # held: the Node may join any moment
            await clock.step(POLL)
            await eventually(looked(polls))
            assert status_writes() == 0
        # Past the hold, the claim says it is launched and waits for its Node.
        registering = has("Registered", "Unknown", "AwaitingRegistration")
        waiting = await until(lambda: read_claim(kclient, name), registering, clock=clock)
    assert has("Launched", "True", "Launched")(waiting)
    assert status_writes() == 1


async def test_node_without_gpus_yet_is_not_initialized(kclient: Client, namespace: str) -> None:
    fake = FakeCloudProvider(auto_finish=True, on_ready=joiner(kclient, gpus=0))
    name = claim_name("nogpu", namespace)
    async with running(manager_with(kclient, namespace, fake)):
        await kclient.create(NODECLAIM, nodeclaim(name, namespace=namespace))
        waiting = await until(
            lambda: read_claim(kclient, name),
            lambda claim: "no nvidia.com/gpu capacity" in condition(claim, "Initialized").get("message", ""),
        )
        assert has("Initialized", "Unknown", "AwaitingInitialization")(waiting)
        assert has("Registered", "True")(waiting) and has("Ready", "Unknown", "AwaitingInitialization")(waiting)
        # The device plugin starts and advertises the GPU.
        node = waiting["status"]["nodeName"]
        await kclient.patch_status(NODE, node, {"status": {"capacity": {"nvidia.com/gpu": "1"}}})
        await until(lambda: read_claim(kclient, name), has("Ready", "True"))


async def test_quota_exceeded_is_reported_then_recovers_by_itself(
    kclient: Client, namespace: str, kubectl: Kubectl, fake: FakeCloudProvider
) -> None:
    metered = MeteredCloudProvider(fake, metrics=CloudProviderMetrics())
    fake.fail_next("create", cloud.QuotaExceeded(QUOTA_MESSAGE), times=1000)
    name = claim_name("quota", namespace)
    clock = FakeClock()
    async with running(manager_with(kclient, namespace, metered, retry_interval=0.5, clock=clock)):
        await kclient.create(NODECLAIM, nodeclaim(name, namespace=namespace))
        failed = await until(lambda: read_claim(kclient, name), has("Launched", "False"))
        for type_ in ("Launched", "Ready"):
            cond = condition(failed, type_)
            assert (cond["status"], cond["reason"], cond["message"]) == ("False", "QuotaExceeded", QUOTA_MESSAGE)
        assert (await claim_table(kubectl))[name]["READY"] == "False"
        await clock.step(0.45)
        assert fake.count("create") == 1, "retried before the retry interval"
        await until(lambda: counted(fake.count("create")), lambda creates: creates >= 3, clock=clock)

        fake.clear_failures()  # the quota was raised
        await until(lambda: read_claim(kclient, name), has("Launched", "True"), clock=clock)
        await fake.finish(name)
        await until(lambda: read_claim(kclient, name), has("Ready", "True"), clock=clock)
        events = await claim_events(kubectl, name)
    assert events.count(("Warning", "LaunchFailed")) == 1  # one per transition, not one per retry
    assert all(kind == "Warning" for kind, _ in events)  # the recovery is in the conditions, not an Event
    assert errors_total(metered, "create", "QuotaExceeded") == fake.count("create") - 1


async def test_throttled_launch_waits_for_retry_after(kclient: Client, namespace: str, fake: FakeCloudProvider) -> None:
    fake.fail_next("create", cloud.Throttled("too many requests", retry_after=0.8))
    name = claim_name("throttled", namespace)
    clock = FakeClock()
    started = clock.now()
    async with running(manager_with(kclient, namespace, fake, retry_interval=60, clock=clock)):
        await kclient.create(NODECLAIM, nodeclaim(name, namespace=namespace))
        throttled = await until(lambda: read_claim(kclient, name), has("Launched", "False", "Throttled"))
        assert condition(throttled, "Launched")["message"] == "too many requests"
        await clock.step(0.4)
        assert fake.count("create") == 1
        # Well before the 60 s retry interval: the cloud's retry_after wins.
        await until(lambda: read_claim(kclient, name), has("Launched", "True"), within=5, clock=clock)
        assert fake.count("create") == 2 and clock.now() - started < 60


async def test_failed_instance_is_deleted_and_launched_again(
    kclient: Client, namespace: str, fake: FakeCloudProvider
) -> None:
    name = claim_name("failed", namespace)
    async with running(manager_with(kclient, namespace, fake)):
        await kclient.create(NODECLAIM, nodeclaim(name, namespace=namespace))
        await until(lambda: read_claim(kclient, name), has("Launched", "True"))
        fake.fail_instance(name, cloud.InsufficientCapacity("Allocation failed: no NC6s_v3 capacity in eastus"))
        failed = await until(lambda: read_claim(kclient, name), has("Launched", "False", "InsufficientCapacity"))
        assert condition(failed, "Ready")["message"] == "Allocation failed: no NC6s_v3 capacity in eastus"
        await eventually(lambda: fake.count("delete", name) == 1)
        assert fake.instances[name].state is InstanceState.DELETING

        fake.finish_delete(name)
        await until(lambda: read_claim(kclient, name), has("Launched", "True"))
        assert fake.count("create") == 2
        await fake.finish(name)
        await until(lambda: read_claim(kclient, name), has("Ready", "True"))


async def test_delete_removes_instance_then_node_then_finalizer(
    kclient: Client, namespace: str, kubectl: Kubectl, fake: FakeCloudProvider
) -> None:
    name = claim_name("gone", namespace)
    async with running(manager_with(kclient, namespace, fake)):
        await kclient.create(NODECLAIM, nodeclaim(name, namespace=namespace))
        await until(lambda: read_claim(kclient, name), has("Launched", "True"))
        await fake.finish(name)
        ready = await until(lambda: read_claim(kclient, name), has("Ready", "True"))
        node = ready["status"]["nodeName"]

        await kubectl("delete", "nodeclaim", name, "--wait=false", namespaced=False)
        await eventually(lambda: fake.count("delete", name) == 1)
        await asyncio.sleep(0.2)  # the cloud is still deleting: the claim and its Node stay
        deleting = await read_claim(kclient, name)
        assert deleting is not None and deleting["metadata"]["finalizers"] == [FINALIZER]
        assert await errors.ignore_not_found(kclient.get(NODE, node)) is not None

        fake.finish_delete(name)
        await until(lambda: read_claim(kclient, name), lambda claim: claim is None)
        assert await errors.ignore_not_found(kclient.get(NODE, node)) is None
    assert fake.count("delete", name) == 1


async def test_claim_whose_launch_failed_deletes_at_once(kclient: Client, namespace: str, kubectl: Kubectl) -> None:
    fake = FakeCloudProvider()
    fake.fail_next("create", cloud.SkuNotAvailable("Standard_NC6s_v3 is retired in eastus"), times=1000)
    name = claim_name("retired", namespace)
    async with running(manager_with(kclient, namespace, fake)):
        await kclient.create(NODECLAIM, nodeclaim(name, namespace=namespace))
        await until(lambda: read_claim(kclient, name), has("Launched", "False", "SkuNotAvailable"))
        await kubectl("delete", "nodeclaim", name, "--timeout=10s", namespaced=False)
        assert await read_claim(kclient, name) is None


async def test_restart_mid_provisioning_still_creates_once(kclient: Client, namespace: str) -> None:
    fake = FakeCloudProvider()
    name = claim_name("restart", namespace)
    async with running(manager_with(kclient, namespace, fake)):
        await kclient.create(NODECLAIM, nodeclaim(name, namespace=namespace))
        await until(lambda: read_claim(kclient, name), has("Launched", "True"))

    fake.on_ready = joiner(kclient)
    polls = fake.count("get")
    async with running(manager_with(kclient, namespace, fake)):  # a new process: empty memory, fresh cache
        await eventually(lambda: fake.count("get") > polls)  # it picked up polling where the last one stopped
        await fake.finish(name)
        await until(lambda: read_claim(kclient, name), has("Ready", "True"))
    assert fake.count("create") == 1


async def test_stale_cache_does_not_launch_twice(kclient: Client, namespace: str) -> None:
    fake = FakeCloudProvider()
    manager = Manager(kclient, options=options(namespace))
    recorder = EventRecorder(kclient, controller="kaito.sh/provisioner", instance="test", clock=manager.clock)
    reconciler = NodeClaimReconciler(
        kclient,
        cache=manager.cache,
        provider=fake,
        clock=manager.clock,
        recorder=recorder,
        poll_interval=60,
        retry_interval=60,
    )
    store = manager.cache.informer(NODECLAIM).store
    manager.cache.informer(NODE)
    name = claim_name("stale", namespace)
    async with running(manager):
        await kclient.create(NODECLAIM, nodeclaim(name, namespace=namespace))
        await eventually(lambda: store.get(name) is not None)
        await reconciler.reconcile(ObjectKey("", name))
        launched = await kclient.get(NODECLAIM, name)
        assert has("Launched", "True")(launched)
        # The informer has not delivered our status write yet: the cache shows the claim as before it.
        stale = {key: value for key, value in launched.items() if key != "status"}
        store.upsert(stale)
        await reconciler.reconcile(ObjectKey("", name))
        assert fake.count("create") == 1
        # Any later change brings the informer, and so the cache, up to date.
        await kclient.patch(NODECLAIM, name, {"metadata": {"annotations": {"touched": "yes"}}})
        await eventually(lambda: has("Launched", "True")(store.get(name)))
        await reconciler.reconcile(ObjectKey("", name))
        assert len(reconciler.launches) == 0  # nothing left to vouch for


async def test_orphaned_instances_are_deleted_after_an_interval(
    kclient: Client, namespace: str, fake: FakeCloudProvider
) -> None:
    live = claim_name("live", namespace)
    await kclient.create(NODECLAIM, nodeclaim(live, namespace=namespace))
    await fake.create(InstanceRequest(nodeclaim=live, instance_type=SKU))
    await fake.create(InstanceRequest(nodeclaim="crashed-0123abcde", instance_type=SKU))  # its claim is long gone
    async with running(manager_with(kclient, namespace, fake, orphan_interval=0.2)):
        await eventually(lambda: fake.count("delete", "crashed-0123abcde") == 1)
        assert fake.count("list") >= 2, "deleted on first sight"
        await asyncio.sleep(0.5)
    assert fake.count("delete", live) == 0
    assert fake.instances["crashed-0123abcde"].state is InstanceState.DELETING


async def test_metered_provider_times_calls_and_counts_typed_errors() -> None:
    fake = FakeCloudProvider(name="metered-unit")
    metered = MeteredCloudProvider(fake, metrics=CloudProviderMetrics())
    fake.fail_next("get", cloud.NotFound("no such instance"))
    await metered.create(InstanceRequest(nodeclaim="a", instance_type=SKU))
    with pytest.raises(cloud.NotFound):
        await metered.get("a")
    assert (await metered.get("a")).nodeclaim == "a"
    assert metered.name == "metered-unit"
    assert errors_total(metered, "get", "NotFound", provider="metered-unit") == 1
    assert errors_total(metered, "create", "NotFound", provider="metered-unit") == 0
    assert duration_count(metered, "get", provider="metered-unit") == 2
    assert duration_count(metered, "create", provider="metered-unit") == 1


def errors_total(metered: MeteredCloudProvider, method: str, error: str, *, provider: str = "fake") -> float:
    labels = {"method": method, "provider": provider, "error": error}
    return metered.metrics.registry.get_sample_value("kaito_cloudprovider_errors_total", labels) or 0.0


def duration_count(metered: MeteredCloudProvider, method: str, *, provider: str) -> float:
    labels = {"method": method, "provider": provider}
    return metered.metrics.registry.get_sample_value("kaito_cloudprovider_duration_seconds_count", labels) or 0.0
