"""Start-up imports only what every bot uses: Pillow comes with the first image, Prometheus with
a metrics endpoint, asyncpg with a PostgreSQL URL (resident memory; bench/README.md)."""

from __future__ import annotations

import signal
import socket
from pathlib import Path

from tests.doubles.fake_discord import FakeDiscord
from tests.doubles.fake_ollama import FakeOllama
from tests.e2e.test_chat import final
from tests.e2e.test_process import bot_process, exit_code

LAZY = ("PIL", "prometheus_client", "asyncpg")


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


def top_level(modules: set[str]) -> set[str]:
    return {name.split(".")[0] for name in modules}


async def test_a_bot_that_never_sees_an_image_or_serves_metrics_never_imports_them(
    fake_discord: FakeDiscord,
    fake_ollama: FakeOllama,
    database_url: str,
    tmp_path: Path,
) -> None:
    loaded = top_level(
        await modules_after_a_chat(fake_discord, fake_ollama, database_url, tmp_path)
    )
    assert {"bot", "discord", "sqlalchemy", "ollama"} <= loaded  # the listing is the real one
    assert loaded.isdisjoint(LAZY), sorted(loaded & set(LAZY))


async def test_a_metrics_endpoint_brings_prometheus_in(
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
    assert "prometheus_client" in loaded
    assert "PIL" not in loaded
