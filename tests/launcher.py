"""Run the real bot in a process of its own, pointed at the doubles on loopback:

    python -m tests.launcher API_BASE GATEWAY_URL [bot command ...]   (default command: run)

Settings come from the environment as usual (DISCORD_TOKEN, OLLAMA_HOST, DATABASE_URL, BOT_*).
The two seams are the public class attributes discord.py reads its URLs from (see
tests/conftest.py); nothing else differs from `python -m bot run`. With LAUNCHER_MODULES_FILE set,
the names of the modules loaded by the end are written there at exit (one a line): the start-up
import tests read it."""

from __future__ import annotations

import atexit
import os
import sys
from pathlib import Path

import discord
import yarl

from bot.__main__ import main


def _write_modules(path: str) -> None:
    Path(path).write_text("\n".join(sorted(sys.modules)))


if __name__ == "__main__":
    if modules_file := os.environ.get("LAUNCHER_MODULES_FILE"):
        atexit.register(_write_modules, modules_file)
    api_base, gateway, *command = sys.argv[1:]
    discord.http.Route.BASE = api_base
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway)
    sys.exit(main(command or ["run"]))
