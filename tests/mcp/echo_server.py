"""A tiny MCP server for the tests, written with the same SDK the bot's client uses: over stdio
when the bot starts it (`python tests/mcp/echo_server.py`), or over streamable HTTP on
127.0.0.1 with `--http PORT`."""

from __future__ import annotations

import sys

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
    if sys.argv[1:2] == ["--http"]:
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run()
