"""Start-up imports only what every bot uses: Pillow comes with the first image, Prometheus with
a metrics endpoint, asyncpg with a PostgreSQL URL, Alembic with a schema to migrate (resident
memory; bench/README.md)."""

from __future__ import annotations

import signal
import socket
from pathlib import Path

from bot.storage import migrate
from bot.storage.engine import create_engine
from tests.doubles.fake_discord import FakeDiscord
from tests.doubles.fake_ollama import FakeOllama
from tests.e2e.test_chat import final
from tests.e2e.test_process import bot_process, exit_code

LAZY = ("PIL", "prometheus_client", "asyncpg", "alembic", "mako", "mcp")


async def modules_after_a_chat(
    fake_discord: FakeDiscord,
    fake_ollama: FakeOllama,
    database_url: str,
    tmp_path: Path,
    **settings: str,
) -> set[str]:
    """The modules the real `python -m bot run` had loaded after starting, answering one /chat
    and stopping cleanly."""
    listing = tmp_path / "modules.txt"
    env = {"LAUNCHER_MODULES_FILE": str(listing)}  # read by tests/launcher.py
    async with bot_process(
        fake_discord, fake_ollama, database_url, extra_env=env, **settings
    ) as process:
        asked = await fake_discord.slash_command("chat", {"message": "hello"})

        def answered() -> bool:
            message = fake_discord.messages.get(asked.original_message_id or "")
            return message is not None and final(message)

        await fake_discord.wait_until(answered, timeout=10)
        process.send_signal(signal.SIGTERM)
        code, output = await exit_code(process, 20)
    assert code == 0, output
    return set(listing.read_text().split())


async def migrated(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        await migrate.upgrade(engine)
    finally:
        await engine.dispose()


def top_level(modules: set[str]) -> set[str]:
    return {name.split(".")[0] for name in modules}


async def test_a_bot_on_a_current_schema_that_sees_no_image_and_serves_no_metrics_skips_them(
    fake_discord: FakeDiscord,
    fake_ollama: FakeOllama,
    database_url: str,
    tmp_path: Path,
) -> None:
    await migrated(database_url)  # as on every start but the first after an upgrade
    loaded = top_level(
        await modules_after_a_chat(fake_discord, fake_ollama, database_url, tmp_path)
    )
    assert {"bot", "discord", "sqlalchemy", "ollama"} <= loaded  # the listing is the real one
    assert loaded.isdisjoint(LAZY), sorted(loaded & set(LAZY))


async def test_a_metrics_endpoint_brings_prometheus_in_and_a_new_database_alembic(
    fake_discord: FakeDiscord,
    fake_ollama: FakeOllama,
    database_url: str,
    tmp_path: Path,
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    loaded = top_level(
        await modules_after_a_chat(
            fake_discord, fake_ollama, database_url, tmp_path, metrics_port=str(port)
        )
    )
    assert {"prometheus_client", "alembic"} <= loaded  # the database was new: migrated
    assert "PIL" not in loaded
