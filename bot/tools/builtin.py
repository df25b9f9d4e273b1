"""The built-in tools: `current_time`, and `read_channel` / `open_message`, which read Discord
for the asking member through a `MessageSource` (bot/ui/reading.py), with that member's
permissions, never the bot's."""

from __future__ import annotations

import zoneinfo
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from bot.tools.registry import ToolContext, ToolError, ToolOutput

READ_LIMIT_MAX = 50
MESSAGE_CHARS = 500
"""A message longer than this is cut in a channel read (the result is capped in tokens too)."""
NO_CONTENT_NOTE = (
    "Note: this bot does not have Discord's Message Content intent, so the text of other "
    "people's messages is empty to it (only its own messages, and those that mention it, "
    "show their text). Say so if the member asked about their content."
)


@dataclass(frozen=True, slots=True)
class ReadMessage:
    author: str
    content: str
    created_at: datetime
    link: str
    hidden: bool = False
    """Discord withheld its text (no Message Content intent)."""


@dataclass(frozen=True, slots=True)
class ReadResult:
    """Messages of one channel the member may read, oldest first."""

    channel: str
    """Its name, e.g. "#general"."""
    link: str
    messages: Sequence[ReadMessage]


class MessageSource(Protocol):
    """Reads Discord for a member. Raises ToolError (with a sentence for the model) when the
    member may not read what they ask for, or it does not exist."""

    async def read_channel(self, context: ToolContext, channel: str, limit: int) -> ReadResult: ...

    async def open_message(self, context: ToolContext, link: str) -> ReadResult: ...


def _render(result: ReadResult) -> str:
    lines = [f"Messages in {result.channel} (oldest first):"]
    hidden = False
    for message in result.messages:
        when = message.created_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
        text = " ".join(message.content.split())
        if len(text) > MESSAGE_CHARS:
            text = text[: MESSAGE_CHARS - 1] + "…"
        if message.hidden:
            hidden = True
            text = "(text not visible to the bot)"
        lines.append(f"[{when}] {message.author}: {text or '(no text)'}")
    if not result.messages:
        lines.append("(no messages)")
    if hidden:
        lines.append(NO_CONTENT_NOTE)
    return "\n".join(lines)


class CurrentTime:
    name = "current_time"
    description = "The current date and time, in the bot's time zone."
    parameters: Mapping[str, Any] = {"type": "object", "properties": {}}

    def __init__(self, timezone: str, clock: Callable[[], datetime] | None = None) -> None:
        self._zone = zoneinfo.ZoneInfo(timezone)
        self._clock = clock or (lambda: datetime.now(UTC))

    def status(self, arguments: Mapping[str, Any]) -> str:
        return "checking the time"

    async def run(self, arguments: Mapping[str, Any], context: ToolContext) -> ToolOutput:
        now = self._clock().astimezone(self._zone)
        return ToolOutput(now.strftime(f"%A %Y-%m-%d %H:%M:%S ({self._zone.key}, UTC%z)"))


class ReadChannel:
    name = "read_channel"
    description = (
        "Read the latest messages of a channel of this server that the person asking can read. "
        "`channel` is its name (like general) or mention."
    )
    parameters: Mapping[str, Any] = {
        "type": "object",
        "required": ["channel"],
        "properties": {
            "channel": {"type": "string", "description": "The channel's name, e.g. general"},
            "limit": {
                "type": "integer",
                "description": f"How many of the latest messages (1-{READ_LIMIT_MAX}, default 20)",
            },
        },
    }

    def __init__(self, source: MessageSource) -> None:
        self._source = source

    def status(self, arguments: Mapping[str, Any]) -> str:
        channel = str(arguments.get("channel", "")).strip().lstrip("#")[:50]
        return f"reading #{channel}"

    async def run(self, arguments: Mapping[str, Any], context: ToolContext) -> ToolOutput:
        channel = str(arguments.get("channel") or "").strip()
        if not channel:
            raise ToolError("Say which channel to read (its name).")
        try:
            limit = int(arguments.get("limit") or 20)
        except (TypeError, ValueError):
            limit = 20
        limit = max(1, min(limit, READ_LIMIT_MAX))
        result = await self._source.read_channel(context, channel, limit)
        return ToolOutput(_render(result), label=result.channel, link=result.link)


class OpenMessage:
    name = "open_message"
    description = (
        "Open a Discord message from its link (https://discord.com/channels/...), if the "
        "person asking can read it."
    )
    parameters: Mapping[str, Any] = {
        "type": "object",
        "required": ["link"],
        "properties": {"link": {"type": "string", "description": "The message's link"}},
    }

    def __init__(self, source: MessageSource) -> None:
        self._source = source

    def status(self, arguments: Mapping[str, Any]) -> str:
        return "opening a message"

    async def run(self, arguments: Mapping[str, Any], context: ToolContext) -> ToolOutput:
        link = str(arguments.get("link") or "").strip()
        result = await self._source.open_message(context, link)
        text = _render(result)
        label = f"message in {result.channel}"
        return ToolOutput(
            text, label=label, link=result.messages[0].link if result.messages else None
        )
