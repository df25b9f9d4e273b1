"""UsageStore: tokens and time of the generations, per guild, member, model and UTC day."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.dialects import postgresql, sqlite

from bot.storage.engine import Database
from bot.storage.models import Usage

DM = 0
"""The guild id that direct messages are counted under."""


@dataclass(frozen=True, slots=True)
class Spent:
    """One generation's use, as Ollama counted it."""

    day: date
    guild_id: int | None
    user_id: int
    model: str
    prompt_tokens: int
    completion_tokens: int
    total_ns: int


@dataclass(frozen=True, slots=True)
class Total:
    """Use added up over some rows; `key` is what they were grouped by (a model, a member)."""

    key: str | int
    generations: int
    prompt_tokens: int
    completion_tokens: int
    total_ns: int

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


_UPSERTS: dict[str, Any] = {}
"""The upsert of `_record`, built once per dialect: composing it cost more than running it."""

_COUNTED = ("generations", "prompt_tokens", "completion_tokens", "total_ns")


def _upsert(dialect_name: str) -> Any:
    statement = _UPSERTS.get(dialect_name)
    if statement is None:
        # One upsert a generation: the day's row of this member and model grows. Both
        # databases speak INSERT ... ON CONFLICT DO UPDATE, each through its own construct.
        dialect = postgresql if dialect_name == "postgresql" else sqlite
        names = ("day", "guild_id", "user_id", "model", *_COUNTED)
        insert = dialect.insert(Usage).values({name: sa.bindparam(name) for name in names})
        table = Usage.__table__.c
        statement = _UPSERTS[dialect_name] = insert.on_conflict_do_update(
            index_elements=[table.day, table.guild_id, table.user_id, table.model],
            set_={name: table[name] + insert.excluded[name] for name in _COUNTED},
        )
    return statement


def _record(spent: Spent, conn: Connection) -> None:
    values = {
        "day": spent.day,
        "guild_id": spent.guild_id or DM,
        "user_id": spent.user_id,
        "model": spent.model[:200],
        "generations": 1,
        "prompt_tokens": spent.prompt_tokens,
        "completion_tokens": spent.completion_tokens,
        "total_ns": spent.total_ns,
    }
    conn.execute(_upsert(conn.dialect.name), values)


def _totals(conn: Connection, key: Any, where: Sequence[sa.ColumnElement[bool]]) -> list[Total]:
    rows = conn.execute(
        sa.select(
            key,
            sa.func.sum(Usage.generations),
            sa.func.sum(Usage.prompt_tokens),
            sa.func.sum(Usage.completion_tokens),
            sa.func.sum(Usage.total_ns),
        )
        .where(*where)
        .group_by(key)
    ).all()
    totals = [
        Total(k, int(g or 0), int(p or 0), int(c or 0), int(t or 0)) for k, g, p, c, t in rows
    ]
    return sorted(totals, key=lambda t: (-t.tokens, str(t.key)))


class UsageStore:
    def __init__(self, database: Database) -> None:
        self._database = database

    async def record(self, spent: Spent) -> None:
        await self._database.write(lambda conn: _record(spent, conn))

    async def by_model_for_user(self, user_id: int, since: date) -> list[Total]:
        """A member's use since `since` (inclusive), in every guild, per model, most first."""
        return await self._database.read(
            lambda conn: _totals(conn, Usage.model, [Usage.user_id == user_id, Usage.day >= since])
        )

    async def by_model_for_guild(self, guild_id: int, since: date) -> list[Total]:
        return await self._database.read(
            lambda conn: _totals(
                conn, Usage.model, [Usage.guild_id == guild_id, Usage.day >= since]
            )
        )

    async def by_user_for_guild(self, guild_id: int, since: date) -> list[Total]:
        return await self._database.read(
            lambda conn: _totals(
                conn, Usage.user_id, [Usage.guild_id == guild_id, Usage.day >= since]
            )
        )

    async def tokens_on(self, day: date) -> dict[int, int]:
        """Tokens each member used on `day`, in all guilds: what the quotas start from."""

        def read(conn: Connection) -> dict[int, int]:
            rows = conn.execute(
                sa.select(Usage.user_id, sa.func.sum(Usage.prompt_tokens + Usage.completion_tokens))
                .where(Usage.day == day)
                .group_by(Usage.user_id)
            ).all()
            return {int(user): int(tokens or 0) for user, tokens in rows}

        return await self._database.read(read)
