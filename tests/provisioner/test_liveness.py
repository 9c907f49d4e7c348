"""Liveness: a claim whose Node never registers, or never turns Ready, is deleted after its timeout, not before."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable

import pytest

from kaito.api.nodeclaim import FINALIZER, INITIALIZED, LAUNCHED, NODECLAIM, REGISTERED
from kaito.cli_manager import add_manager_arguments, operator_options, seconds
from kaito.provisioner.cloud import Instance, InstanceState
from kaito.provisioner.conditions import Conditions
from kaito.provisioner.controller import setup
from kaito.provisioner.fake import FakeCloudProvider
from kaito.provisioner.liveness import NODE_READY_TIMEOUT, REGISTRATION_TIMEOUT, Liveness, duration
from kaito.runtime import errors
from kaito.runtime.client import Client
from kaito.runtime.clock import FakeClock, api_time
from kaito.runtime.kinds import NODE
from kaito.runtime.manager import Manager
from kaito.runtime.objects import Obj, is_deleting
from tests.conftest import Kubectl
from tests.provisioner.conftest import claim_name, condition, gpu_node, joiner, nodeclaim, options, read_claim, running
from tests.provisioner.conftest import until as until_
from tests.provisioner.test_controller import claim_events, has
from tests.runtime.conftest import eventually

pytestmark = pytest.mark.usefixtures("crds")
POLL = 0.05
TIMEOUT = 60.0  # virtual seconds, both timeouts


def manager_with(kclient: Client, namespace: str, provider: FakeCloudProvider, clock: FakeClock) -> Manager:
    manager = Manager(kclient, options=options(namespace), clock=clock)
    liveness = Liveness(registration_timeout=TIMEOUT, node_ready_timeout=TIMEOUT)
    setup(manager, provider, poll_interval=POLL, retry_interval=0.3, liveness=liveness)
    return manager


def not_ready_joiner(kclient: Client) -> Callable[[Instance], Awaitable[None]]:
    """A kubelet that registers its Node, GPUs and all, but never reports it Ready."""

    async def join(instance: Instance) -> None:
        node = gpu_node(instance, ready=False)
        await kclient.create(NODE, node)
        await kclient.patch_status(NODE, node["metadata"]["name"], {"status": node["status"]})

    return join


async def settled(clock: FakeClock, seconds: float) -> None:
    """Move virtual time on by `seconds`, then give the manager's reads and writes a moment to land."""
    await clock.step(seconds)
    await asyncio.sleep(0.3)


async def test_claim_whose_node_never_registers_is_deleted_after_the_timeout_and_relaunched_once(
    kclient: Client, namespace: str, kubectl: Kubectl
) -> None:
    fake = FakeCloudProvider(auto_finish=True)  # the instance is up, but no kubelet registers its Node
    name = claim_name("lost", namespace)
    clock = FakeClock()
    async with running(manager_with(kclient, namespace, fake, clock)):
        await kclient.create(NODECLAIM, nodeclaim(name, namespace=namespace))
        waiting = await until_(lambda: read_claim(kclient, name), has("Registered", "Unknown"), clock=clock)
        assert has("Launched", "True")(waiting)
        await settled(clock, TIMEOUT - 3)
        before = await read_claim(kclient, name)
        assert before is not None and not is_deleting(before), "given up before the timeout"
        assert fake.count("delete") == 0

        gone = await until_(lambda: read_claim(kclient, name), lambda c: c is None or is_deleting(c), clock=clock)
        assert gone is not None and gone["metadata"]["finalizers"] == [FINALIZER]  # waits for its instance
        registered = condition(gone, "Registered")
        assert (registered["status"], registered["reason"]) == ("False", REGISTRATION_TIMEOUT)
        assert "no node registered within 1m of the launch" in registered["message"]
        assert condition(gone, "Ready")["reason"] == REGISTRATION_TIMEOUT
        await eventually(lambda: fake.count("delete", name) == 1)
        assert fake.instances[name].state is InstanceState.DELETING

        fake.finish_delete(name)  # the cloud removed the VM: the claim lets go
        await until_(lambda: read_claim(kclient, name), lambda c: c is None, clock=clock)
        events = await claim_events(kubectl, name)
        assert ("Warning", REGISTRATION_TIMEOUT) in events

        # The workspace controller makes the claim again; this time the kubelet registers.
        fake.on_ready = joiner(kclient)
        await kclient.create(NODECLAIM, nodeclaim(name, namespace=namespace))
        await until_(lambda: read_claim(kclient, name), has("Ready", "True"), clock=clock)
        await settled(clock, 2 * TIMEOUT)  # a Ready claim is under no deadline
        ready = await read_claim(kclient, name)
    assert ready is not None and not is_deleting(ready)
    assert fake.count("create") == 2 and fake.count("delete") == 1
    assert list(fake.instances) == [name] and fake.instances[name].state is InstanceState.SUCCEEDED


