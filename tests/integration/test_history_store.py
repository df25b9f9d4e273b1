"""HistoryStore on a real SQLite file, migrated by Alembic."""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.storage import migrate
from bot.storage.channels import ChannelConfig, ChannelStore
from bot.storage.engine import create_engine, session_factory
from bot.storage.history import Author, HistoryStore, TurnResult
from bot.storage.models import TurnStatus
from bot.storage.sqlite_thread import open_database
from tests.conftest import both_databases

pytestmark = both_databases

ALICE = Author(11, "alice")
BOT = Author(99, "ollama-bot")


async def exchange(store: HistoryStore, channel: int, text: str, reply: str) -> tuple[int, int]:
    user_turn, reply_turn = await store.begin_exchange(
        channel_id=channel,
        guild_id=1,
        user=ALICE,
        text=text,
        assistant=BOT,
        model="m",
        request_id="r",
    )
    await store.finish_turn(
        reply_turn,
        TurnResult(
            status=TurnStatus.COMPLETE, content=reply, completion_tokens=3, eval_duration_ns=10
        ),
    )
    return user_turn, reply_turn


async def test_migrations_create_the_schema(engine: AsyncEngine) -> None:
    assert await migrate.is_current(engine)
    async with engine.connect() as conn:
        tables = await conn.run_sync(lambda sync: set(inspect(sync).get_table_names()))
    assert {"turns", "meta", "channels", "alembic_version"} <= tables


async def test_upgrade_twice_is_harmless(engine: AsyncEngine) -> None:
    await migrate.upgrade(engine)
    assert await migrate.current_revision(engine) == migrate.head_revision(str(engine.url))


async def test_an_exchange_is_stored_with_author_model_tokens_and_status(
    store: HistoryStore,
) -> None:
    await exchange(store, 5, "hello", "hi there")
    turns = await store.all(5)
    assert [(t.role, t.author_name, t.content, t.status) for t in turns] == [
        ("user", "alice", "hello", "complete"),
        ("assistant", "ollama-bot", "hi there", "complete"),
    ]
    assert turns[1].model == "m"
    assert turns[1].completion_tokens == 3
    assert turns[1].reply_to_id == turns[0].id


async def test_channels_never_see_each_others_turns(store: HistoryStore) -> None:
    await exchange(store, 1, "one", "uno")
    await exchange(store, 2, "two", "dos")
    assert [t.content for t in await store.all(1)] == ["one", "uno"]
    assert [t.content for t in await store.newest(2, 10)] == ["two", "dos"]


async def test_newest_returns_the_last_turns_oldest_first(store: HistoryStore) -> None:
    for n in range(5):
        await exchange(store, 3, f"q{n}", f"a{n}")
    assert [t.content for t in await store.newest(3, 3)] == ["a3", "q4", "a4"]
    assert await store.count(3) == 10
    # The read every reply makes (through the driver's cursor on SQLite) gives the very values
    # SQLAlchemy's own execution gives (`all`): ids, texts, None, the time as a datetime.
    everything = await store.all(3)
    assert await store.newest(3, 4) == everything[-4:]
    assert await store.newest(3, 2, before=everything[-4].id) == everything[-6:-4]
    assert isinstance(everything[0].created_at, datetime)


async def test_clear_deletes_only_that_channel(store: HistoryStore) -> None:
    await exchange(store, 1, "one", "uno")
    await exchange(store, 2, "two", "dos")
    assert await store.clear(1) == 2
    assert await store.all(1) == []
    assert await store.count(2) == 2


async def test_replies_left_streaming_are_marked_incomplete(store: HistoryStore) -> None:
    _, reply = await store.begin_exchange(
        channel_id=4, guild_id=None, user=ALICE, text="q", assistant=BOT, model="m", request_id="r"
    )
    assert await store.mark_interrupted() == 1
    turns = await store.all(4)
    assert turns[1].id == reply and turns[1].status == TurnStatus.INCOMPLETE
    assert await store.mark_interrupted() == 0


