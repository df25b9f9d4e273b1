"""OllamaPool's load-aware choice against two Ollama doubles over real HTTP: it learns how long
loads and generations take, and waits for a busy host that has the model loaded rather than
loading it elsewhere when a load is the longer wait."""

from __future__ import annotations

import asyncio

from bot.ollama.pool import OllamaPool
from bot.ollama.protocol import ChatMessage, ChatStats
from tests.doubles.fake_ollama import FakeOllama, Script

QUESTION = [ChatMessage("user", "hi")]


async def answer(pool: OllamaPool, model: str = "llama3.2") -> ChatStats:
    async for item in pool.chat_stream(model, QUESTION):
        if isinstance(item, ChatStats):
            return item
    raise AssertionError("no stats")


async def test_a_slow_load_is_avoided_by_waiting_for_the_host_that_has_the_model() -> None:
    async with FakeOllama(load_delay=1.2) as a, FakeOllama(load_delay=1.2) as b:
        pool = OllamaPool([a.url, b.url], tags_ttl=60.0)
        try:
            first = await answer(pool)  # loads on a: the pool learns a load takes 1.2 s
            assert first.load_duration_ns == 1_200_000_000
            a.script(Script(reply=[f"w{n} " for n in range(10)], token_interval=0.05))
            busy = asyncio.create_task(answer(pool))
            await a.wait_until(lambda: a.active_generations == 1)
            # a's one slot is taken for half a second more; b would need 1.2 s to load
            await answer(pool)
            await busy
            assert (len(a.chat_requests()), len(b.chat_requests())) == (3, 0)
            assert (a.loads, b.loads) == (1, 0)
        finally:
            await pool.close()


async def test_quick_loads_let_a_busy_model_spread_over_the_hosts() -> None:
    async with FakeOllama() as a, FakeOllama() as b:
        pool = OllamaPool([a.url, b.url], tags_ttl=60.0)
        try:
            await answer(pool)  # a load of milliseconds on a
            a.script(Script(reply=[f"w{n} " for n in range(20)], token_interval=0.05))
            busy = asyncio.create_task(answer(pool))
            await a.wait_until(lambda: a.active_generations == 1)
            await answer(pool)
            await busy
            assert (len(a.chat_requests()), len(b.chat_requests())) == (2, 1)
        finally:
            await pool.close()


async def test_the_configured_keep_alive_is_sent_unless_the_caller_gives_its_own() -> None:
    async with FakeOllama() as a:
        pool = OllamaPool([a.url], keep_alive="30m", keep_alive_per_model={"qwen3": -1.0})
        try:
            await answer(pool)
            await answer(pool, "qwen3:latest")
            async for _ in pool.chat_stream("qwen3", QUESTION, keep_alive="5m"):
                pass
            await pool.chat_structured("llama3.2", QUESTION, schema={"type": "object"})
        finally:
            await pool.close()
    assert [r.get("keep_alive") for r in a.chat_requests()] == ["30m", -1, "5m", "30m"]
