"""Start-up time and streaming cost of the real bot against the doubles on loopback.

    python -m bench.streaming [--tokens 1500] [--rate 50] [--interval 1.0]

Prints: start-up time (fresh database, with migrations; and existing database), then for one
/chat reply of N tokens at R tokens/s: messages, edits per message, 429s from Discord, how soon
the first text showed after the first token, and how soon the final edit landed after the last.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import statistics
import tempfile
import time
from pathlib import Path

import discord
import yarl

from bot.app import OllamaBot, assemble
from bot.settings import Settings
from tests.doubles.fake_discord import FakeDiscord
from tests.doubles.fake_ollama import FakeOllama, Script

FOOTER = re.compile(r"\n-# .+ tokens/s$")


async def start(settings: Settings) -> tuple[OllamaBot, contextlib.AsyncExitStack, float]:
    stack = contextlib.AsyncExitStack()
    began = time.perf_counter()
    bot = await stack.enter_async_context(
        assemble(settings, guild_ready_timeout=0.05, chunk_guilds_at_startup=False)
    )
    task = asyncio.create_task(bot.start(settings.discord_token.get_secret_value()))  # type: ignore[union-attr]
    await bot.wait_until_ready()
    elapsed = time.perf_counter() - began

    async def stop() -> None:
        await bot.close()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    stack.push_async_callback(stop)
    return bot, stack, elapsed


async def main(tokens: int, rate: float, interval: float) -> None:
    async with FakeOllama() as ollama:
        fake = FakeDiscord()
        await fake.start()
        discord.http.Route.BASE = fake.api_base
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake.gateway_url)
        with tempfile.TemporaryDirectory() as tmp:
            settings = Settings(
                discord_token=fake.token,
                ollama_host=ollama.url,
                database_url=f"sqlite+aiosqlite:///{Path(tmp) / 'bot.db'}",
                edit_interval=interval,
            )
            _, stack, fresh = await start(settings)
            await stack.aclose()
            _, stack, warm = await start(settings)
            print(
                f"start-up to on_ready: fresh database {fresh * 1000:.0f} ms, existing {warm * 1000:.0f} ms"
            )

            reply = [f"tok{n} " for n in range(tokens)]
            ollama.script(Script(reply=reply, token_interval=1 / rate))
            interaction = await fake.slash_command("chat", {"message": "a long answer, please"})

            def pieces() -> list[str]:
                ids = [interaction.original_message_id, *interaction.followup_ids]
                return [i for i in ids if i is not None]

            await fake.wait_until(
                lambda: bool(pieces()) and bool(FOOTER.search(fake.messages[pieces()[-1]].content)),
                timeout=tokens / rate + 30,
            )
            request = next(r for r in ollama.requests if r.path == "/api/chat")
            first_token, last_token = request.sent[0], request.sent[-2]  # the last line is `done`
            messages = [fake.messages[i] for i in pieces()]
            edits = [len(m.edits) for m in messages]
            first_text = min(t for m in messages for t, _ in m.edits)
            final_edit = max(t for m in messages for t, _ in m.edits)
            await stack.aclose()
            await fake.close()

    print(f"reply: {tokens} tokens at {rate:g} tokens/s, edit interval {interval:g} s")
    print(
        f"messages: {len(messages)}; edits per message: {edits} (mean {statistics.mean(edits):.1f})"
    )
    print(f"429s from Discord: {len(fake.rate_limited)}")
    print(f"first text after first token: {(first_text - first_token) * 1000:.1f} ms")
    print(f"final edit after last token: {(final_edit - last_token) * 1000:.1f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=1500)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--interval", type=float, default=1.0)
    args = parser.parse_args()
    asyncio.run(main(args.tokens, args.rate, args.interval))
