"""The tool loop of one reply: the model's stream, the tools it asks for, their results sent
back, the model's stream again; at most `rounds` times.

It reads like a model stream (deltas, then one ChatStats) with `ToolStep`s between, so that the
reply pipeline's timeouts, Stop and shutdown hold for the whole loop: a tool call is cancelled
like a stream is."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bot.errors import BotError, ToolsUnsupported
from bot.ollama.protocol import ChatDelta, ChatMessage, ChatStats, Ollama, ToolCall
from bot.tools.registry import (
    Tool,
    ToolContext,
    ToolRegistry,
    ToolUse,
    definitions,
    quiet,
    run_tool,
)

Chat = Callable[
    [Sequence[ChatMessage], Sequence[Mapping[str, Any]]], AsyncGenerator[ChatDelta | ChatStats]
]
"""One model stream: the messages, and the tool definitions offered (none: no tools)."""

TOLD_CAP = 10_000


@dataclass(frozen=True, slots=True)
class ToolStep:
    """A tool call starting (`use` is None), or done (with what it found)."""

    status: str
    """What the reply shows meanwhile, e.g. "reading #general" (nothing in it pings)."""
    use: ToolUse | None = None


@dataclass(slots=True)
class ToolTrace:
    """The tool calls of one reply so far, and a note for its footer."""

    uses: list[ToolUse] = field(default_factory=list)
    note: str | None = None


class ToolRunner:
    """Runs the tool loop for replies in channels where tools are on."""

    def __init__(self, registry: ToolRegistry, *, gateway: Ollama, default: bool) -> None:
        self.registry = registry
        self._gateway = gateway
        self._default = default
        self._told: set[int] = set()  # channels told that their model can't use tools

    def enabled(self, channel_setting: bool | None) -> bool:
        return self._default if channel_setting is None else channel_setting

    async def stream(
        self,
        chat: Chat,
        messages: Sequence[ChatMessage],
        *,
        model: str,
        context: ToolContext,
        trace: ToolTrace,
        on_use: Callable[[list[ToolUse]], Awaitable[None]] | None = None,
    ) -> AsyncGenerator[ChatDelta | ChatStats | ToolStep]:
        """The reply with tools: like `chat`'s stream, with ToolSteps between rounds. The final
        ChatStats counts the completion tokens of every round."""
        tools: dict[str, Tool] = {}
        try:
            capable = "tools" in (await self._gateway.show(model)).capabilities
        except BotError:
            capable = True  # the request itself will say what is wrong
        if capable:
            tools = await self.registry.tools_for(context)
        else:
            self._cannot(model, context, trace)
        limits = self.registry.limits
        offered = definitions(tools)
        history = list(messages)
        completion = 0
        for round_ in range(limits.rounds + 1):
            if round_ == limits.rounds and offered:
                # Past the last round the model answers with what it has, offered no tools.
                offered = []
                trace.note = f"stopped after {limits.rounds} rounds of tools"
            calls: list[ToolCall] = []
            said: list[str] = []
            stats: ChatStats | None = None
            yielded = False
            try:
                async for item in chat(history, offered):
                    if isinstance(item, ChatStats):
                        stats = item
                        continue
                    calls.extend(item.tool_calls)
                    if item.content or item.thinking:
                        yielded = True
                        said.append(item.content)
                        yield ChatDelta(content=item.content, thinking=item.thinking)
            except ToolsUnsupported:
                if not offered or yielded or round_:
                    raise
                # /api/show said it could; Ollama says it can't: answer without tools.
                self._cannot(model, context, trace)
                offered, tools = [], {}
                async for item in chat(history, []):
                    yield item
                return
            assert stats is not None  # a model stream ends with its stats or raises
            completion += stats.completion_tokens or 0
            if not calls or not offered:
                yield dataclasses.replace(stats, completion_tokens=completion or None)
                return
            history.append(ChatMessage("assistant", "".join(said), tool_calls=tuple(calls)))
            for call in calls:
                tool = tools.get(call.name)
                status = quiet(tool.status(call.arguments) if tool else f"asking for {call.name}")
                yield ToolStep(status)
                use = await run_tool(tools, call.name, call.arguments, context, limits)
                trace.uses.append(use)
                if on_use is not None:
                    await on_use(trace.uses)
                yield ToolStep(status, use)
                history.append(ChatMessage("tool", use.result, tool_name=call.name))

    def _cannot(self, model: str, context: ToolContext, trace: ToolTrace) -> None:
        """Say once per channel that its model answers without tools."""
        if context.channel_id in self._told:
            return
        if len(self._told) >= TOLD_CAP:
            self._told.clear()
        self._told.add(context.channel_id)
        trace.note = f"tools are on here, but {quiet(model)} can't use them"
