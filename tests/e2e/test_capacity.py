"""Capacity, through the real bot and two Ollama doubles: the host chosen by what Ollama has
loaded, the loading notice and the load time in the footer, keep_alive, fallback models and the
expected wait in queue notices."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.conftest import BotRunner
from tests.doubles.fake_discord import FakeDiscord, FakeInteraction, FakeMessage
from tests.doubles.fake_ollama import FakeModel, FakeOllama, Script
from tests.e2e.test_fairness import shown
from tests.e2e.test_models import answer
from tests.e2e.test_personas import EVERYONE_CREATES, answered, persona_model

SLOW = Script(reply=[f"w{n} " for n in range(60)], token_interval=0.05)
ENDED = re.compile(r"\n-# .+ · \d+\.\d tokens/s$")


@pytest.fixture
async def second_ollama() -> AsyncIterator[FakeOllama]:
    async with FakeOllama() as fake:
        yield fake
    assert not fake.server_errors, fake.server_errors


async def load(fake: FakeOllama, model: str, num_ctx: int = 8192) -> None:
    """Load a model on a double as `ollama run` does: a chat request with no messages, with
    the window the bot asks for (context_tokens_max), as an earlier reply would have loaded
    it; another window would be a reload."""
    async with httpx.AsyncClient(base_url=fake.url) as http:
        response = await http.post(
            "/api/chat", json={"model": model, "options": {"num_ctx": num_ctx}}
        )
        assert response.json()["done_reason"] == "load"


async def reply(fake: FakeDiscord, interaction: FakeInteraction) -> FakeMessage:
    """The response once it ends with a footer (or an error)."""

    def ended() -> bool:
        if interaction.original_message_id is None:
            return False
        content = fake.messages[interaction.original_message_id].content
        return bool(ENDED.search(content)) or "⚠️" in content

    await fake.wait_until(ended, timeout=15)
    assert interaction.original_message_id is not None
    return fake.messages[interaction.original_message_id]


async def ask(fake: FakeDiscord, text: str, **options: str) -> FakeMessage:
    interaction = await fake.slash_command("chat", {"message": text, **options})
    return await reply(fake, interaction)


def models_asked(fake: FakeOllama) -> list[str]:
    return [r["model"] for r in fake.chat_requests() if r.get("messages")]


# ---- the host chosen by what is loaded ---------------------------------------------------------


async def test_a_generation_goes_to_the_host_that_has_the_model_loaded(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama, second_ollama: FakeOllama
) -> None:
    await load(second_ollama, "qwen3")
    await bots.start(ollama_hosts=[fake_ollama.url, second_ollama.url])
    for n in range(3):  # one after another: either host is idle each time
        await ask(fake_discord, f"q{n}", model="qwen3")
    assert models_asked(second_ollama) == ["qwen3"] * 3
    assert models_asked(fake_ollama) == []
    assert (fake_ollama.loads, second_ollama.loads) == (0, 0)  # no generation waited for a load


async def test_a_model_loaded_nowhere_goes_to_the_host_with_the_most_room(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama, second_ollama: FakeOllama
) -> None:
    await load(fake_ollama, "llama3.2")  # the first host's memory holds a model already
    await bots.start(ollama_hosts=[fake_ollama.url, second_ollama.url])
    await ask(fake_discord, "cold", model="qwen3")
    assert models_asked(second_ollama) == ["qwen3"]
    assert fake_ollama.loaded_models() == ["llama3.2:latest"]  # nothing evicted there


async def test_a_host_with_the_model_all_in_gpu_memory_beats_one_that_spills_to_the_cpu(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    size = 4_000_000_000
    models = [FakeModel(name="qwen3", family="qwen3", size=size)]
    async with (
        FakeOllama(models=models, gpu_memory=size // 2) as small,
        FakeOllama(models=[FakeModel(name="qwen3", family="qwen3", size=size)]) as big,
    ):
        await load(small, "qwen3")
        await load(big, "qwen3")
        async with httpx.AsyncClient(base_url=small.url) as http:
            (entry,) = (await http.get("/api/ps")).json()["models"]
        assert entry["size_vram"] == size // 2  # half of it runs on the CPU there
        await bots.start(ollama_hosts=[small.url, big.url], chat_model="qwen3")
        for n in range(2):
            await ask(fake_discord, f"q{n}")
        assert models_asked(big) == ["qwen3", "qwen3"]
        assert models_asked(small) == []


async def test_a_busy_model_still_spreads_over_the_hosts(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama, second_ollama: FakeOllama
) -> None:
    # With the model loaded on one host and its one slot taken, the next request goes to the
    # idle host (a load) rather than queueing unseen inside the busy Ollama.
    await load(fake_ollama, "llama3.2")
    await bots.start(ollama_hosts=[fake_ollama.url, second_ollama.url])
    fake_ollama.script(SLOW)
    general, random = fake_discord.channel_ids[:2]
    first = await fake_discord.slash_command("chat", {"message": "one"}, channel_id=general)
    await fake_ollama.wait_until(lambda: fake_ollama.active_generations == 1)
    second = await fake_discord.slash_command("chat", {"message": "two"}, channel_id=random)
    await reply(fake_discord, second)
    await reply(fake_discord, first)
    assert len(models_asked(fake_ollama)) == len(models_asked(second_ollama)) == 1


# ---- loading said out loud ---------------------------------------------------------------------


async def test_a_cold_model_shows_a_loading_notice_and_the_footer_says_how_long_it_took(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    await bots.start()
    fake_ollama.load_delay = 1.6  # the notice shows after a second of waiting, like the line's
    interaction = await fake_discord.slash_command("chat", {"message": "wake up"})
    message = await reply(fake_discord, interaction)
    texts = shown(fake_discord, interaction)
    assert any(t.endswith("\n-# ⏳ loading llama3.2 (first use in a while)…") for t in texts)
    assert message.content.endswith(" tokens/s")
    assert "\n-# llama3.2 · loaded in 1.6 s · " in message.content

    fake_ollama.load_delay = 0.0
    again = await fake_discord.slash_command("chat", {"message": "again"})
    message = await reply(fake_discord, again)
    assert "loaded in" not in message.content  # it was loaded: nothing waited
    assert not any("loading" in text for text in shown(fake_discord, again))


# ---- keep_alive --------------------------------------------------------------------------------


async def test_keep_alive_is_sent_per_model_and_per_persona_and_model_ps_shows_the_unload(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    await bots.start(
        keep_alive="10m", keep_alive_per_model={"qwen3:latest": "-1"}, **EVERYONE_CREATES
    )
    await ask(fake_discord, "default")
    await ask(fake_discord, "forever", model="qwen3")
    sent = [r.get("keep_alive") for r in fake_ollama.chat_requests()]
    assert sent == ["10m", -1]

    created = await fake_discord.slash_command(
        "persona",
        {"name": "brief", "keep_alive": "0"},
        subcommand="create",
        attachments={"modelfile": ("Modelfile", b"FROM llama3.2\nSYSTEM Be brief.", "text/plain")},
    )
    await fake_discord.wait_until(
        lambda: (
            created.original_message_id is not None
            and "Created the persona" in fake_discord.messages[created.original_message_id].content
        ),
        timeout=10,
    )
    use = await fake_discord.slash_command(
        "persona", {"name": "brief"}, subcommand="use", user="admin"
    )
    await answer(fake_discord, use)
    await ask(fake_discord, "as the persona")
    last = fake_ollama.chat_requests()[-1]
    assert last["model"] == persona_model(fake_discord, "brief")
    assert last["keep_alive"] == 0  # unloaded right after the reply

    listing = await fake_discord.slash_command("model", subcommand="ps", user="admin")
    lines = (await answer(fake_discord, listing)).content.splitlines()
    llama = next(line for line in lines if "`llama3.2:latest`" in line)
    qwen = next(line for line in lines if "`qwen3:latest`" in line)
    match = re.search(r"unloads <t:(\d+):R>", llama)
    assert match is not None

    assert 590 < int(match.group(1)) - time.time() <= 601  # the 10 minutes sent
    assert qwen.endswith("stays loaded")
    assert not any("persona-" in line for line in lines)


async def test_a_persona_keep_alive_that_is_no_duration_is_refused_before_anything(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    await bots.start(**EVERYONE_CREATES)
    created = await fake_discord.slash_command(
        "persona",
        {"name": "brief", "keep_alive": "soon"},
        subcommand="create",
        attachments={"modelfile": ("Modelfile", b"FROM llama3.2", "text/plain")},
    )
    refusal = await answered(fake_discord, created)
    assert "keep_alive is a duration like `10m`" in refusal.content
    assert refusal.flags & 64  # privately
    assert not [r for r in fake_ollama.requests if r.path == "/api/create"]


# ---- fallback models ---------------------------------------------------------------------------


async def test_a_model_whose_hosts_are_down_is_answered_by_the_first_fallback_that_is_up(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama, second_ollama: FakeOllama
) -> None:
    fake_ollama.remove_model("qwen3")  # only the second host has it
    await bots.start(
        ollama_hosts=[fake_ollama.url, second_ollama.url],
        fallback_models=["mistral", "llama3.2"],  # mistral is installed nowhere: skipped
    )
    assert "qwen3 · " in (await ask(fake_discord, "first", model="qwen3")).content
    await second_ollama.close()
    message = await ask(fake_discord, "second", model="qwen3")
    assert "Hello from the fake model." in message.content
    assert "\n-# answered by llama3.2 (qwen3 unavailable) · " in message.content
    assert models_asked(fake_ollama) == ["llama3.2"]


async def test_a_long_line_sends_a_request_to_the_fallback_which_runs_beside_it(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    await bots.start(
        chat_model="qwen3",
        max_parallel_generations=1,
        fallback_models=["llama3.2"],
        fallback_after_queue=1,
    )
    fake_ollama.parallel = 2
    fake_ollama.script(
        Script(model="qwen3", reply=[f"w{n} " for n in range(40)], token_interval=0.05)
    )
    general, random, other = fake_discord.channel_ids[:3]
    first = await fake_discord.slash_command("chat", {"message": "one"}, channel_id=general)
    await fake_ollama.wait_until(lambda: fake_ollama.active_generations == 1)
    second = await fake_discord.slash_command("chat", {"message": "two"}, channel_id=random)
    await fake_discord.wait_until(
        lambda: any("number 1 in line" in t for t in shown(fake_discord, second))
    )
    third = await fake_discord.slash_command("chat", {"message": "three"}, channel_id=other)
    message = await reply(fake_discord, third)
    assert "\n-# answered by llama3.2 (qwen3 busy) · " in message.content
    assert fake_ollama.active_generations == 1  # the first is still writing: the third did not wait
    assert "answered by" not in (await reply(fake_discord, second)).content
    await reply(fake_discord, first)
    assert models_asked(fake_ollama) == ["qwen3", "llama3.2", "qwen3"]


# ---- the expected wait -------------------------------------------------------------------------


async def test_a_queue_notice_says_about_how_long_the_wait_is(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    await bots.start(max_parallel_generations=1)
    general, random, other = fake_discord.channel_ids[:3]
    # One finished reply of about 2 s teaches the bot the model's pace.
    fake_ollama.script(Script(reply=[f"a{n} " for n in range(20)], token_interval=0.1))
    await ask(fake_discord, "pace")
    fake_ollama.script(Script(reply=[f"b{n} " for n in range(30)], token_interval=0.1))
    first = await fake_discord.slash_command("chat", {"message": "one"}, channel_id=general)
    await fake_ollama.wait_until(lambda: fake_ollama.active_generations == 1)
    second = await fake_discord.slash_command("chat", {"message": "two"}, channel_id=random)
    third = await fake_discord.slash_command("chat", {"message": "three"}, channel_id=other)

    def estimate(interaction: FakeInteraction, place: int) -> int | None:
        for text in shown(fake_discord, interaction):
            found = re.search(rf"number {place} in line \(about (\d+) s\)\.", text)
            if found:
                return int(found.group(1))
        return None

    await fake_discord.wait_until(
        lambda: estimate(second, 1) is not None and estimate(third, 2) is not None
    )
    one, two = estimate(second, 1), estimate(third, 2)
    assert one is not None and two is not None
    assert 1 <= one <= 4 and 2 <= two <= 8 and two >= 2 * one - 1
    for interaction in (first, second, third):
        await reply(fake_discord, interaction)
