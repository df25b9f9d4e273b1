"""Alembic, driven from the bot: `python -m bot db upgrade` and the check at start-up.

Alembic is imported only when it is used: its script machinery stays resident for good (about
11 MiB, bench/README.md), and a start on an up-to-date database (every start but the first after
an upgrade) does not need it: `is_current` reads the newest revision from the migration files
and the database's from Alembic's version table, and asks Alembic itself whenever the history
is anything but a plain line of literal revisions."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

if TYPE_CHECKING:
    from alembic.config import Config


def _migrations_dir() -> Path:
    """`migrations/` beside the package in a checkout; `bot/_migrations` inside an installed wheel."""
    package = Path(__file__).resolve().parents[1]
    for candidate in (package.parent / "migrations", package / "_migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise FileNotFoundError("the Alembic migrations are missing from this installation")


MIGRATIONS_DIR = _migrations_dir()
MIGRATION_LOCK = 0x0B07_DB  # any fixed number: the PostgreSQL advisory lock of migrations


def alembic_config(url: str) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revision(url: str) -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config(url)).get_current_head()


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return await conn.run_sync(_current_revision)


def _current_revision(connection: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Apply migrations up to `revision` on `engine`, inside the running event loop."""
    config = alembic_config(engine.url.render_as_string(hide_password=False))

    def run(connection: Connection) -> None:
        from alembic import command

        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Several bot processes (shards) may start at once: one migrates, the others wait
            # here and then find nothing left to do. The lock ends with the transaction.
            await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        await conn.run_sync(run)


async def is_current(engine: AsyncEngine) -> bool:
    """Whether the schema is at the newest migration."""
    head = plain_head()
    if head is None:  # not a plain line: Alembic decides
        return await current_revision(engine) == head_revision(engine.url.render_as_string())
    async with engine.connect() as conn:
        return await conn.run_sync(_stamped) == [head]


_ASSIGNED = re.compile(
    r"^(revision|down_revision)\s*(?::[^=\n]*)?=\s*(?:\"([^\"\n]*)\"|'([^'\n]*)'|(None))\s*$",
    re.MULTILINE,
)


def plain_head(folder: Path = MIGRATIONS_DIR / "versions") -> str | None:
    """The newest revision when the migrations form one line and each names its revision and
    the one before as plain literals; None otherwise (then only Alembic can tell)."""
    revisions: set[str] = set()
    earlier: set[str] = set()
    for path in folder.glob("*.py"):
        found: dict[str, str | None] = {}
        for match in _ASSIGNED.finditer(path.read_text(encoding="utf-8")):
            name, double, single, none = match.groups()
            if name in found:
                return None  # assigned twice: not a plain file
            found[name] = None if none else (double if double is not None else single)
        revision = found.get("revision")
        if revision is None or "down_revision" not in found:
            return None  # computed, a tuple (a merge) or missing
        revisions.add(revision)
        if (before := found["down_revision"]) is not None:
            earlier.add(before)
    heads = revisions - earlier
    return heads.pop() if len(heads) == 1 and len(earlier) == len(revisions) - 1 else None


def _stamped(connection: Connection) -> list[str]:
    """The revisions in Alembic's version table (its default name, as migrations/env.py keeps)."""
    if not inspect(connection).has_table("alembic_version"):
        return []
    return list(connection.execute(text("SELECT version_num FROM alembic_version")).scalars())
