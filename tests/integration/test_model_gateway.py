"""OllamaGateway's model management over real HTTP to the Ollama double."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bot.errors import InvalidModelName, ModelNotFound, ModelNotInLibrary, OllamaUnavailable
from bot.ollama_gateway import ChatMessage, OllamaGateway, PullProgress
from tests.doubles.fake_ollama import FakeModel, FakeOllama


@pytest.fixture
async def gateway(fake_ollama: FakeOllama) -> AsyncIterator[OllamaGateway]:
    gateway = OllamaGateway(fake_ollama.url)
    yield gateway
    await gateway.close()


async def test_list_models_reads_capabilities_from_tags(
    gateway: OllamaGateway, fake_ollama: FakeOllama
) -> None:
    models = await gateway.list_models()
    assert [m.name for m in models] == ["llama3.2:latest", "llava:latest", "qwen3:latest"]
    llava = models[1]
    assert (llava.parameter_size, llava.quantization, llava.family) == ("7B", "Q4_0", "llama")
    assert llava.size == 4733363377
    assert llava.capabilities == ("completion", "vision")
    assert not [r for r in fake_ollama.requests if r.path == "/api/show"]


async def test_list_models_asks_show_when_tags_has_no_capabilities(
    gateway: OllamaGateway, fake_ollama: FakeOllama
) -> None:
    fake_ollama.tags_capabilities = False  # servers before 0.30
    models = await gateway.list_models()
    assert [m.capabilities for m in models] == [
        ("completion", "tools"),
        ("completion", "vision"),
        ("completion", "thinking", "tools"),
    ]
    assert len([r for r in fake_ollama.requests if r.path == "/api/show"]) == 3


async def test_describe_has_what_ollama_show_prints(
    gateway: OllamaGateway, fake_ollama: FakeOllama
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
    gateway: OllamaGateway, fake_ollama: FakeOllama
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
    gateway: OllamaGateway, fake_ollama: FakeOllama
) -> None:
    assert (await gateway.show("llava")).capabilities == {"completion", "vision"}
    await gateway.delete_model("llava:latest")
    assert "llava:latest" not in fake_ollama.models
    with pytest.raises(ModelNotFound):
        await gateway.show("llava")  # not answered from the cache under the other spelling
    with pytest.raises(ModelNotFound):
        await gateway.delete_model("llava")


async def test_ps_lists_loaded_models(gateway: OllamaGateway, fake_ollama: FakeOllama) -> None:
    assert await gateway.ps() == []
    async for _ in gateway.chat_stream("llama3.2", [ChatMessage("user", "hi")]):
        pass
    [loaded] = await gateway.ps()
    assert loaded.name == "llama3.2:latest"
    assert loaded.size == loaded.size_vram == 2019393189
    assert loaded.expires_at is not None and loaded.context_length == 4096


async def test_model_management_when_ollama_is_down(fake_ollama: FakeOllama) -> None:
    await fake_ollama.close()
    gateway = OllamaGateway(fake_ollama.url)
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
