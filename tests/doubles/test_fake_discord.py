"""Proves `FakeDiscord` with a real, minimal discord.py bot (not the project's bot)."""

from __future__ import annotations

import asyncio
import io
import json
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import aiohttp
import discord
import pytest
import yarl
from discord import app_commands
from discord.ext import commands

from tests.doubles.fake_discord import (
    ADMINISTRATOR,
    ALL_PERMISSIONS,
    CREATE_PRIVATE_THREADS,
    MANAGE_CHANNELS,
    READ_MESSAGE_HISTORY,
    SEND_MESSAGES,
    SEND_MESSAGES_IN_THREADS,
    VIEW_CHANNEL,
    FakeDiscord,
    FakeInteraction,
    RecordedRequest,
)

NO_PINGS: dict[str, list[str]] = {"parse": []}


class PanelView(discord.ui.View):
    """A button that edits its own message (callback type 7)."""

    def __init__(self) -> None:
        super().__init__(timeout=None)

    @discord.ui.button(label="Press", custom_id="panel:press")
    async def press(self, interaction: discord.Interaction, button: discord.ui.Button[Any]) -> None:
        await interaction.response.edit_message(content="pressed", view=None)


class NameModal(discord.ui.Modal, title="Your name"):
    """A one-field modal (callback type 9, then a type 5 submit)."""

    name: discord.ui.TextInput[Any] = discord.ui.TextInput(label="Name", custom_id="name")

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(f"hello {self.name.value}")


class DoubleBot(commands.Bot):
    """A tiny slash-command bot; it records what it saw so the tests can check."""

    def __init__(self) -> None:
        super().__init__(
            command_prefix="!",
            intents=discord.Intents.default(),
            guild_ready_timeout=0.05,
            chunk_guilds_at_startup=False,
            allowed_mentions=discord.AllowedMentions.none(),
        )
        self.seen: list[discord.Message] = []
        self.errors: list[Exception] = []
        self.permissions: list[tuple[int, int]] = []  # (member's, app's) per /whoami

    async def on_message(self, message: discord.Message) -> None:
        self.seen.append(message)

    async def setup_hook(self) -> None:
        tree = self.tree

        @tree.command(description="Ask something")
        async def ask(interaction: discord.Interaction, prompt: str) -> None:
            await interaction.response.defer(thinking=True)
            await interaction.edit_original_response(content=f"thinking about {prompt}")
            await interaction.edit_original_response(content=f"answer to {prompt}")

        @tree.command(description="Send files")
        async def files(interaction: discord.Interaction, upload: discord.Attachment) -> None:
            await interaction.response.defer()
            data = await upload.read()
            await interaction.followup.send("first", file=discord.File(io.BytesIO(data), "a.txt"))
            await interaction.followup.send("second", file=discord.File(io.BytesIO(b"B"), "b.txt"))

        @tree.command(description="Takes its answer back")
        async def regret(interaction: discord.Interaction) -> None:
            await interaction.response.defer(thinking=True)
            await interaction.delete_original_response()
            await interaction.followup.send("only for you", ephemeral=True)

        @tree.command(description="Streams edits")
        async def stream(interaction: discord.Interaction) -> None:
            await interaction.response.defer()
            for i in range(4):
                await interaction.edit_original_response(content=f"part {i}")

        history = app_commands.Group(name="history", description="Conversation history")

        @history.command(description="Show the history")
        async def show(interaction: discord.Interaction, count: int) -> None:
            await interaction.response.send_message(f"showing {count}")

        tree.add_command(history)

        @tree.command(description="Answers too late")
        async def late(interaction: discord.Interaction) -> None:
            await asyncio.sleep(0.3)
            try:
                await interaction.response.send_message("too late")
            except discord.HTTPException as exc:
                self.errors.append(exc)

        @tree.command(description="Shows what you and the bot may do here")
        async def whoami(interaction: discord.Interaction) -> None:
            self.permissions.append(
                (interaction.permissions.value, interaction.app_permissions.value)
            )
            await interaction.response.send_message("noted", ephemeral=True)

        @tree.command(description="Answers after a delay")
        async def slow(interaction: discord.Interaction, delay: float) -> None:
            await asyncio.sleep(delay)
            try:
                await interaction.response.send_message(f"after {delay}")
            except discord.HTTPException as exc:
                self.errors.append(exc)

        @tree.command(description="Shows a button")
        async def panel(interaction: discord.Interaction) -> None:
            await interaction.response.send_message("panel", view=PanelView())

        @tree.command(description="Opens a modal")
        async def name(interaction: discord.Interaction) -> None:
            await interaction.response.send_modal(NameModal())

        @tree.command(description="Picks a model")
        async def model(interaction: discord.Interaction, choice: str) -> None:
            await interaction.response.send_message(choice, ephemeral=True)

        @model.autocomplete("choice")
        async def model_choices(
            interaction: discord.Interaction, current: str
        ) -> list[app_commands.Choice[str]]:
            names = ["llama3", "llava", "mistral"]
            return [app_commands.Choice(name=n, value=n) for n in names if n.startswith(current)]

        @tree.context_menu(name="Quote")
        async def quote(interaction: discord.Interaction, message: discord.Message) -> None:
            await interaction.response.send_message(f"> {message.content}")


@pytest.fixture
def fake_options() -> dict[str, Any]:
    """FakeDiscord keyword arguments; override with @pytest.mark.parametrize("fake_options")."""
    return {}


@pytest.fixture
async def fake(fake_options: dict[str, Any]) -> AsyncIterator[FakeDiscord]:
    double = FakeDiscord(**fake_options)
    await double.start()
    yield double
    await double.close()
    assert not double.server_errors, double.server_errors[-1]


