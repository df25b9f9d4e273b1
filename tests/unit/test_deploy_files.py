"""The files in deploy/ stay true to the bot they deploy."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

from bot.settings import Settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
CONTRACT = {"discord_token", "ollama_host", "database_url"}


def test_the_example_config_documents_every_setting_and_loads() -> None:
    text = (DEPLOY / "bot.example.toml").read_text()
    documented = set(re.findall(r"^#? ?([a-z_]+) = ", text, flags=re.MULTILINE))
    assert set(Settings.model_fields) - CONTRACT <= documented
    values = tomllib.loads(text)
    settings = Settings(**values)
    defaults = Settings()
    for key in values:
        assert getattr(settings, key) == getattr(defaults, key), (
            f"{key}: the example is not the default"
        )


def test_compose_runs_the_bot_beside_ollama_with_named_volumes() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert services["bot"]["environment"]["OLLAMA_HOST"] == "http://ollama:11434"
    assert services["bot"]["build"]["dockerfile"] == "deploy/Dockerfile"
    assert "ollama" in services["bot"]["depends_on"]
    named = set(compose["volumes"])
    for service in ("bot", "ollama"):
        for volume in services[service]["volumes"]:
            assert volume.split(":")[0] in named


def test_compose_lets_the_bot_finish_its_replies_when_stopped() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    grace = compose["services"]["bot"]["stop_grace_period"]
    match = re.fullmatch(r"(\d+)s", str(grace))
    assert match, grace
    # shutdown_grace for replies, then up to 5 s to cut the rest short and close.
    assert int(match.group(1)) > Settings().shutdown_grace + 5


def test_the_image_runs_as_non_root_with_a_health_check() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^USER bot$", dockerfile, flags=re.MULTILINE)
    assert "HEALTHCHECK" in dockerfile and '"check"' in dockerfile
    assert 'CMD ["ollama-discord-bot", "run"]' in dockerfile


def test_the_env_example_names_the_contract_variables() -> None:
    text = (DEPLOY / ".env.example").read_text()
    for name in ("DISCORD_TOKEN", "OLLAMA_HOST", "DATABASE_URL"):
        assert name in text
