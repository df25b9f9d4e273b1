"""The tools a model may call while it answers: what a tool is, the registry of those offered,
and how one call is run (time limit, output cap, nothing in it that could ping anyone).

A tool is plain values in, plain values out: it never writes to Discord. One asked by a model
runs with the asking member's `ToolContext` and answers with text for the model (a refusal is
text too: the model reads why and tells the member)."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

log = logging.getLogger(__name__)

CHARS_PER_TOKEN = 4
"""For capping tool output in tokens without a tokenizer (as the context estimate does)."""


@dataclass(frozen=True, slots=True)
class ToolContext:
    """Who asked, and where: a tool acts for this member only, with their permissions."""

    user_id: int
    channel_id: int
    guild_id: int | None


@dataclass(frozen=True, slots=True)
class ToolOutput:
    """What a tool found: `text` for the model; `label` and `link` for the reply's footer (what
    it read, and where a member can see it too)."""

    text: str
    label: str | None = None
    link: str | None = None


class ToolError(Exception):
    """A call the tool refuses or cannot do; `str(error)` is told to the model as the result."""


class Tool(Protocol):
    """One tool. `parameters` is the JSON schema of its arguments (Ollama's `function`
    `parameters`)."""

    @property
    def name(self) -> str: ...

    @property
    def description(self) -> str: ...

    @property
    def parameters(self) -> Mapping[str, Any]: ...

    def status(self, arguments: Mapping[str, Any]) -> str:
        """What the reply shows while the call runs, e.g. "reading #general"."""
        ...

    async def run(self, arguments: Mapping[str, Any], context: ToolContext) -> ToolOutput: ...


class ToolSource(Protocol):
    """Tools that come and go (an MCP server's), listed anew for each reply."""

    async def tools_for(self, context: ToolContext) -> Sequence[Tool]: ...


@dataclass(frozen=True, slots=True)
class ToolUse:
    """One tool call of a reply, as stored with the turn and listed in its footer."""

    name: str
    arguments: Mapping[str, Any]
    result: str
    ok: bool
    label: str | None = None
    link: str | None = None

    def stored(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "arguments": dict(self.arguments),
            "result": self.result,
            "ok": self.ok,
            **({"label": self.label} if self.label else {}),
            **({"link": self.link} if self.link else {}),
        }


@dataclass(frozen=True, slots=True)
class ToolLimits:
    rounds: int = 6
    """Rounds of tool calls per reply."""
    timeout: float = 20.0
    """Seconds per call."""
    output_tokens: int = 1000
    """Most tokens of one result."""


_MENTION = re.compile(r"<(@[!&]?|#)(\d+)>")


def quiet(text: str) -> str:
    """`text` with nothing in it that Discord would turn into a ping (user, role, @everyone,
    @here mentions are broken with a zero-width space; the reply's allowed_mentions ping no one
    anyway, this keeps the text itself harmless wherever it is shown or repeated)."""
    text = _MENTION.sub(lambda m: f"<{m.group(1)}\u200b{m.group(2)}>", text)
    return text.replace("@everyone", "@\u200beveryone").replace("@here", "@\u200bhere")


def cap_tokens(text: str, tokens: int) -> str:
    limit = tokens * CHARS_PER_TOKEN
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n[… cut: the result was longer than {tokens} tokens]"


@dataclass(slots=True)
class ToolRegistry:
    """The tools offered to models: built-in ones registered once, and sources listed per
    reply. Adding a tool is one `register` in the composition root."""

    limits: ToolLimits = field(default_factory=ToolLimits)
    _tools: dict[str, Tool] = field(default_factory=dict)
    _sources: list[ToolSource] = field(default_factory=list)

    def register(self, tool: Tool) -> None:
        if tool.name in self._tools:
            raise ValueError(f"a tool named {tool.name!r} is registered already")
        self._tools[tool.name] = tool

    def add_source(self, source: ToolSource) -> None:
        self._sources.append(source)

    @property
    def names(self) -> list[str]:
        return list(self._tools)

    async def tools_for(self, context: ToolContext) -> dict[str, Tool]:
        """Every tool this member may have the model call here, by name."""
        tools = dict(self._tools)
        for source in self._sources:
            for tool in await source.tools_for(context):
                tools.setdefault(tool.name, tool)
        return tools


def definitions(tools: Mapping[str, Tool]) -> list[dict[str, Any]]:
    """The tools as Ollama's `tools` field takes them."""
    return [
        {
            "type": "function",
            "function": {
                "name": tool.name,
                "description": tool.description,
                "parameters": dict(tool.parameters),
            },
        }
        for tool in tools.values()
    ]


async def run_tool(
    tools: Mapping[str, Tool],
    name: str,
    arguments: Mapping[str, Any],
    context: ToolContext,
    limits: ToolLimits,
) -> ToolUse:
    """Run one call within the time limit; every failure becomes a result the model reads.
    Cancellation (Stop, shutdown) is not caught: it ends the reply."""
    tool = tools.get(name)
    if tool is None:
        return ToolUse(name, arguments, f"There is no tool named {name!r}.", ok=False)
    try:
        async with asyncio.timeout(limits.timeout):
            output = await tool.run(arguments, context)
    except TimeoutError:
        text = f"The tool took longer than {limits.timeout:g} seconds and was stopped."
        return ToolUse(name, arguments, text, ok=False)
    except ToolError as exc:
        return ToolUse(name, arguments, quiet(cap_tokens(str(exc), limits.output_tokens)), False)
    except (KeyError, TypeError, ValueError) as exc:
        log.info("tool %s refused its arguments: %s", name, exc)
        text = f"The arguments were not right for this tool: {json.dumps(dict(arguments))[:200]}"
        return ToolUse(name, arguments, text, ok=False)
    except Exception:
        log.exception("tool %s failed", name)
        return ToolUse(name, arguments, "The tool failed; try something else.", ok=False)
    text = quiet(cap_tokens(output.text, limits.output_tokens))
    label = quiet(output.label) if output.label else None
    return ToolUse(name, arguments, text, True, label, output.link)