@pytest.fixture
async def bot(fake: FakeDiscord, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[DoubleBot]:
    monkeypatch.setattr(discord.http.Route, "BASE", fake.api_base)
    monkeypatch.setattr(
        discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(fake.gateway_url)
    )
    client = DoubleBot()
    task = asyncio.create_task(client.start(fake.token))
    await fake.wait_ready()
    await asyncio.wait_for(client.wait_until_ready(), 5)
    yield client
    await client.close()
    await asyncio.wait_for(task, 5)


def text_channel(bot: DoubleBot, channel_id: str) -> discord.TextChannel:
    channel = bot.get_channel(int(channel_id))
    assert isinstance(channel, discord.TextChannel)
    return channel


async def test_login_ready_and_sync(fake: FakeDiscord, bot: DoubleBot) -> None:
    assert bot.user is not None and str(bot.user.id) == fake.bot_user["id"]
    assert bot.application_id == int(fake.application_id)
    guild = bot.get_guild(int(fake.guild_id))
    assert guild is not None and guild.name == "Test Guild"
    assert {c.name for c in guild.text_channels} >= {"general", "random", "other"}
    assert fake.identify is not None and not fake.message_content_intent
    assert guild.me.guild_permissions.send_messages

    synced = await bot.tree.sync()
    assert {c.name for c in synced} == {c["name"] for c in fake.commands}
    assert {"ask", "files", "late", "Quote"} <= {c["name"] for c in fake.commands}
    assert [r.path for r in fake.requests[:2]] == ["/users/@me", "/oauth2/applications/@me"]


async def test_bad_token_is_a_login_failure(
    fake: FakeDiscord, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(discord.http.Route, "BASE", fake.api_base)
    client = discord.Client(intents=discord.Intents.default())
    with pytest.raises(discord.LoginFailure):
        await client.login("not-the-token")
    await client.close()
    assert fake.requests[-1].status == 401


async def test_deferred_answer_then_edits(fake: FakeDiscord, bot: DoubleBot) -> None:
    interaction = await fake.slash_command("ask", {"prompt": "sky"})
    await fake.wait_until(
        lambda: (
            interaction.original_message_id is not None
            and len(fake.messages[interaction.original_message_id].edits) == 2
        )
    )
    assert interaction.callback_type == 5 and interaction.deferred
    original = fake.messages[interaction.original_message_id or ""]
    assert original.content == "answer to sky"
    assert [content for _, content in original.edits] == ["thinking about sky", "answer to sky"]
    assert not original.is_loading and not original.is_ephemeral
    assert original.interaction_id == interaction.id
    assert all(body["allowed_mentions"] == NO_PINGS for body in original.history)


async def test_request_hooks_see_each_answer_with_its_effects(
    fake: FakeDiscord, bot: DoubleBot
) -> None:
    seen: list[tuple[str, str, int, str]] = []

    def hook(request: RecordedRequest) -> None:
        if request.path.startswith(("/interactions/", "/webhooks/")):
            original = fake.messages[interaction.original_message_id or ""]
            seen.append((request.method, request.path, request.status, original.content))

    def broken(request: RecordedRequest) -> None:
        raise RuntimeError("a bug in a hook")

    fake.request_hooks += [hook, broken]
    interaction = await fake.slash_command("ask", {"prompt": "sky"})
    await fake.wait_until(lambda: len(seen) == 3)
    callback = f"/interactions/{interaction.id}/{interaction.token}/callback"
    edit = f"/webhooks/{fake.application_id}/{interaction.token}/messages/@original"
    assert seen == [
        ("POST", callback, 200, ""),
        ("PATCH", edit, 200, "thinking about sky"),
        ("PATCH", edit, 200, "answer to sky"),
    ]
    # A failing hook is a bug in the bench, not the bot's: kept, and the bot got its answers.
    assert len(fake.server_errors) == 3 and "a bug in a hook" in fake.server_errors[0]
    fake.server_errors.clear()


async def test_followups_with_files(fake: FakeDiscord, bot: DoubleBot) -> None:
    upload = {"upload": ("notes.txt", b"hello file", "text/plain")}
    interaction = await fake.slash_command("files", attachments=upload)
    await fake.wait_until(lambda: len(interaction.followup_ids) == 2)
    first, second = (fake.messages[i] for i in interaction.followup_ids)
    # The first followup after a deferral fills the 'thinking' original, as on Discord.
    assert first.id == interaction.original_message_id
    assert first.content == "first" and first.attachments == [("a.txt", b"hello file")]
    assert second.content == "second" and second.attachments == [("b.txt", b"B")]
    multipart = [r for r in fake.requests if r.files]
    assert [r.files for r in multipart] == [[("a.txt", b"hello file")], [("b.txt", b"B")]]
    assert multipart[0].json["content"] == "first"
    assert [r.path for r in fake.cdn_requests if r.status == 200]  # the bot downloaded it


async def test_a_followup_after_the_deferred_answer_was_deleted_is_a_new_message(
    fake: FakeDiscord, bot: DoubleBot
) -> None:
    interaction = await fake.slash_command("regret")
    await fake.wait_until(lambda: bool(interaction.followup_ids))
    original = fake.messages[interaction.original_message_id or ""]
    told = fake.messages[interaction.followup_ids[0]]
    assert original.deleted and told.id != original.id
    assert told.content == "only for you" and told.is_ephemeral


async def test_channel_send_and_edit(fake: FakeDiscord, bot: DoubleBot) -> None:
    channel = text_channel(bot, fake.channel_ids[1])
    sent = await channel.send("hello")
    await sent.edit(content="bye")
    stored = fake.messages[str(sent.id)]
    assert stored.content == "bye" and [c for _, c in stored.edits] == ["bye"]
    assert fake.bot_messages(fake.channel_ids[1]) == [stored]
    assert all(body["allowed_mentions"] == NO_PINGS for body in stored.history)
    await fake.wait_until(lambda: any(m.id == sent.id for m in bot.seen))  # own MESSAGE_CREATE


async def test_message_limits(fake: FakeDiscord, bot: DoubleBot) -> None:
    channel = text_channel(bot, fake.channel_ids[0])
    with pytest.raises(discord.HTTPException) as too_long:
        await channel.send("x" * 2001)
    assert too_long.value.status == 400 and too_long.value.code == 50035
    errors = fake.requests[-1].response["errors"]
    assert errors["content"]["_errors"][0]["code"] == "BASE_TYPE_MAX_LENGTH"

    sent = await channel.send("x" * 2000)
    with pytest.raises(discord.HTTPException) as empty:
        await sent.edit(content="")
    assert empty.value.code == 50006

    with pytest.raises(discord.HTTPException) as embed:
        await channel.send(embed=discord.Embed(title="t" * 257))
    assert embed.value.code == 50035
    assert "embeds" in fake.requests[-1].response["errors"]


@pytest.mark.parametrize("fake_options", [{"edit_budget": (2, 0.5)}])
async def test_the_channel_bucket_holds_creates_and_edits_together(
    fake: FakeDiscord, bot: DoubleBot
) -> None:
    channel = text_channel(bot, fake.channel_ids[0])
    sent = await channel.send("0")
    for i in range(1, 5):
        await sent.edit(content=str(i))
    await channel.send("again")
    stored = fake.messages[str(sent.id)]
    assert stored.content == "4" and len(stored.edits) == 4
    mine = [
        r
        for r in fake.requests
        if r.path.startswith(f"/channels/{fake.channel_ids[0]}/messages") and r.status == 200
    ]
    assert [r.method for r in mine] == ["POST", "PATCH", "PATCH", "PATCH", "PATCH", "POST"]
    # One bucket for both routes, announced in the headers: discord.py waits for its reset.
    assert len({r.headers["X-RateLimit-Bucket"] for r in mine}) == 1
    assert {r.headers["X-RateLimit-Limit"] for r in mine} == {"2"}
    times = [r.t for r in mine]
    for i in range(2, len(times)):  # never more than 2 in one 0.5 s window
        assert times[i] - times[i - 2] >= 0.5 - 1e-3
    # Only the first edit, before discord.py knew the edit route shares the bucket, may 429.
    assert len(fake.rate_limited) <= 1
    assert all(r.response["retry_after"] > 0 for r in fake.rate_limited)


@pytest.mark.parametrize("fake_options", [{"webhook_budget": (2, 0.5)}])
async def test_the_interaction_token_bucket_paces_follow_ups_and_edits(
    fake: FakeDiscord, bot: DoubleBot
) -> None:
    interaction = await fake.slash_command("stream")

    def edits() -> list[RecordedRequest]:
        return [r for r in fake.requests if r.path.startswith("/webhooks/") and r.status == 200]

    await fake.wait_until(lambda: len(edits()) == 4)
    assert fake.messages[interaction.original_message_id or ""].content == "part 3"
    edits = edits()
    assert len(edits) == 4 and {r.headers["X-RateLimit-Limit"] for r in edits} == {"2"}
    assert edits[2].t - edits[0].t >= 0.5 - 1e-3 and edits[3].t - edits[1].t >= 0.5 - 1e-3


@pytest.mark.parametrize("fake_options", [{"ack_timeout": 0.2}])
async def test_late_callback_is_unknown_interaction(fake: FakeDiscord, bot: DoubleBot) -> None:
    interaction = await fake.slash_command("late")
    await fake.wait_until(lambda: bool(bot.errors))
    error = bot.errors[0]
    assert isinstance(error, discord.NotFound) and error.code == 10062
    assert interaction.callback_type is None and interaction.original_message_id is None


async def test_message_content_is_blanked_without_the_intent(
    fake: FakeDiscord, bot: DoubleBot
) -> None:
    async def seen(message_id: str) -> discord.Message:
        await fake.wait_until(lambda: any(str(m.id) == message_id for m in bot.seen))
        return next(m for m in bot.seen if str(m.id) == message_id)

    plain = await fake.user_message("hello there", attachments=[("a.txt", b"x", "text/plain")])
    assert (await seen(plain.id)).content == ""
    assert (await seen(plain.id)).attachments == []
    assert plain.content == "hello there"  # the double keeps the real content

    mention = await fake.user_message("hi bot", mention_bot=True)
    received = await seen(mention.id)
    assert received.content == f"<@{fake.bot_user['id']}> hi bot"
    assert isinstance(received.author, discord.Member)

    own = await text_channel(bot, fake.channel_ids[0]).send("bot says")
    reply = await fake.user_message("reply with ping", reply_to=str(own.id))
    assert (await seen(reply.id)).content == "reply with ping"
    quiet = await fake.user_message("reply without ping", reply_to=str(own.id), reply_ping=False)
    assert (await seen(quiet.id)).content == ""

    dm = await fake.user_message("in a dm", channel_id=fake.add_dm_channel("bob"))
    assert (await seen(dm.id)).content == "in a dm"


async def test_reconnect_resumes_and_events_still_arrive(fake: FakeDiscord, bot: DoubleBot) -> None:
    await fake.reconnect_gateway()
    assert any(frame.get("op") == 6 for frame in fake.gateway_received)
    message = await fake.user_message("still there?", mention_bot=True)
    await fake.wait_until(lambda: any(str(m.id) == message.id for m in bot.seen))


async def test_a_new_bot_can_connect_to_the_same_double(fake: FakeDiscord, bot: DoubleBot) -> None:
    await bot.close()
    second = DoubleBot()
    task = asyncio.create_task(second.start(fake.token))
    try:
        await fake.wait_ready()
        await asyncio.wait_for(second.wait_until_ready(), 5)
        interaction = await fake.slash_command("history", {"count": 3}, subcommand="show")
        await fake.wait_until(lambda: interaction.original_message_id is not None)
        assert fake.messages[interaction.original_message_id or ""].content == "showing 3"
        assert sum(1 for frame in fake.gateway_received if frame.get("op") == 2) == 2
    finally:
        await second.close()
        await asyncio.wait_for(task, 5)


async def test_threads(fake: FakeDiscord, bot: DoubleBot) -> None:
    channel = text_channel(bot, fake.channel_ids[0])
    starter = await channel.send("start")
    from_message = await starter.create_thread(name="from message")
    assert str(from_message.id) == str(starter.id)  # Discord reuses the message id
    private = await channel.create_thread(name="private")
    assert private.type is discord.ChannelType.private_thread
    await fake.wait_until(lambda: bot.get_channel(private.id) is not None)
    await private.send("inside")
    assert [m.content for m in fake.channel_messages(str(private.id))] == ["inside"]
    assert fake.channels[str(from_message.id)]["parent_id"] == fake.channel_ids[0]


async def test_components_autocomplete_modal_and_context_menu(
    fake: FakeDiscord, bot: DoubleBot
) -> None:
    panel = await fake.slash_command("panel")
    await fake.wait_until(lambda: panel.original_message_id is not None)
    assert panel.original_message_id is not None
    click = await fake.click_button(panel.original_message_id, "panel:press")
    await fake.wait_until(lambda: click.callback_type == 7)
    assert fake.messages[panel.original_message_id].content == "pressed"

    typing = await fake.autocomplete("model", {"choice": "ll"}, focused="choice")
    await fake.wait_until(lambda: typing.choices is not None)
    assert [c["name"] for c in typing.choices or []] == ["llama3", "llava"]

    opened = await fake.slash_command("name")
    await fake.wait_until(lambda: opened.modal is not None)
    assert opened.modal is not None and opened.modal["title"] == "Your name"
    submitted = await fake.submit_modal(opened.modal["custom_id"], {"name": "Ann"})
    await fake.wait_until(lambda: submitted.original_message_id is not None)
    assert fake.messages[submitted.original_message_id or ""].content == "hello Ann"

    dm = fake.add_dm_channel("bob")
    in_dm = await fake.slash_command("history", {"count": 1}, subcommand="show", channel_id=dm)
    await fake.wait_until(lambda: in_dm.original_message_id is not None)
    assert fake.channel_messages(dm)[-1].content == "showing 1"
    assert in_dm.payload["context"] == 1 and "member" not in in_dm.payload

    by_admin = await fake.slash_command("history", {"count": 2}, subcommand="show", user="admin")
    assert int(by_admin.payload["member"]["permissions"]) & 0x8  # ADMINISTRATOR

    target = await fake.user_message("quotable")
    quoted = await fake.message_command("Quote", target.id)
    await fake.wait_until(lambda: quoted.original_message_id is not None)
    assert fake.messages[quoted.original_message_id or ""].content == "> quotable"


async def test_a_second_guild_has_its_own_channels_roles_and_interactions(
    fake: FakeDiscord, bot: DoubleBot
) -> None:
    second = await fake.add_guild("Second Guild", ["lobby", "games"])
    await fake.wait_until(lambda: bot.get_guild(int(second)) is not None)
    guild = bot.get_guild(int(second))
    assert guild is not None and guild.name == "Second Guild"
    assert [c.name for c in guild.text_channels] == ["lobby", "games"]
    first = bot.get_guild(int(fake.guild_id))
    assert first is not None and "lobby" not in {c.name for c in first.text_channels}
    assert {r.name for r in guild.roles} == {"@everyone", "Ollama", "Admin"}
    assert not {r.id for r in guild.roles} & {r.id for r in first.roles}

    lobby = fake.guild_channel_ids(second)[0]
    interaction = await fake.slash_command(
        "history", {"count": 2}, subcommand="show", channel_id=lobby, user="admin"
    )
    assert interaction.payload["guild_id"] == second
    assert int(interaction.payload["member"]["permissions"]) & ADMINISTRATOR
    await fake.wait_until(lambda: interaction.original_message_id is not None)
    assert fake.messages[interaction.original_message_id or ""].guild_id == second
    bob = await fake.slash_command(
        "history", {"count": 1}, subcommand="show", channel_id=lobby, user="bob"
    )
    assert not int(bob.payload["member"]["permissions"]) & MANAGE_CHANNELS

    await fake.user_message("hello there", channel_id=lobby)
    await fake.wait_until(lambda: bool(bot.seen) and bot.seen[-1].channel.id == int(lobby))
    assert bot.seen[-1].guild is not None and bot.seen[-1].guild.id == int(second)
    response = await _get(fake, f"/guilds/{second}/channels")
    assert [c["name"] for c in response] == ["lobby", "games"]


async def _get(fake: FakeDiscord, path: str) -> Any:
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"{fake.api_base}{path}", headers={"Authorization": f"Bot {fake.token}"}
        ) as answer,
    ):
        assert answer.status == 200
        return await answer.json()


