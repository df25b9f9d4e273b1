"""Run the real bot in a process of its own, pointed at the doubles on loopback:

    python -m tests.launcher API_BASE GATEWAY_URL [bot command ...]   (default command: run)

Settings come from the environment as usual (DISCORD_TOKEN, OLLAMA_HOST, DATABASE_URL, BOT_*).
The two seams are the public class attributes discord.py reads its URLs from (see
tests/conftest.py); nothing else differs from `python -m bot run`."""

from __future__ import annotations

import sys

import discord
import yarl

from bot.__main__ import main

if __name__ == "__main__":
    api_base, gateway, *command = sys.argv[1:]
    discord.http.Route.BASE = api_base
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway)
    sys.exit(main(command or ["run"]))
