"""Scenario 4: reading a channel's context window from a large history (SQLite).

Before every reply the chat service reads the channel's newest turns (`recent_turns`: pages of
`HistoryStore.newest` until the window is full, at most HISTORY_SCAN_TURNS) and keeps those that
fit the model's window. This fills a database
migrated by Alembic with conversations spread over many channels (turns of all channels
interleaved, as they arrive in real life), then times that read through the bot's own
HistoryStore, on a fresh engine, for channels picked at random. Sizes grow by adding rows to the
same database, so each size is the previous one plus more.

Rows are written with the sqlite3 module in large transactions: that is only the set-up. Texts
are about the length of real chat turns (questions of 60-300 characters, answers of 300-1,500)."""

from __future__ import annotations

import asyncio
import random
import sqlite3
import statistics
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.report import Figure, percentile
from bot.conversation import context
from bot.conversation.service import HISTORY_SCAN_TURNS, recent_turns
from bot.settings import Settings
from bot.storage import migrate
from bot.storage.engine import create_engine
from bot.storage.history import HistoryStore
from bot.storage.sqlite_thread import open_database

SCENARIO = "history"
CHANNEL_BASE = 1_300_000_000_000_000_000
GUILD_ID = 1_200_000_000_000_000_000
WORDS = [
    "the",
    "model",
    "answers",
    "with",
    "a",
    "short",
    "paragraph",
    "about",
    "what",
    "was",
    "asked",
    "and",
    "then",
    "adds",
    "a",
    "detail",
    "or",
    "two",
    "that",
    "the",
    "person",
    "might",
    "want",
    "to",
    "know",
    "next",
    "time",
    "they",
    "ask",
    "about",
    "it",
    "here",
]
COLUMNS = (
    "channel_id, guild_id, role, author_id, author_name, content, model, status, "
    "prompt_tokens, completion_tokens, total_duration_ns, eval_duration_ns, reply_to_id, "
    "request_id, created_at"
)


@dataclass(frozen=True)
class HistoryOptions:
    sizes: tuple[int, ...] = (10_000, 100_000, 1_000_000)
    channels: int = 1_000
    reads: int = 500
    limit_ms: float = 5.0


def texts(rng: random.Random, low: int, high: int, count: int = 997) -> list[str]:
    """`count` texts of `low` to `high` characters (turns pick from them: filling stays fast)."""
    made = []
    for _ in range(count):
        length = rng.randint(low, high)
        words: list[str] = []
        size = 0
        while size < length:
            words.append(rng.choice(WORDS))
            size += len(words[-1]) + 1
        made.append(" ".join(words)[:length])
    return made


def fill(path: Path, start: int, stop: int, channels: int, rng: random.Random) -> None:
    """Add turns number `start` to `stop` (question and answer pairs, random channels)."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA synchronous=OFF")  # the set-up only; the bot's own settings apply later
    began = datetime(2025, 1, 1, tzinfo=UTC)
    questions, answers = texts(rng, 60, 300), texts(rng, 300, 1_500)
    next_id = start + 1
    batch: list[tuple[object, ...]] = []
    try:
        for n in range(start, stop, 2):
            channel = CHANNEL_BASE + rng.randrange(channels)
            user = 1_000 + rng.randrange(5_000)
            when = (began + timedelta(seconds=n * 3)).strftime("%Y-%m-%d %H:%M:%S.%f")
            batch.append(
                (
                    channel, GUILD_ID, "user", user, f"user{user}", rng.choice(questions), None,
                    "complete", None, None, None, None, None, f"r{n}", when,
                )
            )  # fmt: skip
            answer = rng.choice(answers)
            batch.append(
                (
                    channel, GUILD_ID, "assistant", 1, "Ollama", answer, "llama3.2", "complete",
                    900, len(answer) // 4, 9_000_000_000, 7_000_000_000, next_id, f"r{n}", when,
                )
            )  # fmt: skip
            next_id += 2
            if len(batch) >= 20_000:
                _insert(conn, batch)
                batch = []
        if batch:
            _insert(conn, batch)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # as after the bot's own checkpoints
    finally:
        conn.close()


def _insert(conn: sqlite3.Connection, rows: list[tuple[object, ...]]) -> None:
    with conn:
        conn.executemany(
            f"INSERT INTO turns ({COLUMNS}) VALUES ({', '.join('?' * 15)})",
            rows,
        )


def window_tokens() -> int:
    """The history part of the default window (context_tokens_max less the reply's reserve),
    for a model whose own context is at least that large."""
    fields = Settings.model_fields
    cap = fields["context_tokens_max"].default
    return context.budget(
        cap, cap=cap, reply_reserve=fields["reply_reserve_tokens"].default
    ).for_history


async def time_reads(
    url: str, options: HistoryOptions, rng: random.Random
) -> tuple[list[float], list[float], list[int]]:
    """Milliseconds per context read (`recent_turns`, as the chat service does it) and per read
    of all HISTORY_SCAN_TURNS turns (`newest`, the read before bench/ existed), on a fresh
    engine; and how many turns each context read returned."""
    engine = create_engine(url)
    database = open_database(engine)
    tokens = window_tokens()
    try:
        history = HistoryStore(database)
        for _ in range(20):  # open the pool's connection, fill SQLAlchemy's statement cache
            await recent_turns(history, CHANNEL_BASE + rng.randrange(options.channels), tokens)
        paged, whole, counts = [], [], []
        for _ in range(options.reads):
            channel = CHANNEL_BASE + rng.randrange(options.channels)
            began = time.perf_counter()
            turns = await recent_turns(history, channel, tokens)
            paged.append((time.perf_counter() - began) * 1000)
            counts.append(len(turns))
            channel = CHANNEL_BASE + rng.randrange(options.channels)
            began = time.perf_counter()
            await history.newest(channel, HISTORY_SCAN_TURNS)
            whole.append((time.perf_counter() - began) * 1000)
        return paged, whole, counts
    finally:
        await database.close()
        await engine.dispose()


async def run(options: HistoryOptions, folder: Path) -> list[Figure]:
    path = folder / "history.db"
    url = f"sqlite+aiosqlite:///{path}"
    engine = create_engine(url)
    try:
        await migrate.upgrade(engine)
    finally:
        await engine.dispose()
    rng = random.Random(8)
    figures = []
    stored = 0
    for size in sorted(options.sizes):
        began = time.perf_counter()
        await asyncio.to_thread(fill, path, stored, size, options.channels, rng)
        loading = time.perf_counter() - began
        stored = size
        paged, whole, counts = await time_reads(url, options, rng)
        per_channel = size // options.channels
        megabytes = path.stat().st_size / 1e6
        figures.append(
            Figure(
                SCENARIO,
                f"context read at {size:,} turns, p99",
                percentile(paged, 0.99),
                "ms",
                limit=options.limit_ms,
                digits=2,
                note=f"median {statistics.median(paged):.2f} ms, {statistics.mean(counts):.0f} "
                f"turns read on average; {options.channels:,} channels of ~{per_channel:,} "
                f"turns; {megabytes:,.0f} MB file, filled in {loading:.0f} s",
            )
        )
        figures.append(
            Figure(
                SCENARIO,
                f"all {HISTORY_SCAN_TURNS} newest turns at {size:,} turns, p99",
                percentile(whole, 0.99),
                "ms",
                digits=2,
                note=f"median {statistics.median(whole):.2f} ms (the read every reply made "
                "before paging)",
            )
        )
    return figures
