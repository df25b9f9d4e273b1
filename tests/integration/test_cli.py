"""The command line, run as a separate process like an admin would."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
from pathlib import Path

from tests.doubles.fake_ollama import FakeOllama

ROOT = Path(__file__).resolve().parents[2]


async def run_cli(*args: str, env: dict[str, str], cwd: Path) -> tuple[int, str]:
    """Run `python -m bot ...` with only the given environment (plus PATH), return code and output."""
    full_env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT), **env}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        *args,
        cwd=cwd,
        env=full_env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 30)
    return process.returncode or 0, output.decode()


async def test_run_without_a_token_says_how_to_get_one(tmp_path: Path) -> None:
    code, output = await run_cli("run", env={}, cwd=tmp_path)
    assert code == 2
    assert "DISCORD_TOKEN" in output
    assert "discord.com/developers/applications" in output


async def test_db_upgrade_creates_the_default_database_in_the_data_folder(tmp_path: Path) -> None:
    code, output = await run_cli("db", "upgrade", env={}, cwd=tmp_path)
    assert code == 0, output
    assert "upgraded from empty to" in output
    database = tmp_path / "data" / "bot.db"
    with sqlite3.connect(database) as conn:
        assert conn.execute("select count(*) from turns").fetchone() == (0,)
    code, output = await run_cli("db", "upgrade", env={}, cwd=tmp_path)
    assert code == 0
    assert "already at the newest revision" in output


async def test_check_reports_ollama_and_database(fake_ollama: FakeOllama, tmp_path: Path) -> None:
    env = {"OLLAMA_HOST": fake_ollama.url, "DISCORD_TOKEN": "secret-token-value"}
    await run_cli("db", "upgrade", env=env, cwd=tmp_path)
    code, output = await run_cli("check", env=env, cwd=tmp_path)
    assert code == 0, output
    assert f"Ollama: reachable at {fake_ollama.url}, version {fake_ollama.version}" in output
    assert "Chat model: llama3.2 present" in output
    assert "(up to date)" in output
    assert "secret-token-value" not in output
    assert "discord_token = set (hidden)" in output


async def test_check_fails_when_ollama_is_down_and_the_schema_is_old(tmp_path: Path) -> None:
    env = {"OLLAMA_HOST": "http://127.0.0.1:9", "DISCORD_TOKEN": "x"}
    code, output = await run_cli("check", env=env, cwd=tmp_path)
    assert code == 1
    assert "can't reach the Ollama server at http://127.0.0.1:9" in output
    assert "needs `python -m bot db upgrade`" in output


async def test_settings_come_from_a_toml_file_and_the_environment_wins(
    fake_ollama: FakeOllama, tmp_path: Path
) -> None:
    (tmp_path / "bot.toml").write_text('chat_model = "qwen3"\nedit_interval = 2.5\n')
    env = {"OLLAMA_HOST": fake_ollama.url, "BOT_EDIT_INTERVAL": "1.5"}
    code, output = await run_cli("check", env=env, cwd=tmp_path)
    assert "chat_model = qwen3" in output
    assert "edit_interval = 1.5" in output
    assert "Chat model: qwen3 present" in output
    assert code == 1  # no token, and the database was never upgraded


async def test_a_bad_setting_is_reported_clearly(tmp_path: Path) -> None:
    code, output = await run_cli("check", env={"BOT_EDIT_INTERVAL": "soon"}, cwd=tmp_path)
    assert code == 2
    assert "edit_interval" in output


async def test_check_and_logs_mask_url_passwords(tmp_path: Path) -> None:
    env = {
        "DISCORD_TOKEN": "x",
        "DATABASE_URL": "postgresql+asyncpg://bot:s3cret-pw@127.0.0.1:9/botdb",
        "OLLAMA_HOST": "http://ollama-user:hunter2@127.0.0.1:9",
        "BOT_OLLAMA_HOSTS": '["http://ops:letmein@127.0.0.1:9"]',
        "BOT_LOG_LEVEL": "DEBUG",  # whatever is logged along the way is in the output too
    }
    code, output = await run_cli("check", env=env, cwd=tmp_path)
    assert code == 1
    for secret in ("s3cret-pw", "hunter2", "letmein"):
        assert secret not in output, secret
    assert "database_url = postgresql+asyncpg://bot:***@127.0.0.1:9/botdb" in output
    assert "ollama_host = http://ollama-user:***@127.0.0.1:9" in output
    assert "can't reach the Ollama server at http://ops:***@127.0.0.1:9" in output
    assert "Database: not usable" in output

    # `run` fails at the database, logging and printing the error: no password either.
    code, output = await run_cli("run", env=env, cwd=tmp_path)
    assert code != 0
    assert "s3cret-pw" not in output and "hunter2" not in output


async def test_a_bad_setting_is_reported_without_the_urls_password(tmp_path: Path) -> None:
    env = {
        "DATABASE_URL": "postgresql+asyncpg://bot:s3cret-pw@db/botdb",
        "BOT_SHARD_IDS": "[3]",  # invalid without shard_count: pydantic quotes the input
    }
    code, output = await run_cli("check", env=env, cwd=tmp_path)
    assert code == 2 and "Configuration error" in output
    assert "s3cret-pw" not in output
