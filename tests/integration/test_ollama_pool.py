"""OllamaPool against two Ollama doubles over real HTTP: where generations go, what happens when
a host fails, and model management across hosts."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from bot.errors import ModelNotFound, ModelNotInLibrary, OllamaUnavailable, PullFailed
from bot.ollama.pool import OllamaPool
from bot.ollama.protocol import ChatMessage, ChatStats, ModelSpec, PullProgress
from tests.doubles.fake_ollama import FakeModel, FakeOllama, Script

QUESTION = [ChatMessage("user", "hi")]
SLOW = Script(reply=[f"w{n} " for n in range(200)], token_interval=0.02)


# Hosts started with OLLAMA_NUM_PARALLEL=4: these tests count the generations on each host.
@pytest.fixture
async def a() -> AsyncIterator[FakeOllama]:
    async with FakeOllama(parallel=4) as fake:
        yield fake
    assert not fake.server_errors, fake.server_errors


@pytest.fixture
async def b() -> AsyncIterator[FakeOllama]:
    async with FakeOllama(parallel=4) as fake:
        yield fake
    assert not fake.server_errors, fake.server_errors


@pytest.fixture
async def pool(a: FakeOllama, b: FakeOllama) -> AsyncIterator[OllamaPool]:
    pool = OllamaPool([a.url, b.url], tags_ttl=0.0, retry_after=0.2)
    yield pool
    await pool.close()


async def answer(pool: OllamaPool, model: str = "llama3.2") -> str:
    text = ""
    async for item in pool.chat_stream(model, QUESTION):
        if not isinstance(item, ChatStats):
            text += item.content
    return text


async def drain(lines: AsyncIterator[PullProgress]) -> list[PullProgress]:
    return [line async for line in lines]


def chats(fake: FakeOllama) -> int:
    return len(fake.chat_requests())


@contextlib.asynccontextmanager
async def generating(pool: OllamaPool, *models: str) -> AsyncIterator[list[asyncio.Task[str]]]:
    """Generations running in the background (cancelled on the way out)."""
    tasks = [asyncio.create_task(answer(pool, model)) for model in models]
    try:
        yield tasks
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_concurrent_generations_spread_over_the_hosts(
    pool: OllamaPool, a: FakeOllama, b: FakeOllama
) -> None:
    a.script(*[SLOW] * 4)
    b.script(*[SLOW] * 4)
    async with generating(pool, *["llama3.2"] * 4):
        await a.wait_until(lambda: a.active_generations + b.active_generations == 4)
        assert (a.active_generations, b.active_generations) == (2, 2)
        assert sorted(state.in_flight for state in pool.states()) == [2, 2]
    assert [state.in_flight for state in pool.states()] == [0, 0]


async def test_each_new_generation_goes_to_the_least_busy_host(
    pool: OllamaPool, a: FakeOllama, b: FakeOllama
) -> None:
    a.script(SLOW, SLOW)
    b.script(SLOW)
    async with generating(pool, "llama3.2", "llama3.2", "llama3.2"):
        await a.wait_until(lambda: (a.active_generations, b.active_generations) == (2, 1))
        b.script(Script(reply="from b"), Script(reply="from b"))
        a.script(Script(reply="from a"))
        assert await answer(pool) == "from b"  # one in flight there, two on a
        assert await answer(pool) == "from b"  # still the less busy one


async def test_a_model_on_one_host_only_goes_there_however_busy_it_is(
    pool: OllamaPool, a: FakeOllama, b: FakeOllama
) -> None:
    a.remove_model("qwen3")
    b.script(SLOW, SLOW)
    async with generating(pool, "qwen3", "qwen3"):
        await b.wait_until(lambda: b.active_generations == 2)
        assert await answer(pool, "llama3.2") == "Hello from the fake model."
        assert await answer(pool, "qwen3") == "Hello from the fake model."
    assert [r["model"] for r in a.chat_requests()] == ["llama3.2"]
    assert [r["model"] for r in b.chat_requests()] == ["qwen3", "qwen3", "qwen3"]
    assert (await pool.show("qwen3")).name == "qwen3"  # answered by b


async def test_a_model_on_no_host_is_reported_missing(pool: OllamaPool) -> None:
    with pytest.raises(ModelNotFound):
        await answer(pool, "mistral")


async def test_a_host_that_is_down_is_skipped_and_used_again_once_it_answers(
    pool: OllamaPool, a: FakeOllama, b: FakeOllama
) -> None:
    await a.close()
    for _ in range(4):
        assert await answer(pool) == "Hello from the fake model."
    assert chats(b) == 4
    assert [(s.up, s.failures > 0) for s in pool.states()] == [(False, True), (True, False)]

    await a.start()  # back on the same address; the pool's probe finds it
    await a.wait_until(lambda: pool.states()[0].up, timeout=5)
    a.script(SLOW)
    b.script(SLOW)
    async with generating(pool, "llama3.2", "llama3.2"):
        await a.wait_until(lambda: a.active_generations == 1 and b.active_generations == 1)


async def test_a_host_that_stays_down_is_left_alone_but_probed_less_and_less_often(
    a: FakeOllama, b: FakeOllama
) -> None:
    pool = OllamaPool([a.url, b.url], tags_ttl=0.0, retry_after=0.05)
    try:
        a.down = True  # accepts connections and drops them unanswered, like a crashed server
        assert await answer(pool) == "Hello from the fake model."
        asked = [r.path for r in a.requests]
        # One attempt; the HTTP client (aiohttp) sends an idempotent request once more when the
        # connection is dropped unanswered, so each attempt may arrive twice.
        tries = len(asked)
        assert asked == ["/api/tags"] * tries and tries in (1, 2)
        for _ in range(5):
            await answer(pool)
        assert chats(b) == 6
        assert [r.path for r in a.requests if r.path != "/api/version"] == asked  # skipped

        await a.wait_until(lambda: pool.states()[0].failures >= 4)  # the tags, three probes
        state = pool.states()[0]
        probes = [r.path for r in a.requests][tries:]
        assert probes == ["/api/version"] * (state.failures - 1) * tries
        assert state.retry_in == 0.05 * 2 ** (state.failures - 1)  # doubling after each probe

        a.down = False
        await a.wait_until(lambda: pool.states()[0].up, timeout=5)
        a.script(SLOW)
        b.script(SLOW)
        async with generating(pool, "llama3.2", "llama3.2"):
            await a.wait_until(lambda: a.active_generations == b.active_generations == 1)
    finally:
        await pool.close()


async def test_a_host_that_fails_mid_request_passes_the_request_to_the_other(
    pool: OllamaPool, a: FakeOllama, b: FakeOllama
) -> None:
    """The tags said both were up; the chat itself finds one of them gone."""
    pool_with_tags = OllamaPool([a.url, b.url], tags_ttl=60.0, retry_after=5.0)
    try:
        await answer(pool_with_tags)  # reads both hosts' tags, keeps them for a minute
        await a.close()
        await b.close()
        await b.start()
        results = await asyncio.gather(*(answer(pool_with_tags) for _ in range(3)))
        assert results == ["Hello from the fake model."] * 3
        assert not pool_with_tags.states()[0].up
    finally:
        await pool_with_tags.close()


async def test_a_busy_host_passes_the_request_to_the_other(
    pool: OllamaPool, a: FakeOllama, b: FakeOllama
) -> None:
    a.busy = True
    b.busy = False
    assert await answer(pool) == "Hello from the fake model."
    assert await answer(pool) == "Hello from the fake model."
    assert chats(b) == 2


async def test_with_every_host_down_requests_still_try_them_and_work_once_one_is_back(
    pool: OllamaPool, a: FakeOllama, b: FakeOllama
) -> None:
    await a.close()
    await b.close()
    with pytest.raises(OllamaUnavailable):
        await answer(pool)
    await b.start()  # no waiting for the probe: the next request tries the down hosts
    assert await answer(pool) == "Hello from the fake model."


async def test_one_host_is_used_directly(a: FakeOllama) -> None:
    pool = OllamaPool([a.url])
    try:
        assert await answer(pool) == "Hello from the fake model."
        await a.close()
        with pytest.raises(OllamaUnavailable):
            await answer(pool)
        await a.start()
        assert await answer(pool) == "Hello from the fake model."  # no backoff with one host
        assert not [r for r in a.requests if r.path in ("/api/tags", "/api/version")]
    finally:
        await pool.close()


async def test_lists_are_the_union_over_the_hosts_and_name_them(
    pool: OllamaPool, a: FakeOllama, b: FakeOllama
) -> None:
    a.remove_model("qwen3")
    b.remove_model("llava")
    listed = {m.name: m.hosts for m in await pool.list_models()}
    assert listed == {
        "llama3.2:latest": (a.url, b.url),
        "llava:latest": (a.url,),
        "qwen3:latest": (b.url,),
        "nomic-embed-text:latest": (a.url, b.url),
    }
    await a.close()
    listed = {m.name: m.hosts for m in await pool.list_models()}  # b's, while a is down
    assert listed == {
        "llama3.2:latest": (b.url,),
        "qwen3:latest": (b.url,),
        "nomic-embed-text:latest": (b.url,),
    }

    await answer(pool, "qwen3")
    assert [(m.name, m.host) for m in await pool.ps()] == [("qwen3:latest", b.url)]


async def test_pull_downloads_to_every_host_and_delete_removes_from_every_host(
    pool: OllamaPool, a: FakeOllama, b: FakeOllama
) -> None:
    for fake in (a, b):
        fake.add_pullable(FakeModel("mistral:7b", family="llama", size=4_000_000_000))
    lines = await drain(pool.pull("mistral:7b"))
    assert lines[-1].status == "success"
    assert [line for line in lines[:-1] if line.status.endswith(" success")] == []
    assert {line.status.split(": ")[0] for line in lines[:-1]} == {a.url, b.url}
    digests = {line.digest for line in lines if line.digest}
    assert any(d.startswith(a.url) for d in digests) and any(d.startswith(b.url) for d in digests)
    assert "mistral:7b" in a.models and "mistral:7b" in b.models

    a.remove_model("mistral:7b")
    await pool.delete_model("mistral:7b")  # b had it: fine that a did not
    assert "mistral:7b" not in b.models
    with pytest.raises(ModelNotFound):
        await pool.delete_model("mistral:7b")


async def test_a_pull_that_one_host_refuses_fails_as_a_whole(
    pool: OllamaPool, a: FakeOllama, b: FakeOllama
) -> None:
    a.add_pullable(FakeModel("mistral:7b"), bytes_per_second=1e9)  # b's registry lacks it
    with pytest.raises(ModelNotInLibrary):
        await drain(pool.pull("mistral:7b"))


async def test_a_pull_that_breaks_on_one_host_names_the_host(
    pool: OllamaPool, a: FakeOllama, b: FakeOllama
) -> None:
    for fake in (a, b):
        fake.add_pullable(FakeModel("mistral:7b"), bytes_per_second=2e9, progress_interval=0.05)

    async def follow() -> None:
        async for line in pool.pull("mistral:7b"):
            if line.completed:
                await b.close()  # b dies in the middle of its download

    with pytest.raises(PullFailed) as failed:
        await follow()
    # Where the host is stays in the log: the pull's message is public in the channel.
    assert "[address] the connection to Ollama was lost" in failed.value.user_message
    assert b.url not in failed.value.user_message


async def test_a_persona_model_is_created_on_every_host(
    pool: OllamaPool, a: FakeOllama, b: FakeOllama
) -> None:
    spec = ModelSpec(name="persona-pirate", base="llama3.2", system="Arr.")
    lines = await drain(pool.create_model(spec))
    assert lines[-1].status == "success"
    assert {line.status.split(": ")[0] for line in lines[:-1]} == {a.url, b.url}
    for fake in (a, b):
        assert fake.models["persona-pirate:latest"].system == "Arr."
    listed = {m.name: m.hosts for m in await pool.list_models()}
    assert listed["persona-pirate:latest"] == (a.url, b.url)
