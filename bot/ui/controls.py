"""The buttons under a reply: Stop while it streams, Regenerate when it is done, Continue when
it was cut at the length limit, Show reasoning when the model thought, Retry without thinking
when it thought and gave no answer.

Both are dynamic items: their custom ids carry what they act on, so they keep working for
messages sent before a restart, and no view is kept in memory per message. Their classes are
made for the reply pipeline they act on (`reply_buttons`), so a button calls that pipeline,
never a cog looked up by name. Buttons obey the same access rules as commands."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import discord

from bot.ui.targets import NO_PINGS

STOP_TEMPLATE = r"reply:stop:(?P<request>[0-9a-f]{1,32})"
TURN_IN_CUSTOM_ID = re.compile(r"^reply:(?:again|more):(?P<turn>[0-9]{1,20})$")
"""The answer (turn id) a reply's Regenerate or Continue button acts on."""


class ReplyControls(Protocol):
    """What the buttons ask of the reply pipeline."""

    def button_refusal(self, interaction: discord.Interaction) -> str | None: ...

    async def stop(self, interaction: discord.Interaction, request_id: str) -> None: ...

    async def regenerate(
        self, interaction: discord.Interaction, turn_id: int, *, without_thinking: bool = False
    ) -> None: ...

    async def show_reasoning(self, interaction: discord.Interaction, turn_id: int) -> None: ...

    async def continue_reply(self, interaction: discord.Interaction, turn_id: int) -> None: ...


@dataclass(frozen=True, slots=True)
class ReplyButtons:
    """The buttons bound to one pipeline: `stop(request_id)`, `regenerate(turn_id)`,
    `reasoning(turn_id)` and `retry(turn_id)` make one; `items` are the classes to register
    with the client (`add_dynamic_items`)."""

    stop: Callable[[str], discord.ui.Item[Any]]
    regenerate: Callable[[int], discord.ui.Item[Any]]
    more: Callable[[int], discord.ui.Item[Any]]
    """The Continue button."""
    reasoning: Callable[[int], discord.ui.Item[Any]]
    retry: Callable[[int], discord.ui.Item[Any]]
    items: tuple[type[discord.ui.DynamicItem[Any]], ...]


async def _refused(replies: ReplyControls, interaction: discord.Interaction) -> bool:
    reason = replies.button_refusal(interaction)
    if reason is None:
        return False
    await interaction.response.send_message(reason, ephemeral=True, allowed_mentions=NO_PINGS)
    return True


def reply_buttons(replies: ReplyControls) -> ReplyButtons:
    """Stop, Regenerate and Continue button classes that act on `replies`."""

    class Stop(discord.ui.DynamicItem[discord.ui.Button[Any]], template=STOP_TEMPLATE):
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
        ) -> Stop:
            return cls(match["request"])

        async def callback(self, interaction: discord.Interaction) -> None:
            if not await _refused(replies, interaction):
                await replies.stop(interaction, self.request_id)

    Regenerate = _turn_button(
        replies, "again", "Regenerate", "🔄", discord.ButtonStyle.secondary, replies.regenerate
    )
    Continue = _turn_button(
        replies, "more", "Continue", "⏩", discord.ButtonStyle.primary, replies.continue_reply
    )
    ShowReasoning = _turn_button(
        replies,
        "why",
        "Show reasoning",
        "💭",
        discord.ButtonStyle.secondary,
        replies.show_reasoning,
    )

    async def retry(interaction: discord.Interaction, turn_id: int) -> None:
        await replies.regenerate(interaction, turn_id, without_thinking=True)

    RetryWithoutThinking = _turn_button(
        replies, "nothink", "Retry without thinking", "⚡", discord.ButtonStyle.primary, retry
    )

    return ReplyButtons(
        stop=Stop,
        regenerate=Regenerate,
        more=Continue,
        reasoning=ShowReasoning,
        retry=RetryWithoutThinking,
        items=(Stop, Regenerate, Continue, ShowReasoning, RetryWithoutThinking),
    )


TurnAction = Callable[[discord.Interaction, int], Awaitable[None]]


def _turn_button(
    replies: ReplyControls,
    key: str,
    label: str,
    emoji: str,
    style: discord.ButtonStyle,
    action: TurnAction,
) -> type[discord.ui.DynamicItem[discord.ui.Button[Any]]]:
    """A button class acting on one answer (its turn id is in the custom id `reply:<key>:<id>`,
    so it works after a restart), checked against the access rules first."""

    class TurnButton(
        discord.ui.DynamicItem[discord.ui.Button[Any]],
        template=rf"reply:{key}:(?P<turn>[0-9]{{1,20}})",
    ):
        def __init__(self, turn_id: int) -> None:
            super().__init__(
                discord.ui.Button(
                    label=label, emoji=emoji, style=style, custom_id=f"reply:{key}:{turn_id}"
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
        ) -> TurnButton:
            return cls(int(match["turn"]))

        async def callback(self, interaction: discord.Interaction) -> None:
            if not await _refused(replies, interaction):
                await action(interaction, self.turn_id)

    TurnButton.__name__ = TurnButton.__qualname__ = label.title().replace(" ", "")
    return TurnButton


def controls(*items: discord.ui.Item[Any]) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    for item in items:
        view.add_item(item)
    return view
