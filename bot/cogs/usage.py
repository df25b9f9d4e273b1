"""/usage me|server: tokens and GPU time per member and model, and the daily quota."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot.conversation.usage import PERIODS, Quota, UsageService
from bot.errors import PermissionDenied
from bot.replies import role_ids
from bot.storage.usage import Total
from bot.ui.answers import answer_deferred
from bot.ui.checks import is_admin

if TYPE_CHECKING:
    from bot.client import OllamaBot

PERIOD_NAMES = {"day": "Today", "week": "Last 7 days", "month": "Last 30 days"}
TOP = 10


def seconds(ns: int) -> str:
    value = ns / 1e9
    if value < 60:
        return f"{value:.1f} s"
    if value < 3600:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.1f} h"


def total_text(total: Total) -> str:
    replies = "reply" if total.generations == 1 else "replies"
    return (
        f"{total.tokens:,} tokens ({total.prompt_tokens:,} read, "
        f"{total.completion_tokens:,} written) · {seconds(total.total_ns)} GPU · "
        f"{total.generations} {replies}"
    )


def summed(totals: Sequence[Total]) -> Total:
    return Total(
        "all",
        sum(t.generations for t in totals),
        sum(t.prompt_tokens for t in totals),
        sum(t.completion_tokens for t in totals),
        sum(t.total_ns for t in totals),
    )


def render_member(periods: dict[str, list[Total]], quota: Quota) -> str:
    lines = ["**Your use of the models**"]
    for period in PERIODS:
        lines.append(f"{PERIOD_NAMES[period]}: {total_text(summed(periods[period]))}")
    month = periods["month"]
    if month:
        lines += ["", "Per model, last 30 days:"]
        lines += [f"- `{t.key}` · {total_text(t)}" for t in month[:TOP]]
    if quota.limit is not None:
        lines += [
            "",
            f"Daily quota: {quota.used:,} of {quota.limit:,} tokens used; "
            f"it resets <t:{int(quota.resets.timestamp())}:R>.",
        ]
    return "\n".join(lines)


def render_guild(period: str, users: Sequence[Total], models: Sequence[Total]) -> str:
    if not users:
        return f"**Use in this server** · {PERIOD_NAMES[period].lower()}\nNo replies yet."
    lines = [
        f"**Use in this server** · {PERIOD_NAMES[period].lower()}",
        f"In all: {total_text(summed(users))}",
        "",
        "Top members:",
        *(f"{n}. <@{t.key}> · {total_text(t)}" for n, t in enumerate(users[:TOP], start=1)),
        "",
        "Top models:",
        *(f"{n}. `{t.key}` · {total_text(t)}" for n, t in enumerate(models[:TOP], start=1)),
    ]
    return "\n".join(lines)


class UsageCog(commands.GroupCog, group_name="usage", group_description="Who used how much"):
    def __init__(self, bot: OllamaBot, usage: UsageService) -> None:
        self.bot = bot
        self.usage = usage
        super().__init__()

    @app_commands.command(name="me", description="Your tokens and GPU time, and your quota.")
    async def me(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        periods = await self.usage.of_member(interaction.user.id)
        quota = self.usage.quota(interaction.user.id, role_ids(interaction.user))
        await answer_deferred(interaction, render_member(periods, quota))

    @app_commands.command(name="server", description="Top members and models (Manage Server).")
    @app_commands.describe(period="Today, the last 7 days or the last 30 days")
    @app_commands.guild_only()
    async def server(
        self,
        interaction: discord.Interaction,
        period: Literal["day", "week", "month"] = "day",
    ) -> None:
        # Checked here, not only by Discord's default permissions: a server can override those.
        if interaction.guild_id is None or not is_admin(interaction):
            raise PermissionDenied("Only members with Manage Server can see the server's usage.")
        await interaction.response.defer(ephemeral=True, thinking=True)
        users, models = await self.usage.of_guild(interaction.guild_id, period)
        await answer_deferred(interaction, render_guild(period, users, models))