async def test_node_that_stays_not_ready_is_deleted_with_its_instance_after_the_timeout(
    kclient: Client, namespace: str, kubectl: Kubectl
) -> None:
    fake = FakeCloudProvider(auto_finish=True, auto_delete=True, on_ready=not_ready_joiner(kclient))
    name = claim_name("sick", namespace)
    clock = FakeClock()
    async with running(manager_with(kclient, namespace, fake, clock)):
        await kclient.create(NODECLAIM, nodeclaim(name, namespace=namespace))
        waiting = await until_(lambda: read_claim(kclient, name), has("Initialized", "Unknown"), clock=clock)
        node = waiting["status"]["nodeName"]
        assert has("Registered", "True")(waiting)
        await settled(clock, TIMEOUT - 3)
        before = await read_claim(kclient, name)
        assert before is not None and not is_deleting(before), "given up before the timeout"

        await until_(lambda: read_claim(kclient, name), lambda c: c is None, clock=clock)
        assert await errors.ignore_not_found(kclient.get(NODE, node)) is None, "its Node goes with it"
        listing = await kubectl("get", "events", "-n", "default", "-o", "json", namespaced=False)
    told = [(e["type"], e["message"]) for e in listing.json()["items"] if e["reason"] == NODE_READY_TIMEOUT]
    assert told == [
        (
            "Warning",
            f"node {node} is not Ready 1m after it registered (--node-ready-timeout); "
            "the NodeClaim is deleted, with its instance, and a new one launched",
        )
    ]
    assert fake.count("create") == 1 and fake.count("delete", name) == 1 and fake.instances == {}


async def test_node_that_turns_ready_in_time_is_kept(kclient: Client, namespace: str) -> None:
    fake = FakeCloudProvider(auto_finish=True, on_ready=not_ready_joiner(kclient))
    name = claim_name("slow", namespace)
    clock = FakeClock()
    async with running(manager_with(kclient, namespace, fake, clock)):
        await kclient.create(NODECLAIM, nodeclaim(name, namespace=namespace))
        waiting = await until_(lambda: read_claim(kclient, name), has("Initialized", "Unknown"), clock=clock)
        await settled(clock, TIMEOUT - 5)
        node: Obj = await kclient.get(NODE, waiting["status"]["nodeName"])
        ready = [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]
        await kclient.patch_status(NODE, node["metadata"]["name"], {"status": {"conditions": ready}})
        await until_(lambda: read_claim(kclient, name), has("Ready", "True"), clock=clock)
        await settled(clock, 2 * TIMEOUT)
        kept = await read_claim(kclient, name)
    assert kept is not None and not is_deleting(kept)
    assert fake.count("delete") == 0


def conditions_at(now: dt.datetime, **stages: tuple[str, dt.datetime]) -> Conditions:
    listed = [
        {"type": t, "status": s, "reason": t, "lastTransitionTime": api_time(at)} for t, (s, at) in stages.items()
    ]
    return Conditions(listed, generation=1, now=api_time(now))


def test_deadlines_count_from_launch_then_from_registration() -> None:
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    later = t0 + dt.timedelta(minutes=7)
    liveness = Liveness(registration_timeout=900, node_ready_timeout=300)

    launched = liveness.deadline(conditions_at(later, **{LAUNCHED: ("True", t0)}))
    assert launched is not None and (launched.condition, launched.reason) == (REGISTERED, REGISTRATION_TIMEOUT)
    assert launched.at == t0 + dt.timedelta(minutes=15) and "15m" in launched.message

    registered = liveness.deadline(conditions_at(later, **{LAUNCHED: ("True", t0), REGISTERED: ("True", later)}))
    assert registered is not None and (registered.condition, registered.reason) == (INITIALIZED, NODE_READY_TIMEOUT)
    assert registered.at == later + dt.timedelta(minutes=5)

    all_true = {stage: ("True", t0) for stage in (LAUNCHED, REGISTERED, INITIALIZED)}
    assert liveness.deadline(conditions_at(later, **all_true)) is None
    assert liveness.deadline(conditions_at(later, **{LAUNCHED: ("False", t0)})) is None, "a failed launch retries"
    off = Liveness(registration_timeout=0, node_ready_timeout=0)
    assert off.deadline(conditions_at(later, **{LAUNCHED: ("True", t0)})) is None


@pytest.mark.parametrize(
    ("seconds", "text"), [(900, "15m"), (90, "1m30s"), (2, "2s"), (0.5, "0.5s"), (3600, "1h"), (3725, "1h2m5s")]
)
def test_durations_read_as_a_person_writes_them(seconds: float, text: str) -> None:
    assert duration(seconds) == text


def test_manager_flags_set_both_timeouts() -> None:
    parser = argparse.ArgumentParser()
    add_manager_arguments(parser)
    defaults = operator_options(parser.parse_args([]))
    assert (defaults.nodeclaim_registration_timeout, defaults.node_ready_timeout) == (900.0, 900.0)
    args = parser.parse_args(["--nodeclaim-registration-timeout", "120", "--node-ready-timeout", "0"])
    options = operator_options(args)
    assert (options.nodeclaim_registration_timeout, options.node_ready_timeout) == (120.0, 0.0)
    for bad in ("-1", "ten", "nan", "inf"):
        with pytest.raises(argparse.ArgumentTypeError, match="not a number of seconds"):
            seconds(bad)
