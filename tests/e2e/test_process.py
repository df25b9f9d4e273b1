"""The bot as a separate process: a clean stop on SIGTERM, and a hard kill that loses nothing."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from bot.storage.engine import sqlite_path
from tests.conftest import BotRunner
from tests.doubles.fake_discord import FakeDiscord
from tests.doubles.fake_ollama import FakeOllama, Script
from tests.e2e.test_chat import final

ROOT = Path(__file__).resolve().parents[2]


@asynccontextmanager
async def bot_process(
    fake_discord: FakeDiscord,
    fake_ollama: FakeOllama,
    database_url: str,
    *,
    extra_env: dict[str, str] | None = None,
    **settings: str,
) -> AsyncIterator[asyncio.subprocess.Process]:
    env = {
        **(extra_env or {}),
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(ROOT),
        "DISCORD_TOKEN": fake_discord.token,
        "OLLAMA_HOST": fake_ollama.url,
        "DATABASE_URL": database_url,
        **{f"BOT_{key.upper()}": value for key, value in settings.items()},
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.launcher",
        fake_discord.api_base,
        fake_discord.gateway_url,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        await fake_discord.wait_ready(timeout=30)
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def exit_code(process: asyncio.subprocess.Process, timeout: float) -> tuple[int, str]:
    output, _ = await asyncio.wait_for(process.communicate(), timeout)
    return process.returncode if process.returncode is not None else -1, output.decode()


def rows(database_url: str, query: str) -> list[tuple[object, ...]]:
    path = sqlite_path(database_url)
    assert path is not None
    with sqlite3.connect(path) as conn:
        return conn.execute(query).fetchall()


async def test_sigterm_finishes_short_replies_and_cuts_long_ones_short(
    fake_discord: FakeDiscord, fake_ollama: FakeOllama, database_url: str
) -> None:
    fake_ollama.script(
        Script(reply=[f"short{n} " for n in range(5)], token_interval=0.1, model="llama3.2:latest"),
        Script(reply=[f"long{n} " for n in range(400)], token_interval=0.1, model="qwen3:latest"),
    )
    async with bot_process(  # two models: Ollama runs one generation of each at once
        fake_discord, fake_ollama, database_url, shutdown_grace="1.5", max_parallel_generations="2"
    ) as process:
        short = await fake_discord.slash_command(
            "chat", {"message": "quick one"}, channel_id=fake_discord.channel_ids[0]
        )
        long = await fake_discord.slash_command(
            "chat",
            {"message": "long one", "model": "qwen3"},
            channel_id=fake_discord.channel_ids[1],
        )
        await fake_ollama.wait_until(lambda: fake_ollama.active_generations == 2, timeout=10)
        process.send_signal(signal.SIGTERM)
        code, output = await exit_code(process, 20)
    assert code == 0, output
    assert "finishing the replies in progress" in output
    assert fake_discord.token not in output
    short_message = fake_discord.messages[short.original_message_id or ""]
    long_message = fake_discord.messages[long.original_message_id or ""]
    assert final(short_message)
    assert "short4" in short_message.content
    assert "cut short" in long_message.content
    statuses = dict(rows(database_url, "select content, status from turns where role = 'user'"))
    assert set(statuses) == {"quick one", "long one"}
    replies = dict(rows(database_url, "select model, status from turns where role = 'assistant'"))
    assert replies == {"llama3.2": "complete", "qwen3": "incomplete"}
    assert fake_ollama.cancelled == 1


async def test_a_hard_kill_loses_no_committed_turn_and_marks_partial_ones(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama, database_url: str
) -> None:
    channels = fake_discord.channel_ids[:3]
    fake_ollama.script(*[Script(reply=f"done {n}") for n in range(3)])
    fake_ollama.script(
        *[Script(reply=[f"w{n} " for n in range(500)], token_interval=0.02) for _ in range(3)]
    )
    fake_ollama.parallel = 3  # OLLAMA_NUM_PARALLEL=3
    async with bot_process(
        fake_discord, fake_ollama, database_url, ollama_num_parallel="3"
    ) as process:
        for n, channel in enumerate(channels):
            interaction = await fake_discord.slash_command(
                "chat", {"message": f"kept {n}"}, channel_id=channel
            )
            await fake_discord.wait_until(
                lambda i=interaction: (
                    i.original_message_id is not None
                    and final(fake_discord.messages[i.original_message_id])
                ),
                timeout=10,
            )
        for n, channel in enumerate(channels):
            await fake_discord.slash_command("chat", {"message": f"cut {n}"}, channel_id=channel)
        await fake_ollama.wait_until(lambda: fake_ollama.active_generations == 3, timeout=10)
        await asyncio.sleep(0.3)  # writing: replies are streaming and turns being stored
        process.send_signal(signal.SIGKILL)
        await process.wait()

    assert rows(database_url, "pragma integrity_check") == [("ok",)]
    committed = rows(
        database_url, "select content from turns where role = 'assistant' and status = 'complete'"
    )
    assert sorted(c for (c,) in committed) == ["done 0", "done 1", "done 2"]
    asked = rows(database_url, "select content from turns where role = 'user' order by id")
    asked_in_order = [c for (c,) in asked]
    assert asked_in_order[:3] == ["kept 0", "kept 1", "kept 2"]
    assert sorted(asked_in_order[3:]) == ["cut 0", "cut 1", "cut 2"]  # asked at once
    assert len(rows(database_url, "select id from turns where status = 'streaming'")) == 3

    bot = await bots.start()  # the next start marks what the killed bot left half-done
    for channel in channels:
        turns = await bot.history.all(int(channel))
        assert [t.status for t in turns] == ["complete", "complete", "complete", "incomplete"]
