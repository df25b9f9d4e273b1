"""The two places a reply is drawn: an interaction's response, or a reply to a message.

Every message the bot sends or edits carries `allowed_mentions` that ping no one."""

from __future__ import annotations

import discord

NO_PINGS = discord.AllowedMentions.none()


class InteractionTarget:
    """The deferred response of a slash command, then followups."""

    def __init__(self, interaction: discord.Interaction) -> None:
        self._interaction = interaction

    async def send(self, index: int, content: str) -> discord.Message:
        if index == 0:
            return await self._interaction.edit_original_response(
                content=content, allowed_mentions=NO_PINGS
            )
        return await self._interaction.followup.send(content, allowed_mentions=NO_PINGS, wait=True)

    async def edit(self, handle: discord.Message, content: str) -> discord.Message:
        # An InteractionMessage edits the original response, a WebhookMessage its followup.
        return await handle.edit(content=content, allowed_mentions=NO_PINGS)


class MessageTarget:
    """A reply to a user's message (no ping), continued as plain channel messages."""

    def __init__(self, message: discord.Message) -> None:
        self._message = message

    async def send(self, index: int, content: str) -> discord.Message:
        if index == 0:
            return await self._message.reply(
                content, mention_author=False, allowed_mentions=NO_PINGS
            )
        return await self._message.channel.send(content, allowed_mentions=NO_PINGS)

    async def edit(self, handle: discord.Message, content: str) -> discord.Message:
        return await handle.edit(content=content, allowed_mentions=NO_PINGS)


class ChannelTarget:
    """Plain messages in a channel or thread (the first answer in a new thread)."""

    def __init__(self, channel: discord.abc.Messageable) -> None:
        self._channel = channel

    async def send(self, index: int, content: str) -> discord.Message:
        return await self._channel.send(content, allowed_mentions=NO_PINGS)

    async def edit(self, handle: discord.Message, content: str) -> discord.Message:
        return await handle.edit(content=content, allowed_mentions=NO_PINGS)
