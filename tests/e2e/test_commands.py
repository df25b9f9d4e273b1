"""/history show|export|clear, /status, and command sync at start."""

from __future__ import annotations

import json

from bot.app import OllamaBot
from tests.conftest import BotRunner, eventually
from tests.doubles.fake_discord import READ_MESSAGE_HISTORY, FakeDiscord, FakeInteraction
from tests.doubles.fake_ollama import FakeOllama, Script
from tests.e2e.test_chat import chat
from tests.e2e.test_models import answer


def response_text(fake: FakeDiscord, interaction: FakeInteraction) -> str:
    if interaction.followup_ids:
        return fake.messages[interaction.followup_ids[-1]].content
    assert interaction.original_message_id
    return fake.messages[interaction.original_message_id].content


async def shown_text(fake: FakeDiscord, interaction: FakeInteraction) -> str:
    """The answer's text once there is some (a deferred answer starts empty)."""

    def text() -> str:
        if not interaction.followup_ids and interaction.original_message_id is None:
            return ""
        return response_text(fake, interaction)

    await fake.wait_until(lambda: bool(text()))
    return text()


async def test_history_show_lists_the_last_turns_privately(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    fake_ollama.script(Script(reply="Forty-two."))
    await chat(fake_discord, "What is the answer?")
    interaction = await fake_discord.slash_command("history", subcommand="show")
    text = await shown_text(fake_discord, interaction)
    assert fake_discord.messages[interaction.original_message_id or ""].is_ephemeral
    assert "**Alice**: What is the answer?" in text
    assert "Forty-two." in text
    assert "Last 2 of 2 turns" in text


async def test_history_show_on_an_empty_channel(bot: OllamaBot, fake_discord: FakeDiscord) -> None:
    interaction = await fake_discord.slash_command("history", subcommand="show")
    assert "no conversation yet" in await shown_text(fake_discord, interaction)


async def test_history_export_sends_markdown_and_json(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    fake_ollama.script(Script(reply="Forty-two."))
    await chat(fake_discord, "What is the answer?")
    interaction = await fake_discord.slash_command("history", subcommand="export")
    # The deferred ("thinking…") response itself becomes the answer: Discord's documented way.
    message = await answer(fake_discord, interaction)
    assert message.id == interaction.original_message_id and message.is_ephemeral
    assert not interaction.followup_ids
    files = dict(message.attachments)
    channel = fake_discord.channel_ids[0]
    markdown = files[f"history-{channel}.md"].decode()
    data = json.loads(files[f"history-{channel}.json"])
    assert "What is the answer?" in markdown and "Forty-two." in markdown
    assert [(t["role"], t["content"], t["status"]) for t in data["turns"]] == [
        ("user", "What is the answer?", "complete"),
        ("assistant", "Forty-two.", "complete"),
    ]
    assert data["turns"][1]["model"] == "llama3.2"


async def test_history_clear_needs_manage_messages(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    await chat(fake_discord, "remember this")
    refused = await fake_discord.slash_command("history", subcommand="clear", user="bob")
    assert "Manage Messages" in await shown_text(fake_discord, refused)
    assert await bot.history.count(int(fake_discord.channel_ids[0])) == 2

    cleared = await fake_discord.slash_command("history", subcommand="clear", user="admin")
    assert "2 turns deleted" in await shown_text(fake_discord, cleared)
    assert await bot.history.count(int(fake_discord.channel_ids[0])) == 0

    await chat(fake_discord, "a fresh start")
    assert fake_ollama.chat_requests()[-1]["messages"] == [
        {"role": "user", "content": "a fresh start"}
    ]


async def test_admin_only_top_level_commands_are_hidden_from_members(bot: OllamaBot) -> None:
    channel = bot.tree.get_command("channel")
    assert channel is not None
    assert channel.default_permissions is not None
    assert channel.default_permissions.manage_channels


async def test_status_reports_ollama_database_and_queue(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    interaction = await fake_discord.slash_command("status", user="admin")  # the bot's owner
    text = (await answer(fake_discord, interaction)).content
    assert f"reachable at {fake_ollama.url}, version {fake_ollama.version}" in text
    assert "Database: ✅ ok" in text
    assert "Generating now: 0 · waiting: 0" in text
    assert "Uptime:" in text


async def test_status_when_ollama_is_down(bots: BotRunner, fake_discord: FakeDiscord) -> None:
    await bots.start(ollama_host="http://127.0.0.1:9")
    interaction = await fake_discord.slash_command("status")
    assert "❌ not reachable" in (await answer(fake_discord, interaction)).content


async def test_commands_are_synced_only_when_the_tree_changed(
    bots: BotRunner, fake_discord: FakeDiscord
) -> None:
    def puts() -> int:
        return sum(
            1 for r in fake_discord.requests if r.method == "PUT" and r.path.endswith("/commands")
        )

    first = await bots.start()
    assert puts() == 1
    names = {c["name"] for c in fake_discord.commands}
    assert {"chat", "history", "status"} <= names
    await bots.stop(first)
    await bots.start()
    assert puts() == 1


async def test_commands_are_for_guild_installs_and_dms_only_when_allowed(
    bots: BotRunner, fake_discord: FakeDiscord
) -> None:
    guild_only = {  # never in a DM
        "persona",
        "channel",
        "thread",
        "tools",
        "kb",
        "Continue in thread",
        "Add to knowledge",
    }
    first = await bots.start()
    assert fake_discord.commands
    for command in fake_discord.commands:
        assert command["integration_types"] == [0], command["name"]  # GUILD_INSTALL only
        assert command["contexts"] == [0], command["name"]  # GUILD only
    await bots.stop(first)

    await bots.start(allow_dms=True)  # the tree changed, so it is synced again
    for command in fake_discord.commands:
        assert command["integration_types"] == [0], command["name"]
        expected = [0] if command["name"] in guild_only else [0, 1]  # + BOT_DM, never group DMs
        assert command["contexts"] == expected, command["name"]


async def test_history_clear_in_a_dm_clears_that_users_conversation(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    bot = await bots.start(allow_dms=True)
    await chat(fake_discord, "in the server")
    dm = fake_discord.add_dm_channel("alice")
    await fake_discord.user_message("hello in private", channel_id=dm)
    await eventually(lambda: _count(bot, int(dm), 2))

    cleared = await fake_discord.slash_command("history", subcommand="clear", channel_id=dm)
    assert "cleared our conversation (2 turns deleted)" in await shown_text(fake_discord, cleared)
    assert await bot.history.count(int(dm)) == 0
    assert await bot.history.count(int(fake_discord.channel_ids[0])) == 2


async def _count(bot: OllamaBot, channel_id: int, expected: int) -> bool:
    turns = await bot.history.all(channel_id)
    return len(turns) == expected and all(t.status != "streaming" for t in turns)


async def test_history_show_and_export_need_read_message_history(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    await chat(fake_discord, "a secret plan")
    for subcommand in ("show", "export"):
        interaction = await _without_read_history(fake_discord, subcommand)
        text = await shown_text(fake_discord, interaction)
        assert text == "You need the Read Message History permission in this channel."
        assert fake_discord.messages[interaction.original_message_id or ""].is_ephemeral
        assert "secret plan" not in text


async def _without_read_history(fake: FakeDiscord, subcommand: str) -> FakeInteraction:
    """/history <subcommand> by bob, whose permissions in the channel lack Read Message
    History (a channel overwrite would do that on Discord)."""
    channel_id = fake.channel_ids[0]
    data = fake._command_data("history", None, channel_id=channel_id, subcommand=subcommand)
    interaction, payload = fake._new_interaction_payload(2, data, "bob", channel_id)
    bits = str(int(payload["member"]["permissions"]) & ~READ_MESSAGE_HISTORY)
    payload["member"]["permissions"] = payload["channel"]["permissions"] = bits
    return await fake._send_interaction(interaction)
