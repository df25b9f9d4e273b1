"""MCP servers the owner lists (`mcp_servers`): their tools are offered to models as
`<server>__<tool>`, in the guilds each server is for, through the official `mcp` SDK's client
(stdio: a program the bot starts; or a streamable HTTP URL).

Each server is connected on first use and kept: a task of its own holds the SDK's client (its
context must be left in the task that entered it), and tool calls go through that client from
the replies' tasks. A server that dies or fails to start is tried again at the next reply."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from bot.settings import McpServerSettings
from bot.tools.registry import Tool, ToolContext, ToolError, ToolOutput

if TYPE_CHECKING:
    import mcp  # imported on first use: the SDK costs ~0.7 s and tens of MiB at start-up

log = logging.getLogger(__name__)

RETRY_AFTER = 30.0
"""Seconds before a server that failed to start is tried again."""
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


class McpTool:
    """One tool of an MCP server, as the model sees it."""

    def __init__(self, server: McpServer, tool: mcp.Tool) -> None:
        self._server = server
        self.remote_name = tool.name
        self.name = f"{server.name}__{_UNSAFE.sub('_', tool.name)}"[:64]
        self.description = (tool.description or tool.title or tool.name)[:1024]
        self.parameters: Mapping[str, Any] = tool.input_schema or {"type": "object"}

    def status(self, arguments: Mapping[str, Any]) -> str:
        return f"asking {self._server.name} ({self.remote_name[:40]})"

    async def run(self, arguments: Mapping[str, Any], context: ToolContext) -> ToolOutput:
        return ToolOutput(await self._server.call(self.remote_name, dict(arguments)))


class McpServer:
    def __init__(self, settings: McpServerSettings, *, timeout: float) -> None:
        self.settings = settings
        self.name = settings.name
        self._timeout = timeout
        self._client: mcp.Client | None = None
        self._tools: list[McpTool] = []
        self._holder: asyncio.Task[None] | None = None
        self._closing: asyncio.Event | None = None
        self._lock: asyncio.Lock | None = None
        self._failed_at: float | None = None

    def serves(self, guild_id: int | None) -> bool:
        if guild_id is None:
            return False  # never in DMs
        return not self.settings.guild_ids or guild_id in self.settings.guild_ids

    def _target(self) -> mcp.StdioServerParameters | str:
        if self.settings.url is not None:
            return self.settings.url
        assert self.settings.command is not None  # settings require one or the other
        import mcp

        return mcp.StdioServerParameters(command=self.settings.command, args=self.settings.args)

    async def tools(self) -> list[McpTool]:
        """The server's tools, connecting first if needed; [] while it cannot be reached."""
        try:
            await self._connected()
        except ToolError:
            return []
        return list(self._tools)

    async def call(self, name: str, arguments: dict[str, Any]) -> str:
        import mcp

        client = await self._connected()
        try:
            result = await client.call_tool(name, arguments)
        except mcp.MCPError as exc:
            log.info("MCP server %s refused %s: %s", self.name, name, exc)
            raise ToolError(f"The {self.name} server refused the call: {exc}") from None
        except (OSError, EOFError, RuntimeError) as exc:
            log.warning("MCP server %s failed during %s: %s", self.name, name, exc)
            await self.close()
            raise ToolError(f"The {self.name} server stopped answering.") from None
        parts: list[str] = []
        for block in result.content:
            text = getattr(block, "text", None)
            parts.append(text if isinstance(text, str) else f"[{block.type} content not shown]")
        text = "\n".join(parts) or "(no output)"
        if result.is_error:
            raise ToolError(f"The tool reported an error: {text}")
        return text

    async def _connected(self) -> mcp.Client:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._client is not None and self._holder is not None and not self._holder.done():
                return self._client
            now = time.monotonic()
            if self._failed_at is not None and now - self._failed_at < RETRY_AFTER:
                raise ToolError(f"The {self.name} server is not available.")
            ready: asyncio.Future[mcp.Client] = asyncio.get_running_loop().create_future()
            ready.add_done_callback(lambda f: f.cancelled() or f.exception())  # read once
            self._closing = asyncio.Event()
            self._holder = asyncio.create_task(self._hold(ready, self._closing))
            try:
                async with asyncio.timeout(self._timeout):
                    return await asyncio.shield(ready)
            except Exception as exc:
                self._failed_at = time.monotonic()
                self._holder.cancel()
                log.warning("MCP server %s could not be started: %s", self.name, exc)
                raise ToolError(f"The {self.name} server is not available.") from None

    async def _hold(self, ready: asyncio.Future[mcp.Client], closing: asyncio.Event) -> None:
        import mcp

        try:
            async with mcp.Client(self._target()) as client:
                listed = await client.list_tools()
                self._tools = [McpTool(self, tool) for tool in listed.tools]
                self._client = client
                self._failed_at = None
                log.info("MCP server %s: %d tools", self.name, len(self._tools))
                if not ready.done():
                    ready.set_result(client)
                await closing.wait()
        except asyncio.CancelledError:
            if not ready.done():
                ready.set_exception(ToolError(f"The {self.name} server was stopped."))
            raise
        except Exception as exc:  # it could not start, or it died: tried again later
            if not ready.done():
                ready.set_exception(exc)
            log.warning("MCP server %s ended: %s", self.name, exc)
        finally:
            self._client = None

    async def close(self) -> None:
        holder, self._holder = self._holder, None
        if self._closing is not None:
            self._closing.set()
        if holder is not None and not holder.done():
            try:
                async with asyncio.timeout(5):
                    await asyncio.shield(holder)
            except (TimeoutError, Exception):
                holder.cancel()


class McpTools:
    """The `ToolSource` of every configured MCP server."""

    def __init__(self, servers: Sequence[McpServer]) -> None:
        self.servers = list(servers)

    async def tools_for(self, context: ToolContext) -> Sequence[Tool]:
        serving = [s for s in self.servers if s.serves(context.guild_id)]
        listed = await asyncio.gather(*(server.tools() for server in serving))
        return [tool for tools in listed for tool in tools]

    async def close(self) -> None:
        await asyncio.gather(*(server.close() for server in self.servers))