async def test_turns_survive_a_new_engine_on_the_same_file(
    store: HistoryStore, database_url: str
) -> None:
    await exchange(store, 8, "remember me", "I will")
    other = create_engine(database_url)
    database = open_database(other)
    try:
        again = HistoryStore(database)
        assert [t.content for t in await again.all(8)] == ["remember me", "I will"]
    finally:
        await database.close()
        await other.dispose()


async def test_meta_values_round_trip(store: HistoryStore) -> None:
    assert await store.get_meta("k") is None
    await store.set_meta("k", "v1")
    await store.set_meta("k", "v2")
    assert await store.get_meta("k") == "v2"


async def test_channel_settings_default_and_update(engine: AsyncEngine) -> None:
    channels = ChannelStore(session_factory(engine))
    assert await channels.get(5) == ChannelConfig(5)
    assert (await channels.update(5, 1, model="qwen3")).model == "qwen3"
    updated = await channels.update(5, 1, autoreply=True)
    assert (updated.model, updated.autoreply) == ("qwen3", True)
    assert (await channels.update(5, 1, model=None)).model is None
    with pytest.raises(TypeError):
        await channels.update(5, 1, colour="red")


async def test_retention_prunes_by_age_and_by_count_per_channel(
    store: HistoryStore, engine: AsyncEngine
) -> None:
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import update

    from bot.storage.models import Turn

    for n in range(4):
        await exchange(store, 1, f"one-{n}", f"uno-{n}")
    await exchange(store, 2, "old", "viejo")
    await exchange(store, 2, "new", "nuevo")
    _, streaming = await store.begin_exchange(
        channel_id=3,
        guild_id=1,
        user=ALICE,
        text="still asking",
        assistant=BOT,
        model="m",
        request_id="r",
    )
    long_ago = datetime.now(UTC) - timedelta(days=40)
    async with engine.begin() as conn:
        await conn.execute(
            update(Turn)
            .where(Turn.content.in_(["old", "viejo", "still asking"]))
            .values(created_at=long_ago)
        )
        await conn.execute(update(Turn).where(Turn.id == streaming).values(created_at=long_ago))

    deleted = await store.prune(
        older_than=datetime.now(UTC) - timedelta(days=30), keep_per_channel=None
    )
    assert deleted == 3  # "old", "viejo" and the question whose reply is still being written
    assert [t.content for t in await store.all(2)] == ["new", "nuevo"]
    assert [t.id for t in await store.all(3)] == [streaming]  # a reply in progress is kept

    deleted = await store.prune(older_than=None, keep_per_channel=3)
    assert deleted == 5
    assert [t.content for t in await store.all(1)] == ["uno-2", "one-3", "uno-3"]
    assert await store.prune(older_than=None, keep_per_channel=None) == 0


async def test_summary_turns_stand_apart_from_the_conversation(store: HistoryStore) -> None:
    first = await store.begin_exchange(
        channel_id=8,
        guild_id=1,
        user=ALICE,
        text="my secret",
        assistant=BOT,
        model="m",
        request_id="r",
        source_message_id=555,
    )
    await store.finish_turn(first[1], TurnResult(status=TurnStatus.COMPLETE, content="ok"))
    await exchange(store, 8, "later", "fine")
    old = await store.add_summary(
        channel_id=8, guild_id=1, author=BOT, model="m", content="v1", covers_until=0, covered=0
    )
    summary = await store.add_summary(
        channel_id=8,
        guild_id=1,
        author=BOT,
        model="m",
        content="Alice told a secret.",
        covers_until=first[1],
        covered=2,
    )
    found = await store.latest_summary(8)
    assert found is not None and (found.id, found.covered, found.announced) == (summary, 2, False)
    assert summary != old  # only the newest is kept
    # never part of what people see, nor of the turns a context is chosen from
    assert [t.role for t in await store.all(8)] == ["user", "assistant"] * 2
    assert await store.count(8) == 4
    assert all(t.role != "summary" for t in await store.newest(8, 10))
    await store.mark_announced(summary)
    assert (await store.latest_summary(8)).announced  # type: ignore[union-attr]

    # a deleted message takes the summary that folded it in with it
    assert await store.forget_messages(8, [555]) == 2
    assert await store.latest_summary(8) is None
