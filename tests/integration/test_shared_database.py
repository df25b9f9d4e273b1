"""Several bot processes (shards) on one database: each minds only its own guilds' turns, and
they may migrate at the same moment."""

from __future__ import annotations

import asyncio

import pytest

from bot.storage import migrate
from bot.storage.engine import create_engine
from bot.storage.history import Author, HistoryStore
from bot.storage.models import TurnStatus
from tests.conftest import both_databases

ALICE = Author(11, "alice")
BOT = Author(99, "ollama-bot")
# Guild ids whose creation time puts them on shard 0 and 1 of 2 ((id >> 22) % 2).
GUILD_ON_0 = (1_000_000 << 22) | 5
GUILD_ON_1 = (1_000_001 << 22) | 5


async def streaming_reply(store: HistoryStore, channel: int, guild: int | None) -> int:
    _, reply = await store.begin_exchange(
        channel_id=channel,
        guild_id=guild,
        user=ALICE,
        text="question",
        assistant=BOT,
        model="m",
        request_id="r",
    )
    return reply


async def statuses(store: HistoryStore, *channels: int) -> list[str]:
    return [(await store.all(channel))[-1].status for channel in channels]


@both_databases
async def test_a_starting_shard_marks_only_its_own_guilds_replies_interrupted(
    store: HistoryStore,
) -> None:
    await streaming_reply(store, 1, GUILD_ON_0)
    await streaming_reply(store, 2, GUILD_ON_1)
    await streaming_reply(store, 3, None)  # a direct message: shard 0's

    assert await store.mark_interrupted(shard_ids=[1], shard_count=2) == 1
    assert await statuses(store, 1, 2, 3) == ["streaming", "incomplete", "streaming"]

    assert await store.mark_interrupted(shard_ids=[0], shard_count=2) == 2
    assert await statuses(store, 1, 2, 3) == ["incomplete"] * 3

    await streaming_reply(store, 4, GUILD_ON_1)
    assert await store.mark_interrupted() == 1  # unsharded: every turn is this process's
    assert await statuses(store, 4) == [TurnStatus.INCOMPLETE]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_processes_starting_together_migrate_once(database_url: str) -> None:
    engines = [create_engine(database_url) for _ in range(6)]
    try:
        await asyncio.gather(*(migrate.upgrade(engine) for engine in engines))
        assert all([await migrate.is_current(engine) for engine in engines])
    finally:
        for engine in engines:
            await engine.dispose()
