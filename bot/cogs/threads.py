"""/thread start, the message menu "Continue in thread" and /channel autoreply: conversations
without typing @bot every time."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.conversation.service import HISTORY_SCAN_TURNS
from bot.errors import InputError, PermissionDenied
from bot.replies import ReplyPipeline, posting_refusal, request_from, role_ids
from bot.storage.channels import ChannelStore
from bot.storage.history import HistoryStore, StoredTurn
from bot.ui.checks import channel_managers
from bot.ui.controls import TURN_IN_CUSTOM_ID
from bot.ui.targets import NO_PINGS, ChannelTarget
from bot.ui.text import one_line

if TYPE_CHECKING:
    from bot.client import OllamaBot

log = logging.getLogger(__name__)

THREAD_NAME_CHARS = 100  # Discord's limit for a channel name

INTENT_HELP = (
    "Answering without a mention needs Discord's **Message Content** intent, which this bot does "
    "not use yet. An admin can switch it on in the Discord developer portal (your application → "
    "Bot → Privileged Gateway Intents → Message Content Intent) and in the bot's settings "
    "(`message_content_intent = true`, or `BOT_MESSAGE_CONTENT_INTENT=true`), then restart the "
    "bot. Mentioning me works either way."
)


def thread_name(topic: str) -> str:
    return one_line(topic, THREAD_NAME_CHARS)


THREAD_EXISTS = 160004  # Discord: "A thread has already been created for this message"


def turn_ids_in(message: discord.Message) -> list[int]:
    """The answers a reply's buttons act on (its last message carries them)."""
    found: list[int] = []
    for row in message.components:
        for item in getattr(row, "children", [row]):
            match = TURN_IN_CUSTOM_ID.match(getattr(item, "custom_id", None) or "")
            if match:
                found.append(int(match["turn"]))
    return found


