"""Several Ollama hosts and the Prometheus endpoint, through the real bot and both doubles."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest

from bot.app import ConfigurationError
from tests.conftest import BotRunner, eventually
from tests.doubles.fake_discord import FakeDiscord
from tests.doubles.fake_ollama import FakeOllama, Script
from tests.e2e.test_chat import chat
from tests.e2e.test_controls import button
from tests.e2e.test_failures import failed_chat
from tests.e2e.test_models import answer

SLOW = Script(reply=[f"w{n} " for n in range(100)], token_interval=0.03)


@pytest.fixture
async def second_ollama() -> AsyncIterator[FakeOllama]:
    async with FakeOllama() as fake:
        yield fake


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def scrape(port: int) -> dict[str, float]:
    """The endpoint's samples as {'name{labels}': value}."""
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{port}/metrics") as response,
    ):
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = await response.text()
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


async def test_replies_spread_over_two_ollama_hosts_and_status_shows_both(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama, second_ollama: FakeOllama
) -> None:
    await bots.start(ollama_hosts=[fake_ollama.url, second_ollama.url])
    fake_ollama.script(SLOW)
    second_ollama.script(SLOW)
    first, second = fake_discord.channel_ids[:2]
    await fake_discord.slash_command("chat", {"message": "one"}, channel_id=first)
    await fake_discord.slash_command("chat", {"message": "two"}, channel_id=second)
    await fake_ollama.wait_until(
        lambda: fake_ollama.active_generations == second_ollama.active_generations == 1,
        timeout=10,
    )
    status = await fake_discord.slash_command("status", user="admin")  # the bot's owner
    text = (await answer(fake_discord, status)).content
    assert "2 of 2 hosts reachable" in text
    assert f"✅ {second_ollama.url}: version {second_ollama.version}, generating 1" in text

    second_ollama.remove_model("qwen3")
    listing = await fake_discord.slash_command("model", subcommand="list", user="admin")
    lines = (await answer(fake_discord, listing)).content.splitlines()
    qwen = next(line for line in lines if "`qwen3:latest`" in line)
    assert qwen.endswith(f"on {fake_ollama.url.removeprefix('http://')}")


async def test_a_model_on_one_host_is_answered_there_and_a_dead_host_is_skipped(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama, second_ollama: FakeOllama
) -> None:
    await bots.start(ollama_hosts=[fake_ollama.url, second_ollama.url])
    fake_ollama.remove_model("qwen3")
    interaction = await fake_discord.slash_command("chat", {"message": "hi", "model": "qwen3"})
    await fake_discord.wait_until(
        lambda: (
            interaction.original_message_id is not None
            and "qwen3" in fake_discord.messages[interaction.original_message_id].content
            and "tokens/s" in fake_discord.messages[interaction.original_message_id].content
        ),
        timeout=10,
    )
    assert [r["model"] for r in second_ollama.chat_requests()] == ["qwen3"]

    await second_ollama.close()
    for n in range(2):
        answer = await chat(fake_discord, f"still there {n}?")
        assert "Hello from the fake model." in answer.content
    assert len(fake_ollama.chat_requests()) == 2