@pytest.mark.parametrize("fake_options", [{"ack_timeout": 60, "interaction_token_ttl": 60}])
async def test_rest_errors_without_a_bot(fake: FakeDiscord, fake_options: dict[str, Any]) -> None:
    """Discord's error answers for raw requests: auth, routes, callbacks, tokens."""
    now = [0.0]
    fake.clock = lambda: now[0]
    api = fake.api_base
    auth = {"Authorization": f"Bot {fake.token}"}
    async with aiohttp.ClientSession() as http:

        async def call(method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
            async with http.request(method, api + path, **kwargs) as response:
                if response.status == 204:
                    return 204, None
                assert response.headers["Content-Type"] == "application/json"
                return response.status, await response.json()

        assert await call("GET", "/users/@me") == (401, {"message": "401: Unauthorized", "code": 0})
        assert await call("GET", "/nope", headers=auth) == (
            404,
            {"message": "404: Not Found", "code": 0},
        )
        channel = fake.channel_ids[0]
        assert (await call("POST", f"/channels/{channel}/messages", headers=auth, json={}))[1][
            "code"
        ] == 50006

        # Interactions: callback twice, followups before/after, expired token.
        interaction, _ = fake._new_interaction_payload(2, {"name": "x"}, "alice", None)
        fake.interactions[interaction.id] = interaction
        base = f"/interactions/{interaction.id}/{interaction.token}/callback"
        webhook = f"/webhooks/{fake.application_id}/{interaction.token}"
        status, body = await call("POST", webhook, json={"content": "early"})
        assert (status, body["code"]) == (404, 10015)
        assert await call("POST", base, json={"type": 4, "data": {"content": "hi"}}) == (204, None)
        status, body = await call("POST", base, json={"type": 4, "data": {"content": "hi"}})
        assert (status, body["code"]) == (400, 40060)
        status, body = await call("PATCH", f"{webhook}/messages/@original", json={"content": "ok"})
        assert status == 200 and body["content"] == "ok"
        now[0] = 61.0
        status, body = await call("PATCH", f"{webhook}/messages/@original", json={"content": "x"})
        assert (status, body["code"]) == (401, 50027)

        async def callback(interaction_type: int, body: dict[str, Any]) -> tuple[int, Any]:
            interaction, _ = fake._new_interaction_payload(interaction_type, {}, "bob", None)
            fake.interactions[interaction.id] = interaction
            path = f"/interactions/{interaction.id}/{interaction.token}/callback"
            return await call("POST", path, json=body)

        status, body = await callback(2, {"type": 4, "data": {"content": "x" * 2001}})
        assert status == 400 and body["errors"]["data"]["content"]["_errors"][0]["message"] == (
            "Must be 2000 or fewer in length."
        )
        many = [{"name": str(i), "value": str(i)} for i in range(26)]
        status, body = await callback(4, {"type": 8, "data": {"choices": many}})
        assert (status, body["code"]) == (400, 50035)
        status, body = await callback(
            4, {"type": 8, "data": {"choices": [{"name": "", "value": "v"}]}}
        )
        assert (status, body["code"]) == (400, 50035)
        modal = {
            "custom_id": "m",
            "title": "t" * 46,
            "components": [{"type": 1, "components": [{"type": 4, "custom_id": "a", "style": 1}]}],
        }
        status, body = await callback(2, {"type": 9, "data": modal})
        assert status == 400 and "title" in body["errors"]["data"]
        status, body = await callback(4, {"type": 4, "data": {"content": "no"}})
        assert status == 400  # autocomplete interactions only take type 8
        status, body = await callback(2, {"type": 5, "data": {"flags": 64}})
        assert status == 204


Call = Callable[..., Awaitable[tuple[int, Any, Mapping[str, str]]]]


@pytest.fixture
async def raw(fake: FakeDiscord) -> AsyncIterator[Call]:
    """Raw REST calls to the double as the bot (``auth=False`` for none): (status, JSON, headers)."""
    async with aiohttp.ClientSession() as http:

        async def call(
            method: str, path: str, *, auth: bool = True, **kwargs: Any
        ) -> tuple[int, Any, Mapping[str, str]]:
            headers = {"Authorization": f"Bot {fake.token}"} if auth else {}
            async with http.request(
                method, fake.api_base + path, headers=headers, **kwargs
            ) as response:
                body = None if response.status == 204 else await response.json()
                return response.status, body, response.headers

        yield call


def answered_interaction(fake: FakeDiscord, *, user: str = "alice") -> FakeInteraction:
    """An interaction the double 'sent' (no bot needed), for raw callbacks and follow-ups."""
    interaction, _ = fake._new_interaction_payload(2, {"name": "x"}, user, None)
    fake.interactions[interaction.id] = interaction
    return interaction


async def test_the_channel_bucket_answers_429s_with_discords_headers(
    fake: FakeDiscord, raw: Call
) -> None:
    assert fake.channel_budget == fake.edit_budget == (5, 5.0)  # Discord's figure
    general, random = fake.channel_ids[:2]
    status, sent, headers = await raw(
        "POST", f"/channels/{general}/messages", json={"content": "0"}
    )
    assert status == 200 and headers["X-RateLimit-Remaining"] == "4"
    bucket = headers["X-RateLimit-Bucket"]
    for i in range(1, 5):  # edits count in the same bucket as creates
        status, _, headers = await raw(
            "PATCH", f"/channels/{general}/messages/{sent['id']}", json={"content": str(i)}
        )
        assert status == 200 and headers["X-RateLimit-Bucket"] == bucket
        assert headers["X-RateLimit-Remaining"] == str(4 - i)
    assert float(headers["X-RateLimit-Reset-After"]) <= 5.0
    status, body, headers = await raw(
        "POST", f"/channels/{general}/messages", json={"content": "one too many"}
    )
    assert status == 429 and headers["Via"] and headers["X-RateLimit-Bucket"] == bucket
    assert body["global"] is False and 0 < body["retry_after"] <= 5.0
    assert headers["X-RateLimit-Remaining"] == "0" and headers["X-RateLimit-Scope"] == "user"
    assert [r.status for r in fake.rate_limited] == [429]
    # Another channel has a bucket of its own.
    status, _, headers = await raw("POST", f"/channels/{random}/messages", json={"content": "x"})
    assert status == 200 and headers["X-RateLimit-Remaining"] == "4"


async def test_the_webhook_and_token_bucket_answers_429s(fake: FakeDiscord, raw: Call) -> None:
    assert fake.webhook_budget == (5, 2.0)
    first, second = answered_interaction(fake), answered_interaction(fake, user="bob")
    for interaction in (first, second):
        callback = f"/interactions/{interaction.id}/{interaction.token}/callback"
        assert (await raw("POST", callback, auth=False, json={"type": 5}))[0] == 204
    hook = f"/webhooks/{fake.application_id}/{first.token}"
    status, followup, headers = await raw("POST", f"{hook}?wait=true", json={"content": "a"})
    assert status == 200 and headers["X-RateLimit-Limit"] == "5"
    for path in (f"{hook}/messages/@original", f"{hook}/messages/{followup['id']}"):
        for _ in range(2):
            assert (await raw("PATCH", path, json={"content": "b"}))[0] == 200
    status, body, headers = await raw("PATCH", f"{hook}/messages/@original", json={"content": "c"})
    assert status == 429 and body["global"] is False and headers["X-RateLimit-Remaining"] == "0"
    # Another interaction's token is another bucket.
    other = f"/webhooks/{fake.application_id}/{second.token}/messages/@original"
    assert (await raw("PATCH", other, json={"content": "d"}))[0] == 200


@pytest.mark.parametrize("fake_options", [{"global_budget": (4, 5.0)}])
async def test_the_global_limit_answers_global_429s_and_spares_interactions(
    fake: FakeDiscord, raw: Call
) -> None:
    assert FakeDiscord().global_budget == (50, 1.0)
    for channel in fake.channel_ids[:3]:
        assert (await raw("GET", f"/channels/{channel}"))[0] == 200
    assert (await raw("GET", "/users/@me"))[0] == 200
    status, body, headers = await raw("GET", f"/channels/{fake.channel_ids[0]}")
    assert status == 429 and body["global"] is True and body["retry_after"] > 0
    assert headers["X-RateLimit-Global"] == "true" and headers["X-RateLimit-Scope"] == "global"
    assert headers["Via"] and "X-RateLimit-Bucket" not in headers
    assert fake.rate_limited[-1].response["global"] is True
    # Interaction endpoints are not bound to the global limit.
    interaction = answered_interaction(fake)
    callback = f"/interactions/{interaction.id}/{interaction.token}/callback"
    assert (await raw("POST", callback, json={"type": 5}))[0] == 204
    hook = f"/webhooks/{fake.application_id}/{interaction.token}/messages/@original"
    assert (await raw("PATCH", hook, json={"content": "still"}))[0] == 200


@pytest.mark.parametrize("fake_options", [{"global_budget": (3, 0.3)}])
async def test_discord_py_waits_out_global_429s(fake: FakeDiscord, bot: DoubleBot) -> None:
    fetched = await asyncio.gather(
        *(bot.fetch_channel(int(c)) for c in fake.channel_ids for _ in range(3))
    )
    assert len(fetched) == 9
    assert any(r.response["global"] for r in fake.rate_limited)


async def test_permissions_are_computed_from_roles_and_overwrites_like_discord(
    fake: FakeDiscord,
) -> None:
    general = fake.channel_ids[0]
    alice, admin, me = fake.users["alice"]["id"], fake.users["admin"]["id"], fake.bot_user["id"]
    everyone = fake.guild_id
    assert fake.channel_permissions(me, general) & SEND_MESSAGES
    await fake.set_overwrite(general, everyone, deny=SEND_MESSAGES, member=False)
    assert not fake.channel_permissions(me, general) & SEND_MESSAGES
    # A role overwrite's allow beats the @everyone overwrite's deny...
    await fake.set_overwrite(general, fake.bot_role_id, allow=SEND_MESSAGES, member=False)
    assert fake.channel_permissions(me, general) & SEND_MESSAGES
    assert not fake.channel_permissions(alice, general) & SEND_MESSAGES
    # ...and the member's own overwrite beats both.
    await fake.set_overwrite(general, me, deny=SEND_MESSAGES)
    assert not fake.channel_permissions(me, general) & SEND_MESSAGES
    await fake.set_overwrite(general, alice, allow=SEND_MESSAGES)
    assert fake.channel_permissions(alice, general) & SEND_MESSAGES
    # Without View Channel nothing is left; an administrator bypasses every overwrite.
    await fake.set_overwrite(general, everyone, deny=VIEW_CHANNEL, member=False)
    assert fake.channel_permissions(alice, general) == 0
    await fake.set_overwrite(general, admin, deny=VIEW_CHANNEL | SEND_MESSAGES)
    assert fake.channel_permissions(admin, general) == ALL_PERMISSIONS
    with pytest.raises(ValueError, match="not a guild channel"):
        await fake.set_overwrite(fake.add_dm_channel("bob"), alice, deny=SEND_MESSAGES)


async def test_overwrites_refuse_sends_edits_threads_and_typing(
    fake: FakeDiscord, bot: DoubleBot
) -> None:
    general = fake.channel_ids[0]
    channel = text_channel(bot, general)
    sent = await channel.send("before")
    thread = await channel.create_thread(name="inside", type=discord.ChannelType.public_thread)
    me = fake.bot_user["id"]
    await fake.set_overwrite(
        general, me, allow=SEND_MESSAGES_IN_THREADS, deny=SEND_MESSAGES | CREATE_PRIVATE_THREADS
    )
    await fake.wait_until(lambda: not channel.permissions_for(channel.guild.me).send_messages)
    for refused in (
        channel.send("no"),
        sent.edit(content="no"),
        channel.typing().__aenter__(),
        channel.create_thread(name="private"),
    ):
        with pytest.raises(discord.Forbidden) as error:
            await refused
        assert (error.value.status, error.value.code, error.value.text) == (
            403,
            50013,
            "Missing Permissions",
        )
    await thread.send("threads need Send Messages in Threads only")  # inherits the parent's
    await fake.set_overwrite(general, me, deny=SEND_MESSAGES_IN_THREADS)
    with pytest.raises(discord.Forbidden):
        await thread.send("not any more")
    await fake.set_overwrite(general, me, deny=READ_MESSAGE_HISTORY)
    await channel.send("a plain message is fine")
    with pytest.raises(discord.Forbidden) as reply:
        await channel.send("but a reply needs Read Message History", reference=sent)
    assert reply.value.code == 50013
    await fake.set_overwrite(general, fake.guild_id, deny=VIEW_CHANNEL, member=False)
    with pytest.raises(discord.Forbidden) as unseen:
        await channel.send("cannot even see it")
    assert (unseen.value.code, unseen.value.text) == (50001, "Missing Access")
    hidden = await fake.user_message("not for the bot's eyes", mention_bot=True)
    await asyncio.sleep(0.05)
    assert all(str(m.id) != hidden.id for m in bot.seen)  # no events from unseen channels


async def test_interaction_permissions_are_those_of_the_channel(
    fake: FakeDiscord, bot: DoubleBot
) -> None:
    general, random = fake.channel_ids[:2]
    await fake.set_overwrite(random, fake.users["alice"]["id"], deny=SEND_MESSAGES)
    await fake.set_overwrite(random, fake.bot_role_id, deny=READ_MESSAGE_HISTORY, member=False)
    for channel_id in (general, random):
        await fake.slash_command("whoami", channel_id=channel_id)
    await fake.wait_until(lambda: len(bot.permissions) == 2)
    (member_general, app_general), (member_random, app_random) = bot.permissions
    assert member_general & SEND_MESSAGES and not member_random & SEND_MESSAGES
    assert app_general & READ_MESSAGE_HISTORY and not app_random & READ_MESSAGE_HISTORY
    assert member_random & VIEW_CHANNEL and app_random & SEND_MESSAGES


async def test_whitespace_only_content_is_refused_like_empty_content(
    fake: FakeDiscord, bot: DoubleBot
) -> None:
    channel = text_channel(bot, fake.channel_ids[0])
    for blank in (" ", "\n\t  \n"):
        with pytest.raises(discord.HTTPException) as error:
            await channel.send(blank)
        assert (error.value.status, error.value.code) == (400, 50006)
        assert error.value.text == "Cannot send an empty message"
    sent = await channel.send("words")
    with pytest.raises(discord.HTTPException) as edit:
        await sent.edit(content="   ")
    assert edit.value.code == 50006
    await channel.send("  ", embed=discord.Embed(title="an embed is content"))


async def test_a_reply_to_a_deleted_message_is_unknown_message(
    fake: FakeDiscord, bot: DoubleBot
) -> None:
    question = await fake.user_message("soon gone")
    channel = text_channel(bot, fake.channel_ids[0])
    await fake.wait_until(lambda: any(str(m.id) == question.id for m in bot.seen))
    target = next(m for m in bot.seen if str(m.id) == question.id)
    fake.messages[question.id].deleted = True
    with pytest.raises(discord.HTTPException) as error:
        await channel.send("too late", reference=target)
    assert (error.value.status, error.value.code) == (400, 50035)
    assert fake.requests[-1].response["errors"] == {
        "message_reference": {
            "_errors": [{"code": "MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "message": "Unknown message"}]
        }
    }


async def test_allowed_mentions_may_not_both_parse_and_list_users_or_roles(
    fake: FakeDiscord, raw: Call
) -> None:
    path = f"/channels/{fake.channel_ids[0]}/messages"
    alice = fake.users["alice"]["id"]
    for kind, listed in (("users", [alice]), ("roles", [fake.admin_role_id])):
        body = {"content": "hi", "allowed_mentions": {"parse": [kind], kind: listed}}
        status, error, _ = await raw("POST", path, json=body)
        assert (status, error["code"], error["message"]) == (400, 50035, "Invalid Form Body")
        assert error["errors"]["allowed_mentions"]["_errors"] == [
            {
                "code": "MESSAGE_ALLOWED_MENTIONS_PARSE_EXCLUSIVE",
                "message": f'parse:["{kind}"] and {kind}: [ids...] are mutually exclusive.',
            }
        ]
    body = {"content": "hi", "allowed_mentions": {"parse": ["roles"], "users": [alice]}}
    assert (await raw("POST", path, json=body))[0] == 200


@pytest.mark.parametrize("locked", [False, True])
async def test_archived_threads_refuse_sends_and_edits(
    fake: FakeDiscord, bot: DoubleBot, locked: bool
) -> None:
    channel = text_channel(bot, fake.channel_ids[0])
    thread = await channel.create_thread(name="t", type=discord.ChannelType.public_thread)
    inside = await thread.send("before")
    await fake.archive_thread(str(thread.id), locked=locked)
    assert fake.channels[str(thread.id)]["thread_metadata"]["locked"] is locked
    for refused in (thread.send("after"), inside.edit(content="changed")):
        with pytest.raises(discord.HTTPException) as error:
            await refused
        assert (error.value.status, error.value.code) == (400, 50083)
        assert error.value.text == "Thread is archived"
    assert fake.messages[str(inside.id)].content == "before"


def button(custom_id: str, label: str = "ok") -> dict[str, Any]:
    return {"type": 2, "style": 1, "custom_id": custom_id, "label": label}


def first_error(body: Any) -> tuple[list[str], str]:
    """The path and code of the first field error in a Discord error body."""
    path: list[str] = []
    node = body["errors"]
    while "_errors" not in node:
        key = next(iter(node))
        path.append(key)
        node = node[key]
    return path, node["_errors"][0]["code"]


@pytest.mark.parametrize(  # the hand-written rules, not the schemas; no channel bucket in the way
    "fake_options", [{"validate_schemas": False, "edit_budget": (100, 1.0)}]
)
async def test_component_rules(fake: FakeDiscord, raw: Call) -> None:
    path = f"/channels/{fake.channel_ids[0]}/messages"
    select = {
        "type": 3,
        "custom_id": "pick",
        "options": [{"label": "A", "value": "a"}, {"label": "B", "value": "b"}],
    }
    refused = {
        "duplicate custom id": (
            [{"type": 1, "components": [button("x"), button("x")]}],
            (["components", "0", "components", "1", "custom_id"], "COMPONENT_CUSTOM_ID_DUPLICATED"),
        ),
        "duplicate across rows": (
            [{"type": 1, "components": [button("x")]}, {"type": 1, "components": [button("x")]}],
            (["components", "1", "components", "0", "custom_id"], "COMPONENT_CUSTOM_ID_DUPLICATED"),
        ),
        "long custom id": (
            [{"type": 1, "components": [button("x" * 101)]}],
            (["components", "0", "components", "0", "custom_id"], "BASE_TYPE_MAX_LENGTH"),
        ),
        "long label": (
            [{"type": 1, "components": [button("x", "l" * 81)]}],
            (["components", "0", "components", "0", "label"], "BASE_TYPE_MAX_LENGTH"),
        ),
        "six buttons a row": (
            [{"type": 1, "components": [button(str(i)) for i in range(6)]}],
            (["components", "0", "components"], "COMPONENT_LAYOUT_WIDTH_EXCEEDED"),
        ),
        "a select beside a button": (
            [{"type": 1, "components": [select, button("b")]}],
            (["components", "0", "components"], "COMPONENT_LAYOUT_WIDTH_EXCEEDED"),
        ),
        "six rows": (
            [{"type": 1, "components": [button(str(i))]} for i in range(6)],
            (["components"], "BASE_TYPE_MAX_LENGTH"),
        ),
        "more values than options": (
            [{"type": 1, "components": [{**select, "max_values": 3}]}],
            (
                ["components", "0", "components", "0", "max_values"],
                "SELECT_COMPONENT_MAX_VALUES_ABOVE_OPTIONS",
            ),
        ),
        "min above max": (
            [{"type": 1, "components": [{**select, "min_values": 2, "max_values": 1}]}],
            (
                ["components", "0", "components", "0", "min_values"],
                "SELECT_COMPONENT_MIN_VALUES_ABOVE_MAX",
            ),
        ),
        "26 options": (
            [
                {
                    "type": 1,
                    "components": [
                        {
                            **select,
                            "options": [{"label": str(i), "value": str(i)} for i in range(26)],
                        }
                    ],
                }
            ],
            (["components", "0", "components", "0", "options"], "BASE_TYPE_BAD_LENGTH"),
        ),
        "duplicate option values": (
            [
                {
                    "type": 1,
                    "components": [{**select, "options": [{"label": "A", "value": "a"}] * 2}],
                }
            ],
            (
                ["components", "0", "components", "0", "options", "1", "value"],
                "SELECT_COMPONENT_OPTION_VALUE_DUPLICATED",
            ),
        ),
    }
    for case, (components, expected) in refused.items():
        status, body, _ = await raw("POST", path, json={"content": "c", "components": components})
        assert (status, body["code"]) == (400, 50035), case
        assert first_error(body) == expected, case
    fine = [
        {"type": 1, "components": [button(str(i), "l" * 80) for i in range(5)]},
        {"type": 1, "components": [{**select, "max_values": 2}]},
    ]
    assert (await raw("POST", path, json={"content": "c", "components": fine}))[0] == 200


def slash(name: str, **extra: Any) -> dict[str, Any]:
    return {"type": 1, "name": name, "description": "d", **extra}


def string_option(name: str, **extra: Any) -> dict[str, Any]:
    return {"type": 3, "name": name, "description": "d", **extra}


@pytest.mark.parametrize("fake_options", [{"validate_schemas": False}])  # the rules, not schemas
async def test_application_command_validation(fake: FakeDiscord, raw: Call) -> None:
    many = [string_option(f"o{i}") for i in range(26)]
    choices = [{"name": "n", "value": "v" * 100}] * 25
    big = [string_option(f"o{i}", description="d" * 100, choices=choices) for i in range(4)]
    refused: dict[str, tuple[list[dict[str, Any]], tuple[list[str], str]]] = {
        "upper case": ([slash("Chat")], (["0", "name"], "APPLICATION_COMMAND_INVALID_NAME")),
        "space": ([slash("two words")], (["0", "name"], "APPLICATION_COMMAND_INVALID_NAME")),
        "too long a name": ([slash("n" * 33)], (["0", "name"], "APPLICATION_COMMAND_INVALID_NAME")),
        "no description": (
            [slash("chat", description="")],
            (["0", "description"], "BASE_TYPE_BAD_LENGTH"),
        ),
        "long description": (
            [slash("chat", description="d" * 101)],
            (["0", "description"], "BASE_TYPE_BAD_LENGTH"),
        ),
        "menu with a description": (
            [{"type": 3, "name": "Quote it", "description": "no"}],
            (["0", "description"], "APPLICATION_COMMAND_CONTEXT_MENU_DESCRIPTION"),
        ),
        "26 options": ([slash("chat", options=many)], (["0", "options"], "BASE_TYPE_MAX_LENGTH")),
        "required after optional": (
            [slash("chat", options=[string_option("a"), string_option("b", required=True)])],
            (["0", "options", "1"], "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID"),
        ),
        "required after optional in a subcommand": (
            [
                slash(
                    "chat",
                    options=[
                        {
                            "type": 1,
                            "name": "sub",
                            "description": "d",
                            "options": [string_option("a"), string_option("b", required=True)],
                        }
                    ],
                )
            ],
            (
                ["0", "options", "0", "options", "1"],
                "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
            ),
        ),
        "autocomplete with choices": (
            [slash("chat", options=[string_option("a", autocomplete=True, choices=choices[:1])])],
            (
                ["0", "options", "0", "autocomplete"],
                "APPLICATION_COMMAND_OPTION_AUTOCOMPLETE_CHOICES",
            ),
        ),
        "option name upper case": (
            [slash("chat", options=[string_option("Model")])],
            (["0", "options", "0", "name"], "APPLICATION_COMMAND_INVALID_NAME"),
        ),
        "duplicate option names": (
            [slash("chat", options=[string_option("a"), string_option("a")])],
            (["0", "options", "1", "name"], "APPLICATION_COMMAND_OPTIONS_NAME_ALREADY_EXISTS"),
        ),
        "duplicate commands": (
            [slash("chat"), slash("chat")],
            (["1", "name"], "APPLICATION_COMMANDS_DUPLICATE_NAME"),
        ),
        "over 8,000 characters": (
            [slash("chat", options=big)],
            (["0"], "APPLICATION_COMMAND_TOO_LARGE"),
        ),
    }
    routes = [
        f"/applications/{fake.application_id}/commands",
        f"/applications/{fake.application_id}/guilds/{fake.guild_id}/commands",
    ]
    for route in routes:
        for case, (refused_commands, expected) in refused.items():
            status, body, _ = await raw("PUT", route, json=refused_commands)
            assert status == 400, (case, body)
            assert (body["code"], body["message"]) == (50035, "Invalid Form Body"), case
            assert first_error(body) == expected, case
    fine = [
        slash("chat", options=[string_option("a", required=True), string_option("b")]),
        slash("日本語-ok"),
        {"type": 3, "name": "Quote It"},
        {"type": 2, "name": "chat"},  # another type may share a name
        slash("menu", options=[string_option("a", autocomplete=True)]),
    ]
    status, stored, _ = await raw("PUT", routes[0], json=fine)
    assert status == 200 and [c["name"] for c in stored] == [c["name"] for c in fine]


async def test_discord_py_syncs_valid_commands_and_hears_refusals(
    fake: FakeDiscord, bot: DoubleBot
) -> None:
    await bot.tree.sync()
    assert {"ask", "Quote"} <= {c["name"] for c in fake.commands}
    # discord.py checks names and lengths itself, but not the 8,000 characters of a command.
    many = [app_commands.Choice(name=f"c{n}", value="v" * 100) for n in range(25)]

    @bot.tree.command(description="Too much to choose from")
    @app_commands.choices(a=many, b=many, c=many, d=many)
    async def big(interaction: discord.Interaction, a: str, b: str, c: str, d: str) -> None:
        await interaction.response.send_message(a)

    with pytest.raises(discord.HTTPException) as error:
        await bot.tree.sync()
    assert error.value.code == 50035
    assert "APPLICATION_COMMAND_TOO_LARGE" in str(fake.requests[-1].response)


async def gateway_frames(
    ws: aiohttp.ClientWebSocketResponse, count: int
) -> list[aiohttp.WSMessage]:
    return [await asyncio.wait_for(ws.receive(), 2) for _ in range(count)]


@pytest.mark.parametrize("fake_options", [{"heartbeat_interval": 0.2, "heartbeat_grace": 0.1}])
async def test_a_connection_that_stops_heartbeating_is_closed(fake: FakeDiscord) -> None:
    identify = {"token": fake.token, "intents": 1, "properties": {}}
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(fake.gateway_url) as beating,
        http.ws_connect(fake.gateway_url) as silent,
    ):
        for ws in (beating, silent):
            hello = await ws.receive_json()
            assert hello == {"op": 10, "d": {"heartbeat_interval": 200}}
            await ws.send_json({"op": 2, "d": identify})
        loop = asyncio.get_running_loop()
        began = loop.time()
        while loop.time() - began < 0.8:
            await beating.send_json({"op": 1, "d": None})
            await asyncio.sleep(0.15)
        closed = await asyncio.wait_for(silent.receive(), 2)
        while closed.type is aiohttp.WSMsgType.TEXT:  # READY, GUILD_CREATE
            closed = await asyncio.wait_for(silent.receive(), 2)
        assert closed.type is aiohttp.WSMsgType.CLOSE and closed.data == 4009
        assert not beating.closed
        acks = [f for f in fake.gateway_sent if f.get("op") == 11]
        assert len(acks) >= 4


@pytest.mark.parametrize("fake_options", [{"heartbeat_interval": 0.3, "heartbeat_grace": 0.3}])
async def test_discord_py_keeps_a_short_heartbeat(fake: FakeDiscord, bot: DoubleBot) -> None:
    await asyncio.sleep(1.3)
    assert len(fake._connections) == 1 and fake._connections[0].live
    assert sum(1 for f in fake.gateway_received if f.get("op") == 1) >= 4
    interaction = await fake.slash_command("history", {"count": 1}, subcommand="show")
    await fake.wait_until(lambda: interaction.original_message_id is not None)


async def test_zlib_stream_compression_when_asked(fake: FakeDiscord, bot: DoubleBot) -> None:
    assert fake.gateway_compression == ["zlib-stream"]  # discord.py asks, and still works
    identify = {"op": 2, "d": {"token": fake.token, "intents": 1, "properties": {}}}
    async with aiohttp.ClientSession() as http:
        url = f"{fake.gateway_url}?v=10&encoding=json&compress=zlib-stream"
        async with http.ws_connect(url) as ws:
            inflate = zlib.decompressobj()  # one context for the whole connection
            hello = await asyncio.wait_for(ws.receive(), 2)
            await ws.send_json(identify)
            frames = [hello, *await gateway_frames(ws, 2)]
            assert all(f.type is aiohttp.WSMsgType.BINARY for f in frames)
            assert all(f.data.endswith(b"\x00\x00\xff\xff") for f in frames)
            decoded = [json.loads(inflate.decompress(f.data)) for f in frames]
            assert decoded[0]["op"] == 10
            assert [d["t"] for d in decoded[1:]] == ["READY", "GUILD_CREATE"]
        async with http.ws_connect(fake.gateway_url) as plain:
            assert (await asyncio.wait_for(plain.receive(), 2)).type is aiohttp.WSMsgType.TEXT
    assert fake.gateway_compression[1:] == ["zlib-stream", None]


@pytest.mark.parametrize("fake_options", [{"gateway_latency": 0.3, "rest_latency": 0.3}])
async def test_latency_eats_into_the_interaction_deadline(
    fake: FakeDiscord, bot: DoubleBot
) -> None:
    loop = asyncio.get_running_loop()
    began = loop.time()
    await bot.fetch_channel(int(fake.channel_ids[0]))
    assert loop.time() - began >= 0.6  # 300 ms there and 300 ms back
    in_time = await fake.slash_command("slow", {"delay": 2.1})
    late = await fake.slash_command("slow", {"delay": 2.5})
    await fake.wait_until(lambda: bool(bot.errors) and in_time.callback_type is not None, 6)
    # 0.3 s to the bot, 2.5 s of work, 0.3 s to Discord: 3.1 s after it was sent.
    error = bot.errors[0]
    assert isinstance(error, discord.NotFound) and error.code == 10062
    assert late.callback_type is None
    assert in_time.callback_at is not None
    assert 2.7 <= in_time.callback_at - in_time.created_at <= 3.0


async def test_answers_are_checked_against_discords_response_schemas(
    fake: FakeDiscord, raw: Call
) -> None:
    general = fake.channel_ids[0]
    status, sent, _ = await raw("POST", f"/channels/{general}/messages", json={"content": "hi"})
    assert status == 200 and not fake.server_errors
    for method, path in (
        ("GET", "/users/@me"),
        ("GET", "/oauth2/applications/@me"),
        ("GET", "/gateway/bot"),
        ("GET", f"/guilds/{fake.guild_id}"),
        ("GET", f"/channels/{general}/messages?limit=5"),
        ("GET", f"/channels/{general}/messages/0"),  # an error answer is checked too
    ):
        await raw(method, path)
    assert not fake.server_errors, fake.server_errors
    # A state Discord could never answer with is the double's bug, not the bot's.
    fake.messages[sent["id"]].embeds = [{"type": "rich", "title": 5}]
    status, _, _ = await raw("GET", f"/channels/{general}/messages/{sent['id']}")
    assert status == 200
    assert len(fake.server_errors) == 1
    assert "OpenAPI response mismatch" in fake.server_errors[0]
    assert "embeds/0/title" in fake.server_errors[0]
    fake.server_errors.clear()
