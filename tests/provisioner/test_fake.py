"""The fake cloud provider behaves like the protocol says: idempotent, recorded, scriptable, and still until told."""

from __future__ import annotations

import pytest

from kaito.provisioner import cloud
from kaito.provisioner.cloud import CloudProvider, Instance, InstanceRequest, InstanceState
from kaito.provisioner.fake import FakeCloudProvider

REQUEST = InstanceRequest(
    nodeclaim="ws-1", instance_type="Standard_NC6s_v3", labels={"a": "b"}, taints=("s=g:NoSchedule",)
)


def test_fake_satisfies_the_protocol() -> None:
    provider: CloudProvider = FakeCloudProvider(name="fake")
    assert provider.name == "fake"


async def test_create_is_idempotent_and_every_call_is_recorded() -> None:
    fake = FakeCloudProvider()
    first = await fake.create(REQUEST)
    again = await fake.create(REQUEST)
    assert first == again
    assert first.state is InstanceState.CREATING
    assert first.provider_id == "fake:///ws-1"
    await fake.get("ws-1")
    assert [i.nodeclaim for i in await fake.list()] == ["ws-1"]
    assert fake.calls == [("create", "ws-1"), ("create", "ws-1"), ("get", "ws-1"), ("list", "")]
    assert fake.requests == [REQUEST, REQUEST]
    assert fake.count("create") == 2 and fake.count("get", "ws-1") == 1 and fake.count("get", "other") == 0


async def test_instances_stay_creating_until_finished_then_call_on_ready() -> None:
    ready: list[Instance] = []

    async def on_ready(instance: Instance) -> None:
        ready.append(instance)

    fake = FakeCloudProvider(on_ready=on_ready)
    await fake.create(REQUEST)
    assert (await fake.get("ws-1")).state is InstanceState.CREATING
    assert ready == []
    await fake.finish("ws-1")
    assert (await fake.get("ws-1")).state is InstanceState.SUCCEEDED
    assert [i.state for i in ready] == [InstanceState.SUCCEEDED]


async def test_auto_finish_succeeds_on_the_first_read_after_create() -> None:
    fake = FakeCloudProvider(auto_finish=True)
    created = await fake.create(REQUEST)
    assert created.state is InstanceState.CREATING
    assert (await fake.get("ws-1")).state is InstanceState.SUCCEEDED


async def test_failed_instance_carries_the_typed_error() -> None:
    fake = FakeCloudProvider()
    await fake.create(REQUEST)
    fake.fail_instance("ws-1", cloud.InsufficientCapacity("no NC6s_v3 capacity in eastus"))
    failed = await fake.get("ws-1")
    assert failed.state is InstanceState.FAILED
    assert isinstance(failed.error, cloud.InsufficientCapacity)
    assert failed.message == "no NC6s_v3 capacity in eastus"


async def test_delete_marks_deleting_then_finish_delete_removes() -> None:
    fake = FakeCloudProvider()
    await fake.create(REQUEST)
    await fake.delete("ws-1")
    assert (await fake.get("ws-1")).state is InstanceState.DELETING
    fake.finish_delete("ws-1")
    with pytest.raises(cloud.NotFound):
        await fake.get("ws-1")
    with pytest.raises(cloud.NotFound):
        await fake.delete("ws-1")


async def test_auto_delete_removes_on_the_next_read() -> None:
    fake = FakeCloudProvider(auto_delete=True)
    await fake.create(REQUEST)
    await fake.delete("ws-1")
    assert await fake.list() == []


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(cloud.QuotaExceeded("quota for standardNCSv3Family exceeded"), id="quota"),
        pytest.param(cloud.Throttled("slow down", retry_after=7.0), id="throttled"),
        pytest.param(cloud.SkuNotAvailable("not offered in eastus"), id="sku"),
    ],
)
async def test_scripted_failures_are_raised_as_given_then_stop(error: cloud.CloudError) -> None:
    fake = FakeCloudProvider()
    fake.fail_next("create", error, times=2)
    for _ in range(2):
        with pytest.raises(type(error)) as raised:
            await fake.create(REQUEST)
        assert raised.value is error
    assert (await fake.create(REQUEST)).nodeclaim == "ws-1"
    assert fake.count("create") == 3  # failed calls are recorded too
    assert fake.requests == [REQUEST]  # but only the one that went through reached the "cloud"


async def test_scripted_failures_are_per_method_and_can_be_cleared() -> None:
    fake = FakeCloudProvider()
    fake.fail_next("list", cloud.TransientError("500"), times=5)
    await fake.create(REQUEST)  # other methods are unaffected
    with pytest.raises(cloud.TransientError):
        await fake.list()
    fake.clear_failures()
    assert len(await fake.list()) == 1


def test_fail_next_rejects_unknown_methods() -> None:
    with pytest.raises(ValueError, match="unknown method"):
        FakeCloudProvider().fail_next("reboot", cloud.TransientError("x"))