async def test_the_metrics_endpoint_counts_generations_tokens_latency_and_errors(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    port = free_port()
    await bots.start(metrics_port=port)
    before = await scrape(port)
    assert before['ollama_bot_generations_total{model="other",outcome="complete"}'] == 0
    assert before["ollama_bot_queue_depth"] == 0

    fake_ollama.script(Script(reply="Four words of answer."))
    await chat(fake_discord, "count me")
    await failed_chat(fake_discord, "and me", model="not-installed")
    fake_ollama.script(Script(reply=[f"w{n} " for n in range(200)], token_interval=0.05))
    talking = await fake_discord.slash_command("chat", {"message": "talk"})

    def stop() -> str | None:
        message_id = talking.original_message_id
        return button(fake_discord.messages[message_id], "reply:stop:") if message_id else None

    await fake_discord.wait_until(lambda: stop() is not None, timeout=10)
    during = await scrape(port)
    assert during["ollama_bot_active_generations"] == 1
    assert during[f'ollama_bot_ollama_host_generations_in_flight{{host="{fake_ollama.url}"}}'] == 1
    await fake_discord.click_button(talking.original_message_id or "", stop() or "")
    await fake_discord.wait_until(
        lambda: "stopped by" in fake_discord.messages[talking.original_message_id or ""].content
    )

    after = await scrape(port)
    # `model` is a model that has answered; a name that is not installed never becomes a label
    generations = {k: v for k, v in after.items() if k.startswith("ollama_bot_generations_total")}
    assert generations == {
        'ollama_bot_generations_total{model="other",outcome="complete"}': 0,
        'ollama_bot_generations_total{model="other",outcome="stopped"}': 0,
        'ollama_bot_generations_total{model="other",outcome="failed"}': 1,
        'ollama_bot_generations_total{model="other",outcome="incomplete"}': 0,
        'ollama_bot_generations_total{model="llama3.2",outcome="complete"}': 1,
        'ollama_bot_generations_total{model="llama3.2",outcome="stopped"}': 1,
    }
    request = fake_ollama.chat_requests()[0]
    assert request["messages"][-1]["content"] == "count me"
    assert after['ollama_bot_tokens_total{kind="completion",model="llama3.2"}'] >= 4
    assert after['ollama_bot_tokens_total{kind="prompt",model="llama3.2"}'] > 0
    assert not any("user" in k or "guild" in k for k in after)
    assert after["ollama_bot_time_to_first_token_seconds_count"] == 2  # the stopped one too
    assert after["ollama_bot_generation_seconds_count"] == 1  # complete replies only
    assert after['ollama_bot_errors_total{kind="ModelNotFound"}'] == 1
    assert after["ollama_bot_active_generations"] == 0
    assert after[f'ollama_bot_ollama_host_up{{host="{fake_ollama.url}"}}'] == 1
    sent = after[f'ollama_bot_ollama_host_generations_total{{host="{fake_ollama.url}"}}']
    assert sent == 2  # the missing model was found missing before any generation


async def test_the_metrics_endpoint_shows_the_queue(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    port = free_port()
    await bots.start(metrics_port=port, max_parallel_generations=1)
    fake_ollama.script(SLOW)
    await fake_discord.slash_command("chat", {"message": "first"})
    await fake_ollama.wait_until(lambda: fake_ollama.active_generations == 1, timeout=10)
    await fake_discord.slash_command(
        "chat", {"message": "second"}, channel_id=fake_discord.channel_ids[1]
    )
    await fake_discord.wait_until(
        lambda: any(
            "number 1 in line" in m.content
            for m in fake_discord.bot_messages(fake_discord.channel_ids[1])
        ),
        timeout=10,
    )
    samples = await scrape(port)
    assert samples["ollama_bot_queue_depth"] == 1
    assert samples["ollama_bot_active_generations"] == 1


async def test_a_metrics_port_in_use_is_a_clear_configuration_error(bots: BotRunner) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigurationError, match=f"Cannot serve metrics on 127.0.0.1:{port}"):
            await bots.start(metrics_port=port)


async def test_only_the_process_running_shard_zero_prunes_the_shared_history(
    bots: BotRunner, fake_discord: FakeDiscord
) -> None:
    # Two processes of one bot share the database: shard 1's answers a guild on shard 1, and
    # the retention job (keep 2 turns a channel, run every 50 ms) must run in shard 0's alone.
    other = await fake_discord.add_guild("Second", ["lobby"], shard=(1, 2))
    lobby = fake_discord.guild_channel_ids(other)[0]
    retention = {"retention_max_turns": 2, "retention_interval": 0.05}
    one = await bots.start(shard_count=2, shard_ids=[1], **retention)
    assert sorted(one.shards) == [1]
    for n in range(3):
        await chat(fake_discord, f"question {n}", channel_id=lobby)
    await asyncio.sleep(0.5)  # ten retention intervals
    assert await one.history.count(int(lobby)) == 6  # shard 1's process pruned nothing

    zero = await bots.start(shard_count=2, shard_ids=[0], **retention)
    assert sorted(zero.shards) == [0]

    async def pruned() -> bool:
        return await one.history.count(int(lobby)) == 2

    await eventually(pruned)  # shard 0's process pruned the turns shard 1's process stored
    turns = await one.history.all(int(lobby))
    assert [t.content for t in turns] == ["question 2", "Hello from the fake model."]
