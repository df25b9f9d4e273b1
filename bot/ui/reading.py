"""DiscordReader: the `MessageSource` of the read_channel and open_message tools. It reads for
the member who asked, with their permissions in the channel (View Channel and Read Message
History), never more than the bot itself may read, and only in the guild they asked in."""

from __future__ import annotations

import re
from collections.abc import Callable

import discord

from bot.tools.builtin import ReadMessage, ReadResult
from bot.tools.registry import ToolContext, ToolError

LINK = re.compile(
    r"https?://(?:(?:ptb|canary)\.)?discord(?:app)?\.com/channels/(\d+)/(\d+)/(\d+)", re.IGNORECASE
)
MENTION = re.compile(r"<#(\d+)>")

Readable = discord.TextChannel | discord.Thread | discord.VoiceChannel | discord.StageChannel


class DiscordReader:
    def __init__(self, client: Callable[[], discord.Client]) -> None:
        self._client = client  # known once the bot is built (the composition root builds both)

    async def read_channel(self, context: ToolContext, channel: str, limit: int) -> ReadResult:
        guild = self._guild(context)
        target = _find(guild, channel)
        if target is None:
            raise ToolError(
                f"There is no channel {channel!r} here that the person asking can read."
            )
        await self._check(guild, target, context, channel)
        messages = [m async for m in target.history(limit=limit)]
        messages.reverse()
        return ReadResult(
            channel=f"#{target.name}",
            link=target.jump_url,
            messages=[self._message(m) for m in messages],
        )

    async def open_message(self, context: ToolContext, link: str) -> ReadResult:
        match = LINK.search(link)
        if match is None:
            raise ToolError("That is not a link to a Discord message.")
        guild = self._guild(context)
        guild_id, channel_id, message_id = (int(part) for part in match.groups())
        if guild_id != guild.id:
            raise ToolError("Only messages of this server can be opened here.")
        target = guild.get_channel_or_thread(channel_id)
        if not isinstance(target, Readable):
            raise ToolError("That message is not in a channel the person asking can read.")
        await self._check(guild, target, context, link)
        try:
            message = await target.fetch_message(message_id)
        except discord.NotFound:
            raise ToolError("That message does not exist (any more).") from None
        return ReadResult(
            channel=f"#{target.name}", link=target.jump_url, messages=[self._message(message)]
        )

    async def can_read(self, context: ToolContext) -> Callable[[int], bool]:
        """Which channels of the server the asking member can read now (their permissions,
        fetched now: roles change); nothing outside a server."""
        guild = self._client().get_guild(context.guild_id) if context.guild_id else None
        if guild is None:
            return lambda channel_id: False
        try:
            member = await guild.fetch_member(context.user_id)
        except discord.NotFound:
            return lambda channel_id: False

        def readable(channel_id: int) -> bool:
            channel = guild.get_channel_or_thread(channel_id)
            return channel is not None and channel.permissions_for(member).read_messages

        return readable

    def _guild(self, context: ToolContext) -> discord.Guild:
        guild = self._client().get_guild(context.guild_id) if context.guild_id else None
        if guild is None:
            raise ToolError("Discord messages can only be read in a server, not in DMs.")
        return guild

    async def _check(
        self, guild: discord.Guild, target: Readable, context: ToolContext, asked: str
    ) -> None:
        """The member's own permissions decide (fetched now: roles change); the bot must be able
        to read the channel too. The refusal does not say whether the channel exists."""
        try:
            member = await guild.fetch_member(context.user_id)
        except discord.NotFound:
            raise ToolError("The person asking is not a member of this server.") from None
        allowed = target.permissions_for(member)
        private_thread = isinstance(target, discord.Thread) and target.is_private()
        if not (allowed.view_channel and allowed.read_message_history) or (
            private_thread and not allowed.manage_threads
        ):
            raise ToolError(f"There is no channel {asked!r} here that the person asking can read.")
        mine = target.permissions_for(guild.me)
        if not (mine.view_channel and mine.read_message_history):
            raise ToolError(f"The bot itself may not read #{target.name}.")

    def _message(self, message: discord.Message) -> ReadMessage:
        client = self._client()
        me = client.user
        hidden = (
            not client.intents.message_content
            and not message.content
            and message.author != me
            and not (me is not None and me in message.mentions)
        )
        return ReadMessage(
            author=message.author.display_name,
            content=message.content,
            created_at=message.created_at,
            link=message.jump_url,
            hidden=hidden,
        )


def _find(guild: discord.Guild, asked: str) -> Readable | None:
    text = asked.strip()
    mention = MENTION.fullmatch(text)
    if mention or text.isdigit():
        found = guild.get_channel_or_thread(int(mention.group(1) if mention else text))
        return found if isinstance(found, Readable) else None
    name = text.lstrip("#").strip().lower()
    candidates: list[Readable] = [*guild.text_channels, *guild.threads, *guild.voice_channels]
    return next((c for c in candidates if c.name.lower() == name), None)
