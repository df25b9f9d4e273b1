"""`python -m bot check` with several Ollama hosts, and refusing a bad shard configuration."""

from __future__ import annotations

from pathlib import Path

from tests.doubles.fake_ollama import FakeOllama
from tests.integration.test_cli import run_cli


async def test_check_reports_each_host_and_one_down_host_is_no_failure(
    fake_ollama: FakeOllama, tmp_path: Path
) -> None:
    hosts = f'["{fake_ollama.url}", "http://127.0.0.1:9"]'
    env = {"BOT_OLLAMA_HOSTS": hosts, "DISCORD_TOKEN": "x"}
    await run_cli("db", "upgrade", env=env, cwd=tmp_path)
    code, output = await run_cli("check", env=env, cwd=tmp_path)
    assert code == 0, output
    assert f"Ollama: reachable at {fake_ollama.url}, version {fake_ollama.version}" in output
    assert "can't reach the Ollama server at http://127.0.0.1:9" in output
    assert "Chat model: llama3.2 present" in output

    await fake_ollama.close()
    code, output = await run_cli("check", env=env, cwd=tmp_path)
    assert code == 1, output  # no host answers: that is an outage


async def test_shard_ids_without_a_shard_count_are_refused(tmp_path: Path) -> None:
    env = {"BOT_SHARD_IDS": "[1]", "DISCORD_TOKEN": "x"}
    code, output = await run_cli("run", env=env, cwd=tmp_path)
    assert code == 2
    assert "shard_ids needs shard_count" in output
    env = {"BOT_SHARD_IDS": "[2]", "BOT_SHARD_COUNT": "2", "DISCORD_TOKEN": "x"}
    code, output = await run_cli("run", env=env, cwd=tmp_path)
    assert code == 2
    assert "outside 0..1" in output
