"""UsageService: what each member used (tokens and time, per model and UTC day), `/usage`, and
the daily token quotas checked at admission.

Admission never waits (it keeps Discord's order), so each member's tokens of the current UTC
day are also kept in memory: read from the database at start, added to after each generation.
With several bot processes (shards) each counts its own generations in memory; the database
has them all."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from bot.errors import BotError
from bot.ollama.protocol import ChatStats
from bot.storage.usage import Spent, Total, UsageStore

log = logging.getLogger(__name__)

PERIODS = {"day": 1, "week": 7, "month": 30}
"""A period's days, today included."""


def next_reset(now: datetime) -> datetime:
    """The next UTC midnight: when a day's quota starts again."""
    today = now.astimezone(UTC).date()
    return datetime.combine(today + timedelta(days=1), time(), tzinfo=UTC)


class QuotaExceeded(BotError):
    def __init__(self, quota: int, resets: datetime) -> None:
        self.resets = resets
        super().__init__(
            f"You've used your {quota:,} tokens for today. "
            f"Your quota resets <t:{int(resets.timestamp())}:R>."
        )


@dataclass(frozen=True, slots=True)
class Quota:
    limit: int | None
    """Tokens a day; None: no quota."""
    used: int
    resets: datetime


class UsageService:
    def __init__(
        self,
        store: UsageStore,
        *,
        daily_quota: int = 0,
        role_quotas: Mapping[int, int] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._daily_quota = daily_quota
        self._role_quotas = dict(role_quotas or {})
        self._clock = clock
        self._day = self._today()
        self._today_tokens: dict[int, int] = {}
        self._saving: set[asyncio.Future[None]] = set()

    def _today(self) -> date:
        return self._clock().astimezone(UTC).date()

    def _roll(self) -> None:
        """A new UTC day: every member's count starts again."""
        today = self._today()
        if today != self._day:
            self._day = today
            self._today_tokens.clear()

    async def start(self) -> None:
        """Read today's use so far (the bot may have restarted during the day)."""
        self._day = self._today()
        self._today_tokens = await self._store.tokens_on(self._day)

    async def close(self) -> None:
        if self._saving:
            await asyncio.gather(*self._saving, return_exceptions=True)

    # ---- quotas ---------------------------------------------------------------------------

    def limit_for(self, roles: Collection[int]) -> int | None:
        """A member's daily quota: the highest of their roles' (0 there: none), else the
        general one (0: none)."""
        given = [self._role_quotas[r] for r in roles if r in self._role_quotas]
        if given:
            return None if 0 in given else max(given)
        return self._daily_quota or None

    def quota(self, user_id: int, roles: Collection[int]) -> Quota:
        self._roll()
        return Quota(
            self.limit_for(roles), self._today_tokens.get(user_id, 0), next_reset(self._clock())
        )

    def check(self, user_id: int, roles: Collection[int]) -> None:
        """QuotaExceeded when the member has used their day's tokens. Never waits."""
        quota = self.quota(user_id, roles)
        if quota.limit is not None and quota.used >= quota.limit:
            raise QuotaExceeded(quota.limit, quota.resets)

    # ---- counting -------------------------------------------------------------------------

    def record(self, guild_id: int | None, user_id: int, stats: ChatStats) -> asyncio.Future[None]:
        """Count a generation: at once in memory (for the quota), and in the database (the
        returned future; a failure is logged)."""
        self._roll()
        spent = Spent(
            day=self._day,
            guild_id=guild_id,
            user_id=user_id,
            model=stats.model,
            prompt_tokens=stats.prompt_tokens or 0,
            completion_tokens=stats.completion_tokens or 0,
            total_ns=stats.total_duration_ns or 0,
        )
        tokens = spent.prompt_tokens + spent.completion_tokens
        self._today_tokens[user_id] = self._today_tokens.get(user_id, 0) + tokens
        saving = asyncio.ensure_future(self._store.record(spent))
        self._saving.add(saving)
        saving.add_done_callback(self._saved)
        return saving

    def _saved(self, saving: asyncio.Future[None]) -> None:
        self._saving.discard(saving)
        if not saving.cancelled() and (error := saving.exception()) is not None:
            log.error("could not store a generation's usage", exc_info=error)

    # ---- reading --------------------------------------------------------------------------

    def since(self, period: str) -> date:
        return self._today() - timedelta(days=PERIODS[period] - 1)

    async def of_member(self, user_id: int) -> dict[str, list[Total]]:
        """A member's use per model, for each period (day, week, month)."""
        return {
            period: await self._store.by_model_for_user(user_id, self.since(period))
            for period in PERIODS
        }

    async def of_guild(self, guild_id: int, period: str) -> tuple[list[Total], list[Total]]:
        """(members, models) of a guild over a period, most tokens first."""
        since = self.since(period)
        users = await self._store.by_user_for_guild(guild_id, since)
        models = await self._store.by_model_for_guild(guild_id, since)
        return users, models
