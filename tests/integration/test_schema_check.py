"""The schema check every start makes (`migrate.is_current`), read without Alembic when the
migrations form a plain line: it must agree with Alembic itself, on both databases."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from bot.storage import migrate
from bot.storage.engine import create_engine
from tests.conftest import both_databases

PLAIN = '''"""A migration."""
revision: str = "{revision}"
down_revision: str | None = {before}
'''


def versions(folder: Path, *pairs: tuple[str, str]) -> Path:
    folder.mkdir(exist_ok=True)
    for revision, before in pairs:
        (folder / f"{revision}.py").write_text(PLAIN.format(revision=revision, before=before))
    return folder


def test_the_newest_revision_read_from_the_files_is_alembics() -> None:
    head = migrate.plain_head()
    assert head is not None  # the project's migrations are a plain line
    assert head == migrate.head_revision("sqlite://")


def test_anything_but_a_plain_line_is_left_to_alembic(tmp_path: Path) -> None:
    line = versions(tmp_path / "line", ("a", "None"), ("b", '"a"'), ("c", "'b'"))
    assert migrate.plain_head(line) == "c"
    forked = versions(tmp_path / "forked", ("a", "None"), ("b", '"a"'), ("c", '"a"'))
    assert migrate.plain_head(forked) is None  # two heads
    merged = versions(tmp_path / "merged", ("a", "None"), ("b", '("a", "x")'))
    assert migrate.plain_head(merged) is None  # a merge names a tuple
    computed = versions(tmp_path / "computed", ("a", "None"))
    (computed / "b.py").write_text('revision = NAME\ndown_revision = "a"\n')
    assert migrate.plain_head(computed) is None


@both_databases
async def test_is_current_agrees_with_alembic_at_every_revision(database_url: str) -> None:
    engine: AsyncEngine = create_engine(database_url)
    try:
        assert not await migrate.is_current(engine)  # empty: no version table
        head = migrate.head_revision(database_url)
        for revision in ("0001", "0004", "head"):
            await migrate.upgrade(engine, revision)
            current = await migrate.current_revision(engine)
            assert await migrate.is_current(engine) is (current == head)
        assert await migrate.is_current(engine)
    finally:
        await engine.dispose()
