"""/chat, and chat by mentioning the bot or replying to it."""

from __future__ import annotations

import contextlib
import logging
import re
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.conversation.service import ChatRequest, ChatService, ReplyFinished, TextDelta
from bot.errors import BotError
from bot.storage.history import Author
from bot.ui.streaming import ReplyTarget, StreamingReply
from bot.ui.targets import NO_PINGS, InteractionTarget, MessageTarget

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
    def __init__(self, bot: OllamaBot, chat: ChatService) -> None:
        self.bot = bot
        self.chat = chat

    @app_commands.command(name="chat", description="Talk to the model in this channel.")
    @app_commands.describe(
        message="What you want to say", model="Use this model for this message only"
    )
    async def chat_command(
        self,
        interaction: discord.Interaction,
        message: app_commands.Range[str, 1, 4000],
        model: app_commands.Range[str, 1, 200] | None = None,
    ) -> None:
        await interaction.response.defer(thinking=True)
        request = ChatRequest(
            channel_id=_channel_id(interaction),
            guild_id=interaction.guild_id,
            user=Author(interaction.user.id, interaction.user.display_name),
            text=message,
            model=model,
        )
        await self.reply(request, InteractionTarget(interaction), prefix=echo(message))

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        me = self.bot.user
        if me is None or message.author.bot or message.guild is None:
            return
        if message.type not in (discord.MessageType.default, discord.MessageType.reply):
            return
        bot_role = message.guild.self_role
        mentioned = any(user.id == me.id for user in message.mentions) or (
            bot_role is not None and bot_role in message.role_mentions
        )
        replied = _replies_to(message, me.id)
        if not (mentioned or replied):
            return
        text = prompt_from_message(
            message.content,
            bot_id=me.id,
            bot_role_id=bot_role.id if bot_role else None,
            names={user.id: user.display_name for user in message.mentions},
            roles={role.id: role.name for role in message.role_mentions},
        )
        if not text:
            await self._explain_empty(message, mentioned=mentioned)
            return
        request = ChatRequest(
            channel_id=message.channel.id,
            guild_id=message.guild.id,
            user=Author(message.author.id, message.author.display_name),
            text=text,
        )
        with contextlib.suppress(discord.HTTPException):  # the typing dots are a courtesy
            await message.channel.typing()
        await self.reply(request, MessageTarget(message))

    async def reply(
        self, request: ChatRequest, target: ReplyTarget[discord.Message], *, prefix: str = ""
    ) -> None:
        """Stream the answer to `request` into `target`; failures end up in the same message."""
        drawing = StreamingReply(target, interval=self.bot.settings.edit_interval, prefix=prefix)
        try:
            finished: ReplyFinished | None = None
            async for event in self.chat.respond(request):
                if isinstance(event, TextDelta):
                    drawing.feed(event.text)
                else:
                    finished = event
            await drawing.finish(footer(finished) if finished else None)
        except BotError as exc:
            await drawing.fail(exc.user_message)
        except BaseException:
            await drawing.cancel()
            raise

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
