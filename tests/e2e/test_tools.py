"""Tools: models that look things up while they answer, through the real bot, the Discord double
and the Ollama double (which streams tool calls as Ollama does)."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from pathlib import Path
from typing import Any

from bot.app import OllamaBot
from tests.conftest import BotRunner
from tests.doubles.discord.constants import READ_MESSAGE_HISTORY, VIEW_CHANNEL
from tests.doubles.fake_discord import FakeDiscord, FakeMessage
from tests.doubles.fake_ollama import FakeOllama, Script
from tests.e2e.test_chat import assert_pings_no_one, chat
from tests.e2e.test_knowledge import HANDBOOK, file, kb_add, make_private
from tests.e2e.test_models import answer


def call(name: str, **arguments: Any) -> dict[str, Any]:
    return {"function": {"name": name, "arguments": arguments}}


def asks(*calls: dict[str, Any]) -> Script:
    """A model round that asks for tools and says nothing."""
    return Script(reply="", tool_calls=list(calls))


async def tools_on(fake: FakeDiscord, channel_id: str | None = None) -> None:
    interaction = await fake.slash_command(
        "tools", {"enabled": True}, user="admin", channel_id=channel_id
    )
    await fake.wait_until(lambda: interaction.callback_type is not None)
    assert "Tools are **on**" in interaction.callback_body["data"]["content"]


async def answered(fake: FakeDiscord, text: str) -> FakeMessage:
    """/chat, waiting for a footer whatever the model (chat() expects llama3.2's)."""
    interaction = await fake.slash_command("chat", {"message": text})
    await fake.wait_until(
        lambda: (
            interaction.original_message_id is not None
            and "\n-# " in fake.messages[interaction.original_message_id].content
        ),
        timeout=10,
    )
    assert interaction.original_message_id is not None
    return fake.messages[interaction.original_message_id]


def tool_messages(request: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in request["messages"] if m["role"] == "tool"]


def offered(request: dict[str, Any]) -> list[str]:
    return [t["function"]["name"] for t in request.get("tools") or []]


async def test_current_time_round_trip_and_the_footer_lists_it(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    bot = await bots.start(timezone="Europe/Paris")
    await tools_on(fake_discord)
    fake_ollama.script(asks(call("current_time")), Script(reply="It is tea time."))
    message = await chat(fake_discord, "what time is it?")

    first, second = fake_ollama.chat_requests()
    assert {"current_time", "read_channel", "open_message"} <= set(offered(first))
    assert "fetch_url" not in offered(first)  # web tools are off unless the owner enables them
    assert second["messages"][-2]["role"] == "assistant"
    assert second["messages"][-2]["tool_calls"][0]["function"]["name"] == "current_time"
    (result,) = tool_messages(second)
    assert result["tool_name"] == "current_time"
    assert "Europe/Paris" in result["content"]
    assert "It is tea time." in message.content
    assert "🔧 current_time" in message.content.splitlines()[-1]
    assert_pings_no_one(fake_discord)

    # Stored with the turn; later requests get only the final answers.
    channel = int(fake_discord.channel_ids[0])
    calls = await bot.history.tool_calls_of(channel)
    (stored,) = calls.values()
    assert stored[0]["name"] == "current_time" and "Europe/Paris" in stored[0]["result"]
    fake_ollama.script(Script(reply="Sure."))
    await chat(fake_discord, "thanks")
    later = fake_ollama.chat_requests()[-1]
    assert [m["role"] for m in later["messages"]] == ["user", "assistant", "user"]
    assert later["messages"][1]["content"] == "It is tea time."


async def test_tools_are_off_by_default_and_per_channel(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    await chat(fake_discord, "hello")
    assert "tools" not in fake_ollama.chat_requests()[-1] or not offered(
        fake_ollama.chat_requests()[-1]
    )
    refused = await fake_discord.slash_command("tools", {"enabled": True}, user="bob")
    await fake_discord.wait_until(lambda: refused.callback_type is not None)
    assert "Manage Channels" in refused.callback_body["data"]["content"]
    await tools_on(fake_discord)
    await chat(fake_discord, "hello again")
    assert "current_time" in offered(fake_ollama.chat_requests()[-1])
    other = fake_discord.channel_ids[1]
    await chat(fake_discord, "elsewhere", channel_id=other)
    assert not offered(fake_ollama.chat_requests()[-1])


async def seed(fake: FakeDiscord, channel_id: str, *texts: str) -> list[FakeMessage]:
    return [await fake.user_message(text, user="bob", channel_id=channel_id) for text in texts]


async def test_read_channel_reads_what_the_member_can_read(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    await bots.start(message_content_intent=True)
    random = fake_discord.channel_ids[1]
    await seed(fake_discord, random, "the meeting is at 3pm", "ping <@123> and @everyone")
    await tools_on(fake_discord)
    fake_ollama.script(
        asks(call("read_channel", channel="random", limit=5)), Script(reply="At 3pm.")
    )
    message = await chat(fake_discord, "when is the meeting? see #random")
    (result,) = tool_messages(fake_ollama.chat_requests()[-1])
    assert "the meeting is at 3pm" in result["content"]
    assert "Bob: the meeting is at 3pm" in result["content"]
    assert "<@123>" not in result["content"] and "@everyone" not in result["content"]
    footer = message.content.splitlines()[-1]
    guild = fake_discord.guild_id
    assert f"🔧 read_channel [#random](<https://discord.com/channels/{guild}/{random}>)" in footer
    assert_pings_no_one(fake_discord)


async def test_read_channel_refuses_a_channel_the_member_cannot_read(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    await bots.start(message_content_intent=True)
    secret = fake_discord.channel_ids[2]
    await seed(fake_discord, secret, "the launch code is 0000")
    alice = fake_discord.users["alice"]["id"]
    await fake_discord.set_overwrite(secret, alice, deny=VIEW_CHANNEL)
    await tools_on(fake_discord)
    fake_ollama.script(
        asks(call("read_channel", channel="other")), Script(reply="I can't read that.")
    )
    await chat(fake_discord, "what's in #other?")
    (result,) = tool_messages(fake_ollama.chat_requests()[-1])
    assert "0000" not in result["content"]
    assert "can read" in result["content"]

    # Read Message History is needed too; and a link opens nothing more.
    await fake_discord.set_overwrite(secret, alice, deny=READ_MESSAGE_HISTORY)
    (code,) = [m for m in fake_discord.channel_messages(secret) if "0000" in m.content]
    link = f"https://discord.com/channels/{fake_discord.guild_id}/{secret}/{code.id}"
    fake_ollama.script(
        asks(call("read_channel", channel="other"), call("open_message", link=link)),
        Script(reply="No."),
    )
    await chat(fake_discord, "and now?")
    results = tool_messages(fake_ollama.chat_requests()[-1])
    assert len(results) == 2
    assert all("0000" not in r["content"] for r in results)

    # bob can read it: the same question reads it for him.
    fake_ollama.script(asks(call("open_message", link=link)), Script(reply="0000."))
    interaction = await fake_discord.slash_command("chat", {"message": "open it"}, user="bob")
    await fake_discord.wait_until(
        lambda: (
            len(fake_ollama.chat_requests()) == 6 and interaction.original_message_id is not None
        )
    )
    (result,) = tool_messages(fake_ollama.chat_requests()[-1])
    assert "0000" in result["content"]


async def test_without_the_message_content_intent_the_tool_says_text_is_hidden(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    random = fake_discord.channel_ids[1]
    await seed(fake_discord, random, "a secret only with the intent")
    await tools_on(fake_discord)
    fake_ollama.script(asks(call("read_channel", channel="#random")), Script(reply="Hidden."))
    await chat(fake_discord, "read #random")
    (result,) = tool_messages(fake_ollama.chat_requests()[-1])
    assert "a secret only with the intent" not in result["content"]
    assert "Message Content intent" in result["content"]


async def test_the_reply_shows_the_tool_while_it_runs(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    await bots.start(message_content_intent=True)
    await tools_on(fake_discord)
    # The tool call comes late enough that the status line is drawn (1 s after the start), and
    # the answer late enough for a second status edit (the loading notice is the first).
    fake_ollama.script(
        Script(
            reply="", tool_calls=[call("read_channel", channel="random")], first_token_delay=1.2
        ),
        Script(reply="Done.", first_token_delay=2.5),  # the loading notice came first
    )
    message = await chat(fake_discord, "read #random")
    shown = [body.get("content", "") for body in message.history]
    assert any(content.endswith("\n-# 🔧 reading #random") for content in shown), shown
    assert "Done." in message.content


async def test_a_model_without_tools_answers_and_the_footer_says_so_once(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    await bots.start(chat_model="llava")
    await tools_on(fake_discord)
    first = await answered(fake_discord, "hi")
    assert not offered(fake_ollama.chat_requests()[-1])
    assert "tools are on here, but llava can't use them" in first.content.splitlines()[-1]
    second = await answered(fake_discord, "hi again")
    assert "can't use them" not in second.content


async def test_a_model_ollama_refuses_tools_for_is_asked_again_without_them(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    await bots.start()
    await tools_on(fake_discord)
    # /api/show says it can; Ollama's chat says it cannot (its capabilities changed meanwhile).
    error = "registry.ollama.ai/library/llama3.2:latest does not support tools"
    fake_ollama.script(Script(status=400, error_message=error), Script(reply="Plain answer."))
    message = await chat(fake_discord, "hi")
    first, second = fake_ollama.chat_requests()
    assert offered(first) and not offered(second)
    assert "Plain answer." in message.content
    assert "can't use them" in message.content.splitlines()[-1]


async def test_a_model_that_keeps_calling_tools_is_stopped_after_the_rounds(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    await bots.start(tool_rounds_max=2)
    await tools_on(fake_discord)
    fake_ollama.script(
        asks(call("current_time")),
        asks(call("current_time")),
        Script(reply="Enough.", tool_calls=[call("current_time")]),
    )
    message = await chat(fake_discord, "loop")
    requests = fake_ollama.chat_requests()
    assert len(requests) == 3
    assert offered(requests[0]) and offered(requests[1]) and not offered(requests[2])
    assert len(tool_messages(requests[2])) == 2
    assert "Enough." in message.content
    assert "stopped after 2 rounds of tools" in message.content.splitlines()[-1]


async def test_history_export_shows_the_tool_calls(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    await tools_on(fake_discord)
    fake_ollama.script(asks(call("current_time")), Script(reply="Noon."))
    await chat(fake_discord, "time?")
    interaction = await fake_discord.slash_command("history", subcommand="export")
    message = await answer(fake_discord, interaction)
    files = dict(message.attachments)
    channel = fake_discord.channel_ids[0]
    markdown = files[f"history-{channel}.md"].decode()
    data = json.loads(files[f"history-{channel}.json"])
    assert "🔧 current_time" in markdown
    (reply,) = [t for t in data["turns"] if t["role"] == "assistant"]
    assert reply["content"] == "Noon."
    assert reply["tool_calls"][0]["name"] == "current_time"
    assert reply["tool_calls"][0]["arguments"] == {}


ECHO_SERVER = str(Path(__file__).resolve().parents[1] / "mcp" / "echo_server.py")


async def test_an_mcp_server_started_over_stdio_answers_a_tool_call(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    guild = int(fake_discord.guild_id)
    server = {"command": sys.executable, "args": [ECHO_SERVER]}
    await bots.start(
        mcp_servers=[
            {"name": "echo", **server, "guild_ids": [guild]},
            {"name": "elsewhere", **server, "guild_ids": [guild + 1]},
        ]
    )
    await tools_on(fake_discord)
    fake_ollama.script(asks(call("echo__shout", text="hello")), Script(reply="They said HELLO."))
    message = await chat(fake_discord, "shout hello")
    first, second = fake_ollama.chat_requests()
    names = offered(first)
    assert {"echo__shout", "echo__wait", "current_time"} <= set(names)
    assert not any(name.startswith("elsewhere__") for name in names)  # another guild's server
    shout = next(t for t in first["tools"] if t["function"]["name"] == "echo__shout")
    assert shout["function"]["parameters"]["required"] == ["text"]
    (result,) = tool_messages(second)
    assert result["tool_name"] == "echo__shout"
    assert result["content"] == "HELLO (cc <@\u200b123> @\u200beveryone)"  # nothing pings
    assert "🔧 echo__shout" in message.content.splitlines()[-1]

    # The server is kept running: the next reply calls it again without starting it anew.
    fake_ollama.script(asks(call("echo__shout", text="again")), Script(reply="AGAIN."))
    await chat(fake_discord, "again")
    (result,) = tool_messages(fake_ollama.chat_requests()[-1])
    assert result["content"].startswith("AGAIN")
    assert_pings_no_one(fake_discord)


async def test_an_mcp_server_over_streamable_http_answers_a_tool_call(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        ECHO_SERVER,
        "--http",
        str(port),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with asyncio.timeout(15):
            while True:
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                except OSError:
                    await asyncio.sleep(0.1)
                    continue
                writer.close()
                break
        url = f"http://127.0.0.1:{port}/mcp"
        await bots.start(mcp_servers=[{"name": "web", "url": url}])  # every guild
        await tools_on(fake_discord)
        fake_ollama.script(asks(call("web__shout", text="over http")), Script(reply="Done."))
        await chat(fake_discord, "shout over http")
        (result,) = tool_messages(fake_ollama.chat_requests()[-1])
        assert result["content"].startswith("OVER HTTP")
    finally:
        process.terminate()
        await process.wait()


async def test_search_knowledge_is_offered_where_the_server_has_knowledge(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    """The knowledge base as a tool: offered only once the server has knowledge, searched for
    the asking member (what they can read), each passage with its source."""
    await bots.start()
    await tools_on(fake_discord)
    fake_ollama.script(Script(reply="No idea."))
    await chat(fake_discord, "anything to look up?")
    assert "search_knowledge" not in offered(fake_ollama.chat_requests()[-1])

    added = await kb_add(fake_discord, attachment=file("handbook.md", HANDBOOK))
    assert "handbook.md" in added.content
    fake_ollama.script(
        asks(call("search_knowledge", query="pizza night")), Script(reply="Fridays at 8pm.")
    )
    message = await chat(fake_discord, "when do we eat?")
    asked, answered_after = fake_ollama.chat_requests()[-2:]
    assert "search_knowledge" in offered(asked)
    (result,) = tool_messages(answered_after)
    assert result["tool_name"] == "search_knowledge"
    assert "Pizza night happens every Friday" in result["content"]
    assert "(handbook.md" in result["content"]
    assert "Fridays at 8pm." in message.content
    assert "🔧 search_knowledge" in message.content


async def test_search_knowledge_never_returns_what_the_asker_cannot_read(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    await bots.start(knowledge_permission="everyone")
    general, private = fake_discord.channel_ids[0], fake_discord.channel_ids[2]
    await tools_on(fake_discord)
    await make_private(fake_discord, private, "alice")
    await kb_add(
        fake_discord,
        user="alice",
        channel_id=private,
        options={"scope": "channel"},
        attachment=file("staff.md", "Staff meet in the voice channels every Monday at noon."),
    )
    for user, sees in (("bob", False), ("alice", True)):
        fake_ollama.script(
            asks(call("search_knowledge", query="staff meeting voice")), Script(reply="Ok.")
        )
        interaction = await fake_discord.slash_command(
            "chat", {"message": "when do staff meet?"}, user=user, channel_id=general
        )
        await fake_discord.wait_until(
            lambda i=interaction: (
                (m := fake_discord.messages.get(i.original_message_id or "")) is not None
                and "tokens/s" in m.content
            ),
            timeout=10,
        )
        (result,) = tool_messages(fake_ollama.chat_requests()[-1])
        assert ("every Monday at noon" in result["content"]) is sees, (user, result)
