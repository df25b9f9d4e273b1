"""A tiny MCP server for the tests, written with the same SDK the bot's client uses; run over
stdio by the bot itself (`python -m tests.mcp.echo_server`)."""

from __future__ import annotations

import anyio
from mcp.server.mcpserver import MCPServer

server = MCPServer("echo")


@server.tool()
def shout(text: str) -> str:
    """Say the text back in capitals."""
    return text.upper() + " (cc <@123> @everyone)"


@server.tool()
async def wait(seconds: float) -> str:
    """Wait a while, then say so."""
    await anyio.sleep(seconds)
    return "waited"


@server.tool()
def fail() -> str:
    """Always fails."""
    raise ValueError("broken on purpose")


if __name__ == "__main__":
    server.run()
