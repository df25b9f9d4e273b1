"""Two bot processes on shards 0 and 1 of 2, sharing one PostgreSQL database: each answers only
the guilds Discord routes to its shard, and history survives a restart of either."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.doubles.fake_discord import FakeDiscord, FakeMessage, shard_of
from tests.doubles.fake_ollama import FakeOllama, Script
from tests.e2e.test_chat import chat, final

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


class ShardProcess:
    """`python -m bot run` for one shard of two, logging JSON into a file."""

    def __init__(
        self, fake_discord: FakeDiscord, fake_ollama: FakeOllama, database_url: str, log: Path
    ) -> None:
        self.discord = fake_discord
        self.ollama = fake_ollama
        self.database_url = database_url
        self.log = log
        self.process: asyncio.subprocess.Process | None = None

    async def start(self, shard_id: int) -> None:
        env = {
            "PATH": os.environ.get("PATH", ""),
            "PYTHONPATH": str(ROOT),
            "DISCORD_TOKEN": self.discord.token,
            "OLLAMA_HOST": self.ollama.url,
            "DATABASE_URL": self.database_url,
            "BOT_SHARD_COUNT": "2",
            "BOT_SHARD_IDS": f"[{shard_id}]",
            "BOT_LOG_FORMAT": "json",
            "BOT_EDIT_INTERVAL": "0.2",
        }
        with self.log.open("ab") as output:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tests.launcher",
                self.discord.api_base,
                self.discord.gateway_url,
                cwd=ROOT,
                env=env,
                stdout=output,
                stderr=asyncio.subprocess.STDOUT,
            )

    async def stop(self) -> int:
        """SIGTERM, as systemd or Docker stop the bot; returns the exit code."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.process.wait(), 20)

    def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()

    def lines(self) -> list[dict[str, Any]]:
        """Every line of output, parsed: JSON logs are one object per line."""
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]


@contextlib.asynccontextmanager
async def two_shards(
    fake_discord: FakeDiscord, fake_ollama: FakeOllama, database_url: str, folder: Path
) -> AsyncIterator[list[ShardProcess]]:
    shards = [
        ShardProcess(fake_discord, fake_ollama, database_url, folder / f"shard{n}.log")
        for n in (0, 1)
    ]
    try:
        for n, shard in enumerate(shards):  # started together: both migrate the new database
            await shard.start(n)
        for n in (0, 1):
            await fake_discord.wait_ready(timeout=60, shard=n)
        yield shards
    finally:
        for shard in shards:
            shard.kill()
        for shard in shards:
            if shard.process is not None:
                await shard.process.wait()


async def mention(fake: FakeDiscord, text: str, channel_id: str) -> FakeMessage:
    question = await fake.user_message(text, channel_id=channel_id, mention_bot=True)

    def reply() -> FakeMessage | None:
        return next(
            (
                m
                for m in fake.bot_messages(channel_id)
                if m.message_reference
                and m.message_reference.get("message_id") == question.id
                and final(m)
            ),
            None,
        )

    await fake.wait_until(lambda: reply() is not None, timeout=20)
    answer = reply()
    assert answer is not None
    return answer


def guilds_answered(shard: ShardProcess) -> set[str]:
    """The guilds of the generations this process ran, from its log."""
    return {
        match.group(1)
        for line in shard.lines()
        if (match := re.match(r"generation start .* guild=(\d+) ", line["message"]))
    }


async def test_two_processes_on_two_shards_share_postgresql(
    fake_discord: FakeDiscord, fake_ollama: FakeOllama, database_url: str, tmp_path: Path
) -> None:
    default_shard = shard_of(fake_discord.guild_id, 2)
    other = await fake_discord.add_guild("Second", ["lobby"], shard=(1 - default_shard, 2))
    guild = {default_shard: fake_discord.guild_id, 1 - default_shard: other}
    channel = {
        default_shard: fake_discord.channel_ids[0],
        1 - default_shard: fake_discord.guild_channel_ids(other)[0],
    }

    async with two_shards(fake_discord, fake_ollama, database_url, tmp_path) as shards:
        identified = [f["d"].get("shard") for f in fake_discord.gateway_received if f["op"] == 2]
        assert sorted(identified) == [[0, 2], [1, 2]]

        fake_ollama.script(Script(reply="Hello Ada."), Script(reply="Hello Bo."))
        await chat(fake_discord, "My name is Ada.", channel_id=channel[0])
        await chat(fake_discord, "My name is Bo.", channel_id=channel[1])
        for n in (0, 1):
            answer = await mention(fake_discord, f"shard {n} here?", channel[n])
            assert "Hello from the fake model." in answer.content

        assert await shards[0].stop() == 0  # shard 0's process restarts...
        await chat(fake_discord, "Still here?", channel_id=channel[1])  # ...shard 1 serves on
        await shards[0].start(0)
        await fake_discord.wait_ready(timeout=60, shard=0)
        await chat(fake_discord, "What is my name?", channel_id=channel[0])
        assert fake_ollama.chat_requests()[-1]["messages"] == [
            {"role": "user", "content": "My name is Ada."},
            {"role": "assistant", "content": "Hello Ada."},
            {"role": "user", "content": "shard 0 here?"},
            {"role": "assistant", "content": "Hello from the fake model."},
            {"role": "user", "content": "What is my name?"},
        ]
        assert await shards[1].stop() == 0
        assert await shards[0].stop() == 0

    assert guilds_answered(shards[0]) == {guild[0]}
    assert guilds_answered(shards[1]) == {guild[1]}
    for shard in shards:
        for line in shard.lines():
            assert {"time", "level", "logger", "message"} <= set(line)
        assert fake_discord.token not in shard.log.read_text()
    puts = [r for r in fake_discord.requests if r.method == "PUT" and r.path.endswith("/commands")]
    assert len(puts) == 1  # one process syncs the commands, once


async def test_only_the_process_of_shard_zero_syncs_the_commands(
    fake_discord: FakeDiscord, fake_ollama: FakeOllama, database_url: str, tmp_path: Path
) -> None:
    """Started one after the other, each ready before the next starts: the bulk overwrite comes
    when shard 0's process starts (a process syncs in its set-up, before it goes online)."""
    shards = [
        ShardProcess(fake_discord, fake_ollama, database_url, tmp_path / f"shard{n}.log")
        for n in (0, 1)
    ]
    commands = f"/applications/{fake_discord.application_id}/commands"

    def puts() -> list[float]:
        return [r.t for r in fake_discord.requests if r.method == "PUT" and r.path == commands]

    try:
        await shards[1].start(1)
        await fake_discord.wait_ready(timeout=60, shard=1)
        assert puts() == []  # shard 1's process is online and has not synced
        shard_zero_started = fake_discord.clock()
        await shards[0].start(0)
        await fake_discord.wait_ready(timeout=60, shard=0)
        [synced_at] = puts()
        assert synced_at > shard_zero_started
        assert {c["name"] for c in fake_discord.commands} >= {"chat", "persona", "model"}
        assert await shards[0].stop() == 0
        assert await shards[1].stop() == 0
    finally:
        for shard in shards:
            shard.kill()
            if shard.process is not None:
                await shard.process.wait()
    assert len(puts()) == 1
