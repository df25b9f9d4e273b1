"""/chat, and chat by mentioning the bot or replying to it."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.cogs.models import model_choices
from bot.conversation.fairness import ShuttingDown, Ticket
from bot.conversation.service import (
    ChatRequest,
    ChatService,
    ReplyFinished,
    ReplyStarted,
    TextDelta,
)
from bot.errors import BotError
from bot.storage.channels import ChannelStore
from bot.storage.history import Author
from bot.ui.checks import is_admin, member_is_admin, place_ids
from bot.ui.controls import RegenerateButton, StopButton, controls
from bot.ui.images import before_ack, check_route, defer, image_attachments, read_images
from bot.ui.streaming import EditPacer, ReplyTarget, StreamingReply
from bot.ui.targets import NO_PINGS, FollowupTarget, InteractionTarget, MessageTarget
from bot.vision.images import CheckedImage, ImagePreparer

if TYPE_CHECKING:
    from bot.app import OllamaBot

log = logging.getLogger(__name__)

USER_MENTION = re.compile(r"<@!?(\d+)>")
ROLE_MENTION = re.compile(r"<@&(\d+)>")
ECHO_CHARS = 150


def prompt_from_message(
    content: str,
    *,
    bot_id: int,
    bot_role_id: int | None,
    names: dict[int, str],
    roles: dict[int, str],
) -> str:
    """The text of a message as the model should read it: the bot's own mention removed, other
    user and role mentions turned into readable @names."""

    def user(match: re.Match[str]) -> str:
        user_id = int(match.group(1))
        if user_id == bot_id:
            return ""
        return f"@{names[user_id]}" if user_id in names else match.group(0)

    def role(match: re.Match[str]) -> str:
        role_id = int(match.group(1))
        if role_id == bot_role_id:
            return ""
        return f"@{roles[role_id]}" if role_id in roles else match.group(0)

    text = USER_MENTION.sub(user, content)
    text = ROLE_MENTION.sub(role, text)
    return text.strip()


def is_from_a_person(message: discord.Message) -> bool:
    """Other bots, webhooks and system messages (joins, pins, thread notices) are never answered."""
    if message.author.bot or message.webhook_id is not None:
        return False
    return message.type in (discord.MessageType.default, discord.MessageType.reply)


def footer(finished: ReplyFinished) -> str:
    model = finished.stats.model
    if finished.persona:
        model = f"{finished.persona} ({finished.base_model or model})"
    parts = [model]
    speed = finished.stats.tokens_per_second
    if speed is not None:
        parts.append(f"{speed:.1f} tokens/s")
    if finished.stats.done_reason == "length":
        parts.append("cut off at the length limit")
    return "-# " + " · ".join(parts)


def echo(text: str) -> str:
    """The question, quoted on top of a slash-command answer (which Discord does not show)."""
    line = " ".join(text.split())
    if len(line) > ECHO_CHARS:
        line = line[: ECHO_CHARS - 1] + "…"
    return f"> {line}\n"


class ChatCog(commands.Cog):
    def __init__(
        self, bot: OllamaBot, chat: ChatService, channels: ChannelStore, images: ImagePreparer
    ) -> None:
        self.bot = bot
        self.chat = chat
        self.channels = channels
        self.images = images
        self._running: dict[str, _Running] = {}
        self._pacer = EditPacer(bot.settings.edits_per_second)

    @app_commands.command(name="chat", description="Talk to the model in this channel.")
    @app_commands.describe(
        message="What you want to say",
        image="An image for the model to look at (PNG, JPEG, WebP or GIF)",
        model="Use this model for this message only",
    )
    async def chat_command(
        self,
        interaction: discord.Interaction,
        message: app_commands.Range[str, 1, 4000],
        image: discord.Attachment | None = None,
        model: app_commands.Range[str, 1, 200] | None = None,
    ) -> None:
        request = ChatRequest(
            channel_id=_channel_id(interaction),
            guild_id=interaction.guild_id,
            user=Author(interaction.user.id, interaction.user.display_name),
            text=message,
            model=model,
        )
        ticket = self.chat.reserve(request.channel_id)  # before any await: keeps arrival order
        try:
            checked: tuple[CheckedImage, ...] = ()
            if image is not None:  # refusals come before anything public is shown
                checked = await before_ack(interaction, self.checked_images(request, [image]))
            await defer(interaction)
            await self.reply(
                request,
                InteractionTarget(interaction, token_ttl=self.bot.settings.interaction_token_ttl),
                prefix=echo(message),
                images=checked,
                ticket=ticket,
            )
        finally:
            self.chat.release(ticket)

    async def checked_images(
        self, request: ChatRequest, attachments: Sequence[discord.Attachment]
    ) -> tuple[CheckedImage, ...]:
        """Read and check the images, and whether a model can see them."""
        checked = await read_images(self.images, attachments)
        await check_route(self.chat, request)
        return checked

    @chat_command.autocomplete("model")
    async def _model_names(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return await model_choices(self.bot.models, current, interaction.guild_id)

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        me = self.bot.user
        if me is None or not is_from_a_person(message):
            return
        settings = self.bot.settings
        refusal = self.bot.access.refusal(
            user_id=message.author.id,
            role_ids=[role.id for role in getattr(message.author, "roles", [])],
            channel_ids=place_ids(message.channel),
            dm=message.guild is None,
            admin=member_is_admin(message.author, settings.admin_role_ids),
        )
        if refusal is not None:
            return  # quietly: answering every message of a shut-out user would be noise
        ticket = self.chat.reserve(message.channel.id)  # before any await: keeps arrival order
        try:
            await self._route(message, me, ticket)
        finally:
            self.chat.release(ticket)

    async def _route(
        self, message: discord.Message, me: discord.ClientUser, ticket: Ticket
    ) -> None:
        if message.guild is None:  # a direct message, which the rules allow: all of it is for us
            await self._answer(
                message, message.content.strip(), addressed=True, mentioned=False, ticket=ticket
            )
            return
        bot_role = message.guild.self_role
        mentioned = any(user.id == me.id for user in message.mentions) or (
            bot_role is not None and bot_role in message.role_mentions
        )
        replied = _replies_to(message, me.id)
        addressed = mentioned or replied
        if not addressed and not await self._answers_unprompted(message):
            return
        text = prompt_from_message(
            message.content,
            bot_id=me.id,
            bot_role_id=bot_role.id if bot_role else None,
            names={user.id: user.display_name for user in message.mentions},
            roles={role.id: role.name for role in message.role_mentions},
        )
        await self._answer(message, text, addressed=addressed, mentioned=mentioned, ticket=ticket)

    async def _answer(
        self,
        message: discord.Message,
        text: str,
        *,
        addressed: bool,
        mentioned: bool,
        ticket: Ticket | None = None,
    ) -> None:
        attachments = image_attachments(message)
        if not text and not attachments:
            if addressed:
                await self._explain_empty(message, mentioned=mentioned)
            return
        request = ChatRequest(
            channel_id=message.channel.id,
            guild_id=message.guild.id if message.guild else None,
            user=Author(message.author.id, message.author.display_name),
            text=text or self.bot.settings.caption_prompt,  # a picture alone: describe it
            source_message_id=message.id,
        )
        checked: tuple[CheckedImage, ...] = ()
        if attachments:
            try:
                checked = await read_images(self.images, attachments)
            except BotError as exc:
                await message.reply(
                    f"⚠️ {exc.user_message}", mention_author=False, allowed_mentions=NO_PINGS
                )
                return
        with contextlib.suppress(discord.HTTPException):  # the typing dots are a courtesy
            await message.channel.typing()
        await self.reply(request, MessageTarget(message), images=checked, ticket=ticket)

    async def _answers_unprompted(self, message: discord.Message) -> bool:
        """Whether a message that does not address the bot is still for it: every message in an
        auto-reply channel or a thread the bot started, unless it mentions others (then it is
        for them). Without the message content intent such messages arrive without text."""
        if not self.bot.settings.message_content_intent:
            return False
        if message.mention_everyone or message.mentions or message.role_mentions:
            return False
        config = await self.channels.get(message.channel.id)
        return config.autoreply or config.bot_thread

    async def reply(
        self,
        request: ChatRequest,
        target: ReplyTarget[discord.Message],
        *,
        prefix: str = "",
        images: Sequence[CheckedImage] = (),
        ticket: Ticket | None = None,
    ) -> None:
        """Stream the answer to `request` into `target`, with a Stop button while it streams and
        a Regenerate button when done; failures end up in the same message. Checked `images` are
        decoded and downscaled here, off the event loop."""
        drawing = StreamingReply(
            target,
            interval=self.bot.settings.edit_interval,
            prefix=prefix,
            stop_view=controls(StopButton(request.request_id)),
            pacer=self._pacer,
        )
        running = _Running(requester=request.user.id, reply=asyncio.current_task())
        self._running[request.request_id] = running
        try:
            if images:
                request = dataclasses.replace(request, images=await self.images.prepare(images))
            running.task = asyncio.create_task(self._consume(request, drawing, running, ticket))
            finished = await running.task
            await drawing.finish(footer(finished), view=self._again(running))
        except asyncio.CancelledError:
            if running.stopped_by is None or _cancelling():
                await drawing.cancel()
                raise
            if running.stopped_by == SHUTDOWN:
                await drawing.fail(ShuttingDown.user_message + " This reply was cut short.")
            else:
                await drawing.finish(
                    f"-# ⏹️ stopped by {running.stopped_by}", view=self._again(running)
                )
        except BotError as exc:
            self.bot.metrics.error(exc)
            await drawing.fail(exc.user_message, view=self._again(running))
        except BaseException:
            await drawing.cancel()
            raise
        finally:
            self._running.pop(request.request_id, None)

    async def _consume(
        self,
        request: ChatRequest,
        drawing: StreamingReply[discord.Message],
        running: _Running,
        ticket: Ticket | None,
    ) -> ReplyFinished:
        finished: ReplyFinished | None = None
        async for event in self.chat.respond(
            request,
            on_position=lambda place: drawing.set_status(waiting_text(place)),
            ticket=ticket,
        ):
            if isinstance(event, TextDelta):
                drawing.feed(event.text)
            elif isinstance(event, ReplyStarted):
                running.turn_id = event.turn_id
            else:
                finished = event
                # Shown at once; the service stores the reply meanwhile.
                drawing.finish_soon(footer(finished), view=self._again(running))
        assert finished is not None  # respond() ends with ReplyFinished or raises
        return finished

    @staticmethod
    def _again(running: _Running) -> discord.ui.View | None:
        return controls(RegenerateButton(running.turn_id)) if running.turn_id else None

    async def stop(self, interaction: discord.Interaction, request_id: str) -> None:
        """The Stop button: ends the Ollama request; the turn is stored as stopped."""
        running = self._running.get(request_id)
        if running is None or running.task is None or running.task.done():
            await _tell(interaction, "This reply has already finished.")
        elif interaction.user.id != running.requester and not is_admin(interaction):
            await _tell(interaction, "Only the person who asked (or an admin) can stop this reply.")
        else:
            running.stopped_by = interaction.user.display_name
            running.task.cancel()
            await interaction.response.defer()  # the reply's own final edit shows it stopped

    def replies_in_progress(self) -> set[asyncio.Task[Any]]:
        return {r.reply for r in self._running.values() if r.reply is not None}

    async def cut_short(self) -> None:
        """At shutdown: stop every reply still running or waiting, and wait until each has said
        so in Discord."""
        replies = self.replies_in_progress()
        for running in self._running.values():
            if running.task is not None and not running.task.done():
                running.stopped_by = SHUTDOWN
                running.task.cancel()
        if replies:
            await asyncio.wait(replies)

    async def regenerate(self, interaction: discord.Interaction, turn_id: int) -> None:
        """The Regenerate button: the latest answer is replaced by a new one."""
        try:
            request = await self.chat.regenerate(
                channel_id=_channel_id(interaction),
                guild_id=interaction.guild_id,
                turn_id=turn_id,
                requester=Author(interaction.user.id, interaction.user.display_name),
                admin=is_admin(interaction),
            )
        except BotError as exc:
            await _tell(interaction, exc.user_message)
            return
        await interaction.response.edit_message(view=None)  # the old answer keeps its text
        await self.reply(request, FollowupTarget(interaction))

    async def _explain_empty(self, message: discord.Message, *, mentioned: bool) -> None:
        if mentioned:
            text = "Hi! Put your question after the mention, or use `/chat`."
        else:
            # A reply that does not ping the bot arrives without its text (the bot does not
            # ask Discord for the privileged message-content intent).
            text = (
                "I can only read replies that mention me: keep **@mention** switched on "
                "when you reply, or use `/chat`."
            )
        await message.reply(text, mention_author=False, allowed_mentions=NO_PINGS)


SHUTDOWN = "\x00shutdown"  # a `stopped_by` that no display name can be


@dataclass(slots=True)
class _Running:
    """A reply being generated, for the Stop button."""

    requester: int
    reply: asyncio.Task[Any] | None = None  # the task drawing the reply
    task: asyncio.Task[ReplyFinished] | None = None  # the task reading the model's stream
    turn_id: int | None = None
    stopped_by: str | None = None


def waiting_text(place: int) -> str:
    return f"⏳ Waiting for the model: you are number {place} in line."


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def _tell(interaction: discord.Interaction, text: str) -> None:
    await interaction.response.send_message(text, ephemeral=True, allowed_mentions=NO_PINGS)


def _replies_to(message: discord.Message, user_id: int) -> bool:
    reference = message.reference
    if reference is None:
        return False
    resolved = reference.resolved or reference.cached_message
    return isinstance(resolved, discord.Message) and resolved.author.id == user_id


def _channel_id(interaction: discord.Interaction) -> int:
    if interaction.channel_id is None:  # only for interactions outside channels
        raise BotError("This command works in a channel.")
    return interaction.channel_id
