"""/history show, /history export, /history clear."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import discord
from discord import app_commands
from discord.ext import commands

from bot.conversation.splitter import DISCORD_LIMIT
from bot.storage.history import HistoryStore, StoredTurn
from bot.storage.models import Role, TurnStatus
from bot.ui.answers import answer_deferred
from bot.ui.checks import NotAllowed
from bot.ui.targets import NO_PINGS

if TYPE_CHECKING:
    from bot.client import OllamaBot

LINE_CHARS = 300
F = TypeVar("F", bound=Callable[..., Any])


def render_recent(turns: list[StoredTurn], total: int) -> str:
    """The newest turns, one short paragraph each, within one Discord message."""
    if not turns:
        return "This channel has no conversation yet. Start one with `/chat` or a mention."
    header = f"**Last {len(turns)} of {total} turns in this channel**"
    lines = [_line(turn) for turn in turns]
    # Drop the oldest lines until the whole fits in one message.
    while lines and len(header) + sum(len(line) + 1 for line in lines) > DISCORD_LIMIT:
        lines.pop(0)
    return "\n".join([header, *lines])


def _line(turn: StoredTurn) -> str:
    text = " ".join(turn.content.split()) or "*(empty)*"
    if len(text) > LINE_CHARS:
        text = text[: LINE_CHARS - 1] + "…"
    model = turn.persona or turn.model  # a persona's reply is labelled with the persona
    who = f"{turn.author_name} ({model})" if turn.role == Role.ASSISTANT else turn.author_name
    mark = "" if turn.status == TurnStatus.COMPLETE else f" *[{turn.status}]*"
    return f"**{who}**{mark}: {text}"


ToolCalls = dict[int, list[dict[str, Any]]]


def export_markdown(
    channel_name: str,
    turns: list[StoredTurn],
    reasonings: dict[int, str] | None = None,
    tools: ToolCalls | None = None,
) -> str:
    """The conversation as Markdown; a reply's reasoning (if it thought) folded under it, and
    the tools it called before its answer."""
    reasonings = reasonings or {}
    out = [f"# Conversation in #{channel_name}", ""]
    for turn in turns:
        when = turn.created_at.strftime("%Y-%m-%d %H:%M:%S")
        who = turn.author_name
        if turn.role == Role.ASSISTANT:
            who += f" · {turn.model}"
        status = "" if turn.status == TurnStatus.COMPLETE else f" · {turn.status}"
        out += [f"## {who} — {when}{status}", ""]
        if reasoning := reasonings.get(turn.id):
            out += ["<details><summary>Reasoning</summary>", "", reasoning, "", "</details>", ""]
        for used in (tools or {}).get(turn.id, []):  # what the model looked up first
            arguments = json.dumps(used.get("arguments") or {}, ensure_ascii=False)
            result = str(used.get("result", "")).replace("\n", "\n> ")
            out += [f"> 🔧 {used.get('name')} {arguments}", f"> {result}", ""]
        out += [turn.content or "*(empty)*", ""]
        if turn.error:
            out += [f"> {turn.error}", ""]
    return "\n".join(out)


def export_json(
    channel_id: int,
    turns: list[StoredTurn],
    reasonings: dict[int, str] | None = None,
    tools: ToolCalls | None = None,
) -> str:
    reasonings = reasonings or {}
    rows = [
        {
            "id": turn.id,
            "role": turn.role,
            "author_id": str(turn.author_id),
            "author_name": turn.author_name,
            "content": turn.content,
            "reasoning": reasonings.get(turn.id),
            "model": turn.model,
            "persona": turn.persona,
            "status": turn.status,
            "error": turn.error,
            "prompt_tokens": turn.prompt_tokens,
            "completion_tokens": turn.completion_tokens,
            "total_duration_ns": turn.total_duration_ns,
            "eval_duration_ns": turn.eval_duration_ns,
            "created_at": turn.created_at.isoformat(),
            **({"tool_calls": tools[turn.id]} if tools and turn.id in tools else {}),
        }
        for turn in turns
    ]
    return json.dumps({"channel_id": str(channel_id), "turns": rows}, ensure_ascii=False, indent=2)


def readers() -> Callable[[F], F]:
    """Only someone who may read this channel's message history may read the bot's copy of it."""

    def predicate(interaction: discord.Interaction) -> bool:
        if not interaction.permissions.read_message_history:
            raise NotAllowed("You need the Read Message History permission in this channel.")
        return True

    return app_commands.check(predicate)


def clearers() -> Callable[[F], F]:
    """Manage Messages in a server channel; in a DM (between the bot and one user), that user."""

    def predicate(interaction: discord.Interaction) -> bool:
        if interaction.guild_id is None:
            return True
        if not interaction.permissions.manage_messages:
            raise app_commands.MissingPermissions(["manage_messages"])
        return True

    return app_commands.check(predicate)


class HistoryCog(
    commands.GroupCog, group_name="history", group_description="This channel's conversation"
):
    def __init__(self, bot: OllamaBot, history: HistoryStore) -> None:
        self.bot = bot
        self.history = history
        super().__init__()

    @app_commands.command(name="show", description="Show the last turns of this channel.")
    @readers()
    async def show(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)  # before any I/O
        channel_id = interaction.channel_id or 0
        turns = await self.history.newest(channel_id, self.bot.settings.history_show_turns)
        total = await self.history.count(channel_id)
        await answer_deferred(interaction, render_recent(turns, total))

    @app_commands.command(name="export", description="This channel's whole conversation as files.")
    @readers()
    async def export(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        channel_id = interaction.channel_id or 0
        turns = await self.history.all(channel_id)
        if not turns:
            await answer_deferred(interaction, "This channel has no conversation to export.")
            return
        name = getattr(interaction.channel, "name", None) or str(channel_id)
        reasonings = await self.history.reasonings(channel_id)
        tools = await self.history.tool_calls_of(channel_id)
        markdown = export_markdown(name, turns, reasonings, tools).encode()
        data = export_json(channel_id, turns, reasonings, tools).encode()
        files = [
            discord.File(io.BytesIO(markdown), f"history-{channel_id}.md"),
            discord.File(io.BytesIO(data), f"history-{channel_id}.json"),
        ]
        await answer_deferred(interaction, f"{len(turns)} turns from this channel.", files=files)

    @app_commands.command(name="clear", description="Delete this channel's conversation.")
    @clearers()
    async def clear(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(thinking=True)  # before any I/O
        deleted = await self.history.clear(interaction.channel_id or 0)
        where = "this channel's" if interaction.guild_id is not None else "our"
        await interaction.edit_original_response(
            content=f"🧹 {interaction.user.mention} cleared {where} conversation "
            f"({deleted} turns deleted). The next message starts afresh.",
            allowed_mentions=NO_PINGS,
        )
