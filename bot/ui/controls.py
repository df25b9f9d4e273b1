"""The buttons under a reply: Stop while it streams, Regenerate when it is done.

Both are dynamic items: their custom ids carry what they act on, so they keep working for
messages sent before a restart, and no view is kept in memory per message."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, cast

import discord

if TYPE_CHECKING:
    from bot.cogs.chat import ChatCog


def _chat_cog(interaction: discord.Interaction) -> ChatCog:
    bot = cast("discord.ext.commands.Bot", interaction.client)
    return cast("ChatCog", bot.get_cog("ChatCog"))


class StopButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"reply:stop:(?P<request>[0-9a-f]{1,32})",
):
    def __init__(self, request_id: str) -> None:
        super().__init__(
            discord.ui.Button(
                label="Stop",
                emoji="⏹️",
                style=discord.ButtonStyle.secondary,
                custom_id=f"reply:stop:{request_id}",
            )
        )
        self.request_id = request_id

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction,
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> StopButton:
        return cls(match["request"])

    async def callback(self, interaction: discord.Interaction) -> None:
        await _chat_cog(interaction).stop(interaction, self.request_id)


class RegenerateButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"reply:again:(?P<turn>[0-9]{1,20})"
):
    def __init__(self, turn_id: int) -> None:
        super().__init__(
            discord.ui.Button(
                label="Regenerate",
                emoji="🔄",
                style=discord.ButtonStyle.secondary,
                custom_id=f"reply:again:{turn_id}",
            )
        )
        self.turn_id = turn_id

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction,
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> RegenerateButton:
        return cls(int(match["turn"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        await _chat_cog(interaction).regenerate(interaction, self.turn_id)


def controls(*items: discord.ui.Item[Any]) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    for item in items:
        view.add_item(item)
    return view
