"""The two places a reply is drawn: an interaction's response, or a reply to a message.

Every message the bot sends or edits carries `allowed_mentions` that ping no one."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import discord

NO_PINGS = discord.AllowedMentions.none()


INTERACTION_TOKEN_TTL = 15 * 60.0
"""Seconds an interaction's token works for followups and edits (Discord's rule)."""


def channel_bucket(channel_id: int) -> str:
    """Discord's rate-limit bucket of a channel's messages (sends and edits together)."""
    return f"channel:{channel_id}"


def interaction_bucket(interaction: discord.Interaction) -> str:
    """Discord's rate-limit bucket of an interaction token's messages (its webhook)."""
    return f"token:{interaction.id}"


class InteractionTarget:
    """The deferred response of a slash command (its original response is edited, as Discord's
    docs ask, rather than filled by a first followup), then followups; with `original=False`
    (a button press whose response was used already) followups only. Past the interaction
    token's lifetime (a long wait in line plus a long reply), the reply carries on through the
    channel: the bot edits its messages there and sends new ones as plain channel messages."""

    def __init__(
        self,
        interaction: discord.Interaction,
        *,
        token_ttl: float = INTERACTION_TOKEN_TTL,
        original: bool = True,
    ) -> None:
        self._interaction = interaction
        self._original = original
        margin = min(30.0, token_ttl / 10)  # stop using the token a little before it dies
        self._expires = interaction.created_at + timedelta(seconds=token_ttl - margin)

    def _channel(self) -> Any:
        if discord.utils.utcnow() < self._expires:
            return None
        return self._interaction.channel

    def bucket(self, index: int) -> str:
        if self._channel() is not None:
            return channel_bucket(self._interaction.channel_id or 0)
        return interaction_bucket(self._interaction)

    async def send(self, index: int, content: str, view: Any) -> discord.Message:
        if (channel := self._channel()) is not None:
            return await channel.send(content, allowed_mentions=NO_PINGS, **_with_view(view))  # type: ignore[no-any-return]
        if index == 0 and self._original:
            return await self._interaction.edit_original_response(
                content=content, allowed_mentions=NO_PINGS, view=view
            )
        return await self._interaction.followup.send(
            content, allowed_mentions=NO_PINGS, wait=True, **_with_view(view)
        )

    async def edit(self, handle: discord.Message, content: str, view: Any) -> discord.Message:
        if (channel := self._channel()) is not None:
            message = channel.get_partial_message(handle.id)
            return await message.edit(content=content, allowed_mentions=NO_PINGS, view=view)  # type: ignore[no-any-return]
        # An InteractionMessage edits the original response, a WebhookMessage its followup.
        return await handle.edit(content=content, allowed_mentions=NO_PINGS, view=view)


class MessageTarget:
    """A reply to a user's message (no ping), continued as plain channel messages."""

    def __init__(self, message: discord.Message) -> None:
        self._message = message

    def bucket(self, index: int) -> str:
        return channel_bucket(self._message.channel.id)

    async def send(self, index: int, content: str, view: Any) -> discord.Message:
        if index == 0:
            return await self._message.reply(
                content, mention_author=False, allowed_mentions=NO_PINGS, **_with_view(view)
            )
        return await self._message.channel.send(
            content, allowed_mentions=NO_PINGS, **_with_view(view)
        )

    async def edit(self, handle: discord.Message, content: str, view: Any) -> discord.Message:
        return await handle.edit(content=content, allowed_mentions=NO_PINGS, view=view)


class ChannelTarget:
    """Plain messages in a channel or thread (the first answer in a new thread)."""

    def __init__(self, channel: discord.abc.Messageable) -> None:
        self._channel = channel

    def bucket(self, index: int) -> str:
        return channel_bucket(getattr(self._channel, "id", 0))

    async def send(self, index: int, content: str, view: Any) -> discord.Message:
        return await self._channel.send(content, allowed_mentions=NO_PINGS, **_with_view(view))

    async def edit(self, handle: discord.Message, content: str, view: Any) -> discord.Message:
        return await handle.edit(content=content, allowed_mentions=NO_PINGS, view=view)


def _with_view(view: Any) -> dict[str, Any]:
    """discord.py's send() refuses view=None; leave the argument out instead."""
    return {} if view is None else {"view": view}
