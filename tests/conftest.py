"""Shared fixtures: the two doubles on loopback, a real SQLite file, and the real bot."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import discord
import pytest
import yarl

from bot.app import OllamaBot, assemble
from bot.settings import Settings
from bot.tools.web import AddressGuard
from tests.doubles.fake_discord import FakeDiscord
from tests.doubles.fake_ollama import FakeOllama
from tests.postgres import find_bin, postgres_server


@pytest.fixture
async def fake_ollama() -> AsyncIterator[FakeOllama]:
    fake = FakeOllama()
    await fake.start()
    yield fake
    await fake.close()
    assert not fake.server_errors, fake.server_errors  # bugs of the double itself


@pytest.fixture
async def fake_discord(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeDiscord]:
    fake = FakeDiscord()
    await fake.start()
    # Seam A of tests/README: the two public class attributes discord.py reads its URLs from.
    monkeypatch.setattr(discord.http.Route, "BASE", fake.api_base)
    monkeypatch.setattr(
        discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(fake.gateway_url)
    )
    yield fake
    await fake.close()
    # A bug in the double (an answer Discord would not give, such as one that breaks Discord's
    # OpenAPI response schemas) fails the test that met it.
    assert not fake.server_errors, fake.server_errors[-1]
    assert not fake.deprecated_uses, fake.deprecated_uses[0]


BACKENDS = ["sqlite", "postgresql"]
both_databases = pytest.mark.parametrize("database_url", BACKENDS, indirect=True)
"""Run a test once on a SQLite file and once on a PostgreSQL database."""


@pytest.fixture(scope="session")
def postgres_base_url() -> Iterator[str]:
    if find_bin("initdb") is None:
        if os.environ.get("CI"):
            pytest.fail("CI must test PostgreSQL: install Debian's postgresql package")
        pytest.skip("PostgreSQL is not installed here (apt-get install postgresql); CI runs these")
    with postgres_server() as url:
        yield url


@pytest.fixture
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh, empty database: a SQLite file by default, or a new PostgreSQL database."""
    backend = getattr(request, "param", "sqlite")
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'data' / 'bot.db'}"
        return
    base = request.getfixturevalue("postgres_base_url")
    name = f"test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(base.replace("postgresql+asyncpg", "postgresql") + "/postgres")
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield f"{base}/{name}"
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


class BotRunner:
    """Starts the real bot against both doubles and stops it again (a restart is stop + start)."""

    def __init__(self, discord_double: FakeDiscord, ollama_double: FakeOllama, database_url: str):
        self.discord = discord_double
        self.ollama = ollama_double
        self.database_url = database_url
        self._running: dict[
            int, tuple[contextlib.AbstractAsyncContextManager[OllamaBot], asyncio.Task[None]]
        ] = {}

    def settings(self, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "discord_token": self.discord.token,
            "ollama_host": self.ollama.url,
            "database_url": self.database_url,
            "edit_interval": 0.2,
        }
        values.update(overrides)
        return Settings(**values)

    async def start(
        self, *, address_guard: AddressGuard | None = None, **overrides: Any
    ) -> OllamaBot:
        manager = assemble(
            self.settings(**overrides),
            address_guard=address_guard,
            guild_ready_timeout=0.05,
            chunk_guilds_at_startup=False,
        )
        bot = await manager.__aenter__()
        task = asyncio.create_task(bot.start(self.discord.token))
        self._running[id(bot)] = (manager, task)
        await asyncio.wait_for(bot.wait_until_ready(), 5)
        return bot

    async def stop(self, bot: OllamaBot) -> None:
        manager, task = self._running.pop(id(bot))
        await bot.close()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 5)
        await manager.__aexit__(None, None, None)

    async def stop_all(self) -> None:
        for key in list(self._running):
            manager, task = self._running.pop(key)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            await manager.__aexit__(None, None, None)


@pytest.fixture
async def bots(
    fake_discord: FakeDiscord, fake_ollama: FakeOllama, database_url: str
) -> AsyncIterator[BotRunner]:
    runner = BotRunner(fake_discord, fake_ollama, database_url)
    yield runner
    await runner.stop_all()


@pytest.fixture
async def bot(bots: BotRunner) -> OllamaBot:
    """The bot, started with the test defaults (edit interval 0.2 s)."""
    return await bots.start()


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    """Wait until the async `check` holds (polled every 50 ms); fail after `timeout` seconds."""
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.05)
