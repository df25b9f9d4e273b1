"""OllamaHost's model management over real HTTP to the Ollama double."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from bot.errors import InvalidModelName, ModelNotFound, ModelNotInLibrary, OllamaUnavailable
from bot.ollama.host import OllamaHost
from bot.ollama.protocol import ChatDelta, ChatMessage, PullProgress
from tests.doubles.fake_ollama import FakeModel, FakeOllama, Script


@pytest.fixture
async def gateway(fake_ollama: FakeOllama) -> AsyncIterator[OllamaHost]:
    gateway = OllamaHost(fake_ollama.url)
    yield gateway
    await gateway.close()


async def test_list_models_reads_capabilities_from_tags(
    gateway: OllamaHost, fake_ollama: FakeOllama
) -> None:
    models = await gateway.list_models()
    assert [m.name for m in models] == [
        "llama3.2:latest",
        "llava:latest",
        "qwen3:latest",
        "nomic-embed-text:latest",
    ]
    llava = models[1]
    assert (llava.parameter_size, llava.quantization, llava.family) == ("7B", "Q4_0", "llama")
    assert llava.size == 4733363377
    assert llava.capabilities == ("completion", "vision")
    assert not [r for r in fake_ollama.requests if r.path == "/api/show"]


async def test_list_models_asks_show_when_tags_has_no_capabilities(
    gateway: OllamaHost, fake_ollama: FakeOllama
) -> None:
    fake_ollama.tags_capabilities = False  # servers before 0.30
    models = await gateway.list_models()
    assert [m.capabilities for m in models] == [
        ("completion", "tools"),
        ("completion", "vision"),
        ("completion", "thinking", "tools"),
        ("embedding",),
    ]
    assert len([r for r in fake_ollama.requests if r.path == "/api/show"]) == 4


async def test_describe_has_what_ollama_show_prints(
    gateway: OllamaHost, fake_ollama: FakeOllama
) -> None:
    fake_ollama.add_model(
        FakeModel(name="terse", system="Be terse.", parameters={"temperature": 0.2})
    )
    card = await gateway.describe("terse")
    assert card.architecture == "llama"
    assert card.parameter_size == "3.2B" and card.parameter_count == 3_200_000_000
    assert (card.context_length, card.embedding_length) == (131072, 3072)
    assert card.quantization == "Q4_K_M"
    assert card.capabilities == ("completion", "tools")
    assert card.parameters == (("temperature", "0.2"),)
    assert card.system == "Be terse."
    with pytest.raises(ModelNotFound):
        await gateway.describe("nothing-here")


async def test_pull_streams_progress_and_unknown_names_are_not_in_the_library(
    gateway: OllamaHost, fake_ollama: FakeOllama
) -> None:
    fake_ollama.add_pullable(FakeModel(name="fresh", size=5000))
    lines = [line async for line in gateway.pull("fresh")]
    assert lines[0] == PullProgress(status="pulling manifest")
    assert lines[-1] == PullProgress(status="success")
    layers = [line for line in lines if line.digest]
    assert layers and all(line.total for line in layers)

    with pytest.raises(ModelNotInLibrary):
        async for _ in gateway.pull("no-such-model"):
            pass
    with pytest.raises(InvalidModelName):
        async for _ in gateway.pull("bad!name"):
            pass


async def test_delete_model_forgets_the_cached_show(
    gateway: OllamaHost, fake_ollama: FakeOllama
) -> None:
    assert (await gateway.show("llava")).capabilities == {"completion", "vision"}
    await gateway.delete_model("llava:latest")
    assert "llava:latest" not in fake_ollama.models
    with pytest.raises(ModelNotFound):
        await gateway.show("llava")  # not answered from the cache under the other spelling
    with pytest.raises(ModelNotFound):
        await gateway.delete_model("llava")


async def test_ps_lists_loaded_models(gateway: OllamaHost, fake_ollama: FakeOllama) -> None:
    assert await gateway.ps() == []
    async for _ in gateway.chat_stream("llama3.2", [ChatMessage("user", "hi")]):
        pass
    [loaded] = await gateway.ps()
    assert loaded.name == "llama3.2:latest"
    assert loaded.size == loaded.size_vram == 2019393189
    assert loaded.expires_at is not None and loaded.context_length == 4096


async def test_model_management_when_ollama_is_down(fake_ollama: FakeOllama) -> None:
    await fake_ollama.close()
    gateway = OllamaHost(fake_ollama.url)
    try:
        with pytest.raises(OllamaUnavailable):
            await gateway.list_models()
        with pytest.raises(OllamaUnavailable):
            await gateway.ps()
        with pytest.raises(OllamaUnavailable):
            await gateway.delete_model("llava")
        with pytest.raises(OllamaUnavailable):
            async for _ in gateway.pull("llava"):
                pass
    finally:
        await gateway.close()


async def test_more_than_a_hundred_replies_stream_at_once(
    gateway: OllamaHost, fake_ollama: FakeOllama
) -> None:
    """The gateway sets no connection cap of its own (the scheduler bounds generations):
    httpx's default of 100 made the 101st reply wait for a free connection."""
    replies = 120
    fake_ollama.parallel = replies  # an Ollama started with OLLAMA_NUM_PARALLEL=120
    fake_ollama.script(
        *[Script(reply=["a ", "b ", "c"], token_interval=0.3) for _ in range(replies)]
    )

    async def read() -> str:
        parts = []
        async for item in gateway.chat_stream("llama3.2", [ChatMessage("user", "hi")]):
            if isinstance(item, ChatDelta):
                parts.append(item.content)
        return "".join(parts)

    assert await asyncio.gather(*(read() for _ in range(replies))) == ["a b c"] * replies
    assert fake_ollama.max_active_generations == replies


async def test_replies_one_after_another_share_one_connection(
    gateway: OllamaHost, fake_ollama: FakeOllama
) -> None:
    for _ in range(3):
        # The body ends a little after the last line: a client that stops reading at the last
        # line closes the response, and its connection, before the end arrives.
        fake_ollama.script(Script(end_delay=0.05))
        async for _item in gateway.chat_stream("llama3.2", [ChatMessage("user", "hi")]):
            pass
    clients = [r.client for r in fake_ollama.requests if r.path == "/api/chat"]
    assert len(clients) == 3 and clients[0]
    assert len(set(clients)) == 1  # kept alive: no new connection per reply
