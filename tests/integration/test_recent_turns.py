"""Reading a context's turns in pages, and many exchanges at once (real databases)."""

from __future__ import annotations

import asyncio
import random

import pytest

from bot.conversation import context
from bot.conversation.service import HISTORY_FIRST_PAGE, HISTORY_SCAN_TURNS, recent_turns
from bot.storage.history import Author, HistoryStore, TurnResult
from bot.storage.models import TurnStatus
from tests.conftest import both_databases

ALICE = Author(11, "alice")
BOT = Author(99, "ollama-bot")
CHANNEL = 5


async def fill(
    store: HistoryStore, exchanges: int, *, length: int, rng: random.Random | None = None
) -> None:
    """Question/answer pairs; with `rng`, lengths vary and some replies fail or stop."""
    for n in range(exchanges):
        size = rng.randint(1, 3 * length) if rng else length
        _, reply_turn = await store.begin_exchange(
            channel_id=CHANNEL,
            guild_id=1,
            user=ALICE,
            text=f"q{n} " + "x" * size,
            assistant=BOT,
            model="m",
            request_id=f"r{n}",
        )
        status = TurnStatus.COMPLETE
        if rng is not None:
            status = rng.choice([status] * 4 + [TurnStatus.FAILED, TurnStatus.STOPPED])
        await store.finish_turn(
            reply_turn, TurnResult(status=status, content=f"a{n} " + "y" * size)
        )


@both_databases
async def test_a_window_that_fills_early_reads_only_the_first_page(store: HistoryStore) -> None:
    await fill(store, 100, length=400)  # about 100 tokens a turn
    turns = await recent_turns(store, CHANNEL, tokens=1_000)
    assert len(turns) == HISTORY_FIRST_PAGE
    assert turns == await store.newest(CHANNEL, HISTORY_FIRST_PAGE)


@both_databases
async def test_a_large_window_reads_back_to_the_scan_limit(store: HistoryStore) -> None:
    await fill(store, 230, length=1)  # 460 turns of a few tokens each
    turns = await recent_turns(store, CHANNEL, tokens=100_000)
    assert turns == await store.newest(CHANNEL, HISTORY_SCAN_TURNS)
    assert len(turns) == HISTORY_SCAN_TURNS
    assert [t.id for t in turns] == sorted(t.id for t in turns)


@both_databases
async def test_a_short_history_is_read_whole(store: HistoryStore) -> None:
    await fill(store, 5, length=10)
    assert len(await recent_turns(store, CHANNEL, tokens=100_000)) == 10


@pytest.mark.parametrize("seed", range(4))
async def test_the_window_is_the_one_all_scanned_turns_give(store: HistoryStore, seed: int) -> None:
    rng = random.Random(seed)
    await fill(store, 120, length=rng.choice([20, 200, 800]), rng=rng)
    everything = context.usable(await store.newest(CHANNEL, HISTORY_SCAN_TURNS))
    for tokens in (50, 900, 4_000, 20_000):
        paged = context.usable(await recent_turns(store, CHANNEL, tokens))
        assert context.window(paged, tokens) == context.window(everything, tokens)


async def test_many_exchanges_at_once_are_all_stored(store: HistoryStore) -> None:
    async def one(n: int) -> None:
        _, reply_turn = await store.begin_exchange(
            channel_id=100 + n % 10,
            guild_id=1,
            user=ALICE,
            text=f"q{n}",
            assistant=BOT,
            model="m",
            request_id=f"r{n}",
        )
        await store.newest(100 + n % 10, HISTORY_FIRST_PAGE)
        await store.finish_turn(reply_turn, TurnResult(status=TurnStatus.COMPLETE, content="a"))

    await asyncio.gather(*(one(n) for n in range(60)))
    counts = [await store.count(100 + c) for c in range(10)]
    assert counts == [12] * 10
