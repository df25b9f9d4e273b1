"""The real CLI against the Discord double: `python -m bot sync`, and a start that Discord stops
because the Message Content intent is not switched on in the developer portal (close 4014)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from tests.doubles.fake_discord import FakeDiscord
from tests.doubles.fake_ollama import FakeOllama

ROOT = Path(__file__).resolve().parents[2]
MESSAGE_CONTENT = 1 << 15


async def run_bot_command(
    fake_discord: FakeDiscord,
    fake_ollama: FakeOllama,
    tmp_path: Path,
    command: str,
    timeout: float = 30,
    **settings: str,
) -> tuple[int, str]:
    """`python -m bot COMMAND` in a process of its own, pointed at the doubles (tests/launcher);
    its exit status and everything it printed."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(ROOT),
        "DISCORD_TOKEN": fake_discord.token,
        "OLLAMA_HOST": fake_ollama.url,
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}",
        **{f"BOT_{key.upper()}": value for key, value in settings.items()},
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.launcher",
        fake_discord.api_base,
        fake_discord.gateway_url,
        command,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout)
    finally:
        if process.returncode is None:  # it did not stop by itself: fail, but leave no process
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, output.decode()


def command_puts(fake: FakeDiscord) -> list[list[dict[str, object]]]:
    """The bodies of every bulk overwrite of the global commands the double received."""
    path = f"/applications/{fake.application_id}/commands"
    return [r.json for r in fake.requests if r.method == "PUT" and r.path == path]


async def test_sync_sends_every_slash_command_to_discord_each_time_it_is_run(
    fake_discord: FakeDiscord, fake_ollama: FakeOllama, tmp_path: Path
) -> None:
    code, output = await run_bot_command(fake_discord, fake_ollama, tmp_path, "sync")
    assert code == 0, output
    assert "Slash commands sent to Discord." in output
    [sent] = command_puts(fake_discord)
    names = {command["name"] for command in sent}
    assert {"chat", "persona", "model", "caption"} <= names
    # What Discord now holds is what was sent, and the bot never went online to send it.
    assert {command["name"] for command in fake_discord.commands} == names
    assert fake_discord.identify is None

    # Unlike the sync at start-up, which skips an unchanged tree, the command always sends.
    code, output = await run_bot_command(fake_discord, fake_ollama, tmp_path, "sync")
    assert code == 0, output
    assert len(command_puts(fake_discord)) == 2


async def test_a_refused_message_content_intent_stops_the_bot_with_a_clear_message(
    fake_discord: FakeDiscord, fake_ollama: FakeOllama, tmp_path: Path
) -> None:
    fake_discord.privileged_intents = 0  # the portal's switch is off: IDENTIFY is closed, 4014
    code, output = await run_bot_command(
        fake_discord, fake_ollama, tmp_path, "run", message_content_intent="true"
    )
    [identify] = [frame["d"] for frame in fake_discord.gateway_received if frame["op"] == 2]
    assert identify["intents"] & MESSAGE_CONTENT  # the bot asked for it, once: no retry loop
    assert code == 2, output  # a configuration error: systemd/Docker should not loop on it
    assert "Discord refused the Message Content intent." in output
    assert "Privileged Gateway Intents → Message Content Intent" in output
    assert "BOT_MESSAGE_CONTENT_INTENT=false" in output
    assert "Traceback" not in output
    assert fake_discord.shards == []  # it never came online
