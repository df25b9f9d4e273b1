"""The Stop and Regenerate buttons under a reply."""

from __future__ import annotations

from bot.app import OllamaBot
from tests.doubles.fake_discord import FakeDiscord, FakeMessage
from tests.doubles.fake_ollama import FakeOllama, Script
from tests.e2e.test_chat import chat


def button(message: FakeMessage, prefix: str) -> str | None:
    for row in message.components:
        for component in row.get("components", []):
            if str(component.get("custom_id", "")).startswith(prefix):
                return str(component["custom_id"])
    return None


def answer_of(fake: FakeDiscord, interaction_id: str) -> FakeMessage:
    interaction = fake.interactions[interaction_id]
    assert interaction.original_message_id
    return fake.messages[interaction.original_message_id]


async def test_stop_ends_the_ollama_request_and_keeps_the_partial_answer(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    fake_ollama.script(Script(reply=[f"w{n} " for n in range(200)], token_interval=0.05))
    interaction = await fake_discord.slash_command("chat", {"message": "talk for a while"})

    def stop_button() -> str | None:
        if interaction.original_message_id is None:
            return None
        return button(fake_discord.messages[interaction.original_message_id], "reply:stop:")

    await fake_discord.wait_until(lambda: stop_button() is not None, timeout=10)
    custom_id = stop_button()
    assert custom_id is not None
    message_id = interaction.original_message_id or ""

    refused = await fake_discord.click_button(message_id, custom_id, user="bob")
    await fake_discord.wait_until(lambda: refused.callback_type is not None)
    assert refused.callback_type == 4
    assert "Only the person who asked" in (refused.callback_body or {})["data"]["content"]

    stopped = await fake_discord.click_button(message_id, custom_id, user="alice")
    await fake_discord.wait_until(
        lambda: "stopped by Alice" in fake_discord.messages[message_id].content, timeout=10
    )
    assert stopped.callback_type == 6  # acknowledged without a message of its own
    await fake_ollama.wait_until(lambda: fake_ollama.cancelled == 1)
    final = fake_discord.messages[message_id]
    assert button(final, "reply:stop:") is None
    assert button(final, "reply:again:") is not None
    turns = await bot.history.all(int(fake_discord.channel_ids[0]))
    assert turns[1].status == "stopped"
    assert turns[1].content.startswith("w0")
    assert len(turns[1].content.split()) < 200


async def test_a_server_admin_may_stop_someone_elses_reply(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    fake_ollama.script(Script(reply=[f"w{n} " for n in range(200)], token_interval=0.05))
    interaction = await fake_discord.slash_command("chat", {"message": "talk for a while"})

    def stop_button() -> str | None:
        if interaction.original_message_id is None:
            return None
        return button(fake_discord.messages[interaction.original_message_id], "reply:stop:")

    await fake_discord.wait_until(lambda: stop_button() is not None, timeout=10)
    message_id = interaction.original_message_id or ""
    # "admin" did not ask (alice did) but holds the Admin role (Administrator, Manage Server).
    stopped = await fake_discord.click_button(message_id, stop_button() or "", user="admin")
    await fake_discord.wait_until(
        lambda: "stopped by Admin" in fake_discord.messages[message_id].content, timeout=10
    )
    assert stopped.callback_type == 6  # acknowledged quietly, like the asker's own Stop
    await fake_ollama.wait_until(lambda: fake_ollama.cancelled == 1)
    assert button(fake_discord.messages[message_id], "reply:stop:") is None
    turns = await bot.history.all(int(fake_discord.channel_ids[0]))
    assert turns[1].status == "stopped"
    assert len(turns[1].content.split()) < 200


async def test_regenerate_replaces_the_latest_answer(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    fake_ollama.script(Script(reply="First try."), Script(reply="Second try."))
    old = await chat(fake_discord, "tell me a joke")
    custom_id = button(old, "reply:again:")
    assert custom_id is not None

    click = await fake_discord.click_button(old.id, custom_id, user="alice")
    await fake_discord.wait_until(
        lambda: any("Second try." in fake_discord.messages[i].content for i in click.followup_ids),
        timeout=10,
    )
    assert click.callback_type == 7  # the old answer loses its button
    assert button(fake_discord.messages[old.id], "reply:again:") is None
    assert "First try." in fake_discord.messages[old.id].content
    turns = await bot.history.all(int(fake_discord.channel_ids[0]))
    assert [(t.role, t.content) for t in turns] == [
        ("user", "tell me a joke"),
        ("assistant", "Second try."),
    ]
    assert fake_ollama.chat_requests()[-1]["messages"] == [
        {"role": "user", "content": "tell me a joke"}
    ]


async def test_only_the_latest_answer_can_be_regenerated_by_its_asker(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    first = await chat(fake_discord, "one")
    latest = await chat(fake_discord, "two")
    custom_id = button(first, "reply:again:")
    assert custom_id is not None
    old = await fake_discord.click_button(first.id, custom_id, user="alice")
    await fake_discord.wait_until(lambda: old.callback_type is not None)
    assert "Only the latest answer" in (old.callback_body or {})["data"]["content"]

    latest_id = button(latest, "reply:again:")
    assert latest_id is not None
    other = await fake_discord.click_button(latest.id, latest_id, user="bob")
    await fake_discord.wait_until(lambda: other.callback_type is not None)
    assert "Only the person who asked" in (other.callback_body or {})["data"]["content"]
    assert await bot.history.count(int(fake_discord.channel_ids[0])) == 4
