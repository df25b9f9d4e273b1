"""UsageService against a real SQLite file: today's tokens read at start, counted at once, and
the quotas starting again at UTC midnight (its clock is given, not patched)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.conversation.usage import QuotaExceeded, UsageService
from bot.ollama.protocol import ChatStats
from bot.storage import migrate
from bot.storage.engine import Database, create_engine
from bot.storage.usage import Spent, UsageStore


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def stats(prompt: int, completion: int) -> ChatStats:
    return ChatStats("qwen3", "stop", prompt, completion, 1_000, None, None, None)


async def test_quotas_count_today_and_start_again_at_utc_midnight(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'usage.db'}")
    database = Database(engine)
    try:
        await migrate.upgrade(engine)
        store = UsageStore(database)
        clock = Clock(datetime(2026, 12, 6, 23, 59, tzinfo=UTC))
        await store.record(Spent(clock.now.date(), 5, 1, "qwen3", 60, 0, 0))
        usage = UsageService(store, daily_quota=100, role_quotas={7: 500, 8: 0}, clock=clock)
        await usage.start()
        assert usage.quota(1, ()).used == 60  # from before a restart
        await usage.record(5, 1, stats(30, 10))
        assert usage.quota(1, ()).used == 100
        with pytest.raises(QuotaExceeded) as refused:
            usage.check(1, ())
        assert refused.value.resets == datetime(2026, 12, 7, tzinfo=UTC)
        assert "resets <t:1796601600:R>" in refused.value.user_message
        usage.check(1, (7,))  # a role's higher quota
        usage.check(1, (7, 8))  # a role without a quota: the highest applies
        assert usage.limit_for((7, 9)) == 500 and usage.limit_for(()) == 100

        clock.now = datetime(2026, 12, 7, 0, 0, 1, tzinfo=UTC)
        usage.check(1, ())  # a new UTC day
        assert usage.quota(1, ()).used == 0
        assert await store.tokens_on(clock.now.date()) == {}
        assert await store.tokens_on(datetime(2026, 12, 6).date()) == {1: 100}
        await usage.close()
    finally:
        await database.close()
        await engine.dispose()
