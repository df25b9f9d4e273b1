"""`python -m bot check` reports the vision and sentiment models too."""

from __future__ import annotations

from pathlib import Path

from tests.doubles.fake_ollama import FakeOllama
from tests.integration.test_cli import run_cli


async def test_check_reports_the_task_models(fake_ollama: FakeOllama, tmp_path: Path) -> None:
    env = {"OLLAMA_HOST": fake_ollama.url, "DISCORD_TOKEN": "t"}
    await run_cli("db", "upgrade", env=env, cwd=tmp_path)
    code, output = await run_cli("check", env=env, cwd=tmp_path)
    assert code == 0, output
    assert "Vision model: llava present" in output
    assert "Sentiment model" not in output  # not set: the chat model does it

    wrong = {**env, "BOT_VISION_MODEL": "qwen3", "BOT_SENTIMENT_MODEL": "mistral"}
    code, output = await run_cli("check", env=wrong, cwd=tmp_path)
    assert code == 1
    assert "Vision model: qwen3 present, but it has no `vision` capability" in output
    assert "Sentiment model: The model `mistral` is not installed" in output

    code, output = await run_cli("check", env={**env, "BOT_VISION_MODEL": ""}, cwd=tmp_path)
    assert code == 0, output
    assert "Vision model: not set" in output
