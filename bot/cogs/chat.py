"""/chat, and chat by mentioning the bot or replying to it: Discord in, one request out to the
reply pipeline (bot/replies.py), which does the rest."""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot.cogs.models import model_choices
from bot.errors import BotError
from bot.models.service import ModelService
from bot.replies import ReplyPipeline, request_for_interaction, request_for_message
from bot.storage.channels import ChannelStore
from bot.ui.checks import member_is_admin, place_ids
from bot.ui.images import image_attachments
from bot.ui.knowledge import document_attachments
from bot.ui.targets import NO_PINGS
from bot.ui.text import echo

if TYPE_CHECKING:
    from bot.client import OllamaBot

log = logging.getLogger(__name__)

FILE_PROMPT = "Summarise the attached file."
"""The question when a file comes without one."""
USER_MENTION = re.compile(r"<@!?(\d+)>")
ROLE_MENTION = re.compile(r"<@&(\d+)>")


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


class ChatCog(commands.Cog):
    def __init__(
        self,
        bot: OllamaBot,
        replies: ReplyPipeline,
        channels: ChannelStore,
        models: ModelService,
    ) -> None:
        self.bot = bot
        self.replies = replies
        self.channels = channels
        self.models = models

    @app_commands.command(name="chat", description="Talk to the model in this channel.")
    @app_commands.describe(
        message="What you want to say",
        image="An image for the model to look at (PNG, JPEG, WebP or GIF)",
        model="Use this model for this message only",
        think="How much the model thinks first, for this message only (default: the channel's)",
        file="A text, Markdown, code, CSV, JSON or PDF file for the model to read",
    )
    async def chat_command(
        self,
        interaction: discord.Interaction,
        message: app_commands.Range[str, 1, 4000],
        image: discord.Attachment | None = None,
        model: app_commands.Range[str, 1, 200] | None = None,
        think: Literal["default", "off", "on", "low", "medium", "high"] | None = None,
        file: discord.Attachment | None = None,
    ) -> None:
        request = request_for_interaction(interaction, message, model=model, think=think)
        await self.replies.answer_interaction(
            interaction,
            request,
            prefix=echo(message),
            attachments=[image] if image else [],
            files=[file] if file else [],
        )

    @chat_command.autocomplete("model")
    async def _model_names(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return await model_choices(self.models, current, interaction.guild_id)

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
        # A place in the channel's line before any await: keeps the order Discord delivered
        # the channel's messages in.
        place = self.replies.hold_place(message.channel.id)
        try:
            addressed, mentioned, text = self._read(message, me)
            attachments = image_attachments(message)
            files = document_attachments(message)
            if not addressed and not (
                (text or attachments or files) and await self._answers_unprompted(message)
            ):
                return
            if not text and not attachments and not files:
                await self._explain_empty(message, mentioned=mentioned)
                return
            default = settings.caption_prompt if attachments else FILE_PROMPT
            request = request_for_message(message, text or default)
            try:
                ticket = self.replies.admit(request, place)
            except BotError as exc:
                await self.replies.refuse_message(message, exc)
                return
            await self.replies.answer_message(message, request, ticket, attachments, files)
        finally:
            self.replies.chat.release(place)

    def _read(self, message: discord.Message, me: discord.ClientUser) -> tuple[bool, bool, str]:
        """Whether the message addresses the bot, whether it mentions it, and its text as the
        model should read it."""
        if message.guild is None:  # a direct message, which the rules allow: all of it is for us
            return True, False, message.content.strip()
        bot_role = message.guild.self_role
        mentioned = any(user.id == me.id for user in message.mentions) or (
            bot_role is not None and bot_role in message.role_mentions
        )
        addressed = mentioned or _replies_to(message, me.id)
        text = prompt_from_message(
            message.content,
            bot_id=me.id,
            bot_role_id=bot_role.id if bot_role else None,
            names={user.id: user.display_name for user in message.mentions},
            roles={role.id: role.name for role in message.role_mentions},
        )
        return addressed, mentioned, text

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

    async def _explain_empty(self, message: discord.Message, *, mentioned: bool) -> None:
        """A mention with nothing to answer: a hint, at most once a minute per member."""
        if not self.replies.may_tell_publicly(message.author.id):
            return
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
