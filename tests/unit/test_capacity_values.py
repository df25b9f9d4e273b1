"""keep_alive as written by people, the rough waits in queue notices, the capacity footers."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from bot.conversation.service import ReplyFinished
from bot.ollama.protocol import ChatStats
from bot.replies import about, footer, waiting_text
from bot.settings import Settings, keep_alive_value


@pytest.mark.parametrize(
    ("written", "sent"),
    [
        ("10m", "10m"),
        ("1h30m", "1h30m"),
        ("-1m", "-1m"),
        ("1.5h", "1.5h"),
        ("300", 300.0),
        ("-1", -1.0),
        ("0", 0.0),
        (" 24h ", "24h"),
    ],
)
def test_keep_alive_is_sent_as_ollama_takes_it(written: str, sent: str | float) -> None:
    # Ollama answers 400 to a unitless string such as "10": numbers go as numbers.
    assert keep_alive_value(written) == sent


@pytest.mark.parametrize("written", ["soon", "10 minutes", "m", "1d", ""])
def test_keep_alive_that_ollama_would_refuse_is_refused(written: str) -> None:
    with pytest.raises(ValueError, match="neither seconds nor a duration"):
        keep_alive_value(written)


def test_settings_check_keep_alive_values() -> None:
    assert Settings(keep_alive=600).keep_alive == "600"
    assert Settings(keep_alive="").keep_alive is None
    with pytest.raises(ValidationError):
        Settings(keep_alive="a while")
    with pytest.raises(ValidationError):
        Settings(keep_alive_per_model={"qwen3": "forever"})


@pytest.mark.parametrize(
    ("seconds", "said"),
    [(0.2, "1 s"), (3.4, "3 s"), (12, "10 s"), (43, "45 s"), (59, "60 s"), (200, "3 min")],
)
def test_waits_are_said_roughly(seconds: float, said: str) -> None:
    assert about(seconds) == said


def test_a_waiting_notice_without_an_estimate_says_only_the_place() -> None:
    assert waiting_text(2) == "⏳ Waiting for the model: you are number 2 in line."
    assert waiting_text(3, 40.2) == (
        "⏳ Waiting for the model: you are number 3 in line (about 40 s)."
    )


def stats(model: str, load_ns: int) -> ChatStats:
    return ChatStats(model, "stop", 10, 41, 2_000_000_000, load_ns, 1, 1_000_000_000)


def test_footers_say_a_load_that_was_waited_for_and_a_fallback() -> None:
    loaded = ReplyFinished("", stats("qwen3", 5_100_000_000), loaded_model=True)
    assert footer(loaded) == "-# qwen3 · loaded in 5.1 s · 41.0 tokens/s"
    quick = ReplyFinished("", stats("qwen3", 3_000_000), loaded_model=True)
    assert footer(quick) == "-# qwen3 · 41.0 tokens/s"  # milliseconds: no one waited
    warm = ReplyFinished("", stats("qwen3", 5_100_000_000))
    assert footer(warm) == "-# qwen3 · 41.0 tokens/s"
    fallback = ReplyFinished(
        "", stats("llama3.2", 1), fallback_from="qwen3", fallback_reason="busy"
    )
    assert footer(fallback) == "-# answered by llama3.2 (qwen3 busy) · 41.0 tokens/s"
