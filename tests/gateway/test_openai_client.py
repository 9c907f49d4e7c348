"""The real `openai` client against the gateway, with a stub engine behind it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import openai
import pytest

from kaito.gateway.gateway import Gateway
from kaito.runtime.clock import FakeClock
from tests.gateway.stubs import FedDiscovery, StubEngine, engines, gateway_at


@pytest.fixture
async def client() -> AsyncIterator[openai.AsyncOpenAI]:
    async with engines(StubEngine("a", stream_chunks=3)) as stubs:
        gateway = Gateway(FedDiscovery([stubs[0].replica]), demand=None, clock=FakeClock())
        async with (
            gateway_at(gateway) as url,
            openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0) as client,
        ):
            yield client


async def test_chat_completion(client: openai.AsyncOpenAI) -> None:
    answer = await client.chat.completions.create(model="stub", messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content == "a"
    assert [m.id for m in (await client.models.list()).data] == ["stub"]


async def test_streamed_chat_completion(client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model="stub", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    words = [chunk.choices[0].delta.content async for chunk in stream if chunk.choices[0].delta.content]
    assert words == ["a-0", "a-1", "a-2"]
