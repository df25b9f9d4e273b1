"""`search_knowledge`: the server's knowledge base (bot/knowledge) as a tool, searched for the
asking member: only chunks from channels they can read, as a chat turn's retrieval does."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

from bot.tools.registry import Tool, ToolContext, ToolError, ToolOutput

CHUNK_CHARS = 1500
"""A chunk longer than this is cut in the result (the result is capped in tokens too)."""

CanRead = Callable[[int], bool]


class Found(Protocol):
    """One chunk found: its text and where it came from ("handbook.pdf p. 4")."""

    @property
    def text(self) -> str: ...

    @property
    def label(self) -> str: ...


class KnowledgeSearch(Protocol):
    """What the tool needs of the knowledge service."""

    def has_knowledge(self, guild_id: int | None) -> bool: ...

    async def find(self, guild_id: int, query: str, can_read: CanRead) -> Sequence[Found]: ...


class SearchKnowledge:
    name = "search_knowledge"
    description = (
        "Search this server's knowledge base (documents and messages its members added) for "
        "passages about `query`; each passage comes with its source."
    )
    parameters: Mapping[str, Any] = {
        "type": "object",
        "required": ["query"],
        "properties": {
            "query": {"type": "string", "description": "What to look for, in a few words"},
        },
    }

    def __init__(
        self,
        knowledge: KnowledgeSearch,
        readers: Callable[[ToolContext], Awaitable[CanRead]],
    ) -> None:
        self._knowledge = knowledge
        self._readers = readers  # which channels the asking member can read, asked per call

    def status(self, arguments: Mapping[str, Any]) -> str:
        return "searching the knowledge base…"

    async def run(self, arguments: Mapping[str, Any], context: ToolContext) -> ToolOutput:
        query = " ".join(str(arguments.get("query") or "").split())[:300]
        if not query:
            raise ToolError("Say what to look for (`query`).")
        guild_id = context.guild_id
        if guild_id is None or not self._knowledge.has_knowledge(guild_id):
            raise ToolError("This server has no knowledge base (nothing was added with /kb add).")
        found = await self._knowledge.find(guild_id, query, await self._readers(context))
        if not found:
            return ToolOutput(f"Nothing in the knowledge base matches {query!r}.")
        lines = [f"Passages from the server's knowledge base about {query!r}:"]
        for number, passage in enumerate(found, start=1):
            text = passage.text.strip()
            if len(text) > CHUNK_CHARS:
                text = text[: CHUNK_CHARS - 1] + "…"
            lines.append(f"[{number}] ({passage.label})\n{text}")
        return ToolOutput("\n\n".join(lines), label="knowledge base")


class KnowledgeTools:
    """A tool source: `search_knowledge` is offered only in a server that has knowledge."""

    def __init__(self, tool: SearchKnowledge, knowledge: KnowledgeSearch) -> None:
        self._tool = tool
        self._knowledge = knowledge

    async def tools_for(self, context: ToolContext) -> Sequence[Tool]:
        return [self._tool] if self._knowledge.has_knowledge(context.guild_id) else []