class ThreadsCog(commands.Cog):
    def __init__(
        self,
        bot: OllamaBot,
        replies: ReplyPipeline,
        channels: ChannelStore,
        history: HistoryStore,
    ) -> None:
        self.bot = bot
        self.replies = replies
        self.channels = channels
        self.history = history
        self._fork_menu = app_commands.ContextMenu(
            name="Continue in thread",
            callback=self.fork,
            allowed_contexts=app_commands.AppCommandContext(
                guild=True, dm_channel=False, private_channel=False
            ),
        )

    async def cog_load(self) -> None:
        self.bot.tree.add_command(self._fork_menu)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self._fork_menu.name, type=self._fork_menu.type)

    thread = app_commands.Group(
        name="thread", description="Conversations in their own thread", guild_only=True
    )
    channel = app_commands.Group(
        name="channel",
        description="How the bot behaves in this channel",
        default_permissions=discord.Permissions(manage_channels=True),
        guild_only=True,
    )

    @thread.command(name="start", description="Open a thread for a new conversation.")
    @app_commands.describe(
        topic="What the conversation is about (your first message)",
        private="Only people you add can see it (default: public)",
    )
    async def start(
        self,
        interaction: discord.Interaction,
        topic: app_commands.Range[str, 1, 2000],
        private: bool = False,
    ) -> None:
        parent = interaction.channel
        if not isinstance(parent, discord.TextChannel) or interaction.guild_id is None:
            raise InputError("Start a thread from a text channel (not from a thread or a DM).")
        permissions = interaction.permissions
        if not (
            permissions.create_private_threads if private else permissions.create_public_threads
        ):
            which = "private" if private else "public"
            raise PermissionDenied(f"You can't create {which} threads in this channel.")
        if not permissions.send_messages_in_threads:
            raise PermissionDenied("You can't send messages in threads here, so I won't start one.")
        refusal = posting_refusal(interaction)
        if refusal is not None:
            raise PermissionDenied(refusal)
        # Admitted before the thread exists (a refused request leaves nothing behind), in the
        # parent's line until the thread has a line of its own.
        admitted = self.replies.chat.admit(
            interaction.user.id, parent.id, roles=role_ids(interaction.user)
        )
        try:
            thread = await self._open(interaction, parent, topic, private)
            place = self.replies.hold_place(thread.id)
        finally:
            self.replies.chat.release(admitted)
        try:
            request = request_from(
                channel_id=thread.id,
                guild_id=interaction.guild_id,
                user=interaction.user,
                text=topic,
            )
            request = self.replies.with_knowledge(request, interaction.user)
            await self.replies.answer(request, ChannelTarget(thread), ticket=place)
        finally:
            self.replies.chat.release(place)

    async def _open(
        self,
        interaction: discord.Interaction,
        parent: discord.TextChannel,
        topic: str,
        private: bool,
    ) -> discord.Thread:
        """The new thread, with its settings stored and announced."""
        assert interaction.guild_id is not None
        await interaction.response.defer(thinking=True)
        kind = discord.ChannelType.private_thread if private else discord.ChannelType.public_thread
        try:
            thread = await parent.create_thread(
                name=thread_name(topic), type=kind, auto_archive_duration=1440
            )
            if private:
                await thread.add_user(interaction.user)
        except discord.Forbidden as exc:
            which = "private" if private else "public"
            raise InputError(
                f"I can't create {which} threads here. I need the Create "
                f"{which.capitalize()} Threads permission in this channel."
            ) from exc
        parent_config = await self.channels.get(parent.id)
        await self.channels.update(
            thread.id,
            interaction.guild_id,
            bot_thread=True,
            parent_id=parent.id,
            model=parent_config.model,
            persona=parent_config.persona,
        )
        note = (
            "I answer every message in it."
            if self.bot.settings.message_content_intent
            else "Mention me there to continue.\n-# " + INTENT_HELP
        )
        await interaction.edit_original_response(
            content=f"🧵 Started {thread.mention}. {note}", allowed_mentions=NO_PINGS
        )
        return thread

    async def fork(self, interaction: discord.Interaction, message: discord.Message) -> None:
        """Message menu "Continue in thread": a public thread from one of the bot's replies,
        whose history is the conversation up to and including that reply (copied into it)."""
        me = self.bot.user
        if me is None or message.author.id != me.id:
            raise InputError("Pick one of my replies: only those can be continued in a thread.")
        parent = message.channel
        if not isinstance(parent, discord.TextChannel) or interaction.guild_id is None:
            raise InputError(
                "Only replies in a text channel (not in a thread or a DM) can be continued in a "
                "thread of their own."
            )
        if not interaction.permissions.create_public_threads:
            raise PermissionDenied("You can't create public threads in this channel.")
        reply = await self._stored_reply(parent.id, message)
        if reply is None:
            raise InputError(
                "I have no record of that reply any more (it was regenerated, cleared or "
                "deleted), so there is no conversation to continue."
            )
        await interaction.response.defer(ephemeral=True, thinking=True)
        question = await self.history.get(reply.reply_to_id) if reply.reply_to_id else None
        topic = question.content if question is not None else reply.content
        try:
            thread = await message.create_thread(
                name=thread_name(topic) or "Conversation", auto_archive_duration=1440
            )
        except discord.Forbidden as exc:
            raise InputError(
                "I can't create public threads here. I need the Create Public Threads and Read "
                "Message History permissions in this channel."
            ) from exc
        except discord.HTTPException as exc:
            if exc.code == THREAD_EXISTS:
                raise InputError(
                    f"That reply has a thread already: <#{message.id}>. Continue there."
                ) from exc
            raise
        copied = await self.history.copy_conversation(
            source=parent.id,
            target=thread.id,
            guild_id=interaction.guild_id,
            through=reply.id,
            limit=HISTORY_SCAN_TURNS,
        )
        parent_config = await self.channels.get(parent.id)
        await self.channels.update(
            thread.id,
            interaction.guild_id,
            bot_thread=True,
            parent_id=parent.id,
            model=parent_config.model,
            persona=parent_config.persona,
        )
        how = (
            "I answer every message here."
            if self.bot.settings.message_content_intent
            else "Mention me here to go on."
        )
        await thread.send(
            f"🧵 {interaction.user.mention} continued the conversation here: I remember it up "
            f"to the reply above. {how}",
            allowed_mentions=NO_PINGS,
        )
        log.info("forked channel=%s into thread=%s turns=%d", parent.id, thread.id, copied)
        await interaction.edit_original_response(
            content=f"🧵 Continued in {thread.mention}.", allowed_mentions=NO_PINGS
        )

    async def _stored_reply(self, channel_id: int, message: discord.Message) -> StoredTurn | None:
        """The stored answer shown in `message`: by the message it starts in, or by the turn
        its buttons act on (a reply's later messages)."""
        reply = await self.history.find_reply(channel_id, message.id)
        if reply is not None:
            return reply
        for turn_id in turn_ids_in(message):
            turn = await self.history.get(turn_id)
            if turn is not None and turn.channel_id == channel_id and turn.role == "assistant":
                return turn
        return None

    @channel.command(name="autoreply", description="Answer every message here, no mention needed.")
    @app_commands.describe(enabled="On: answer every message in this channel. Off: only mentions.")
    @channel_managers()
    async def autoreply(self, interaction: discord.Interaction, enabled: bool) -> None:
        if enabled and not self.bot.settings.message_content_intent:
            await interaction.response.send_message(
                INTENT_HELP, ephemeral=True, allowed_mentions=NO_PINGS
            )
            return
        channel_id = interaction.channel_id
        if channel_id is None:
            raise InputError("This works in a channel.")
        await self.channels.update(channel_id, interaction.guild_id, autoreply=enabled)
        text = (
            "Auto-reply is **on**: I answer every message in this channel."
            if enabled
            else "Auto-reply is **off**: mention me or reply to me to talk."
        )
        await interaction.response.send_message(text, allowed_mentions=NO_PINGS)
