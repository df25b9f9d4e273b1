"""Model names, pull progress arithmetic and the /model renderings (plain values only)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from bot.cogs.models import (
    human_bytes,
    list_pages,
    model_line,
    processor,
    progress_bar,
    render_card,
    render_loaded,
    render_pull,
)
from bot.conversation.splitter import DISCORD_LIMIT
from bot.models.names import canonical_name, same_model
from bot.models.service import PullJob, PullState, PullTracker
from bot.ollama.protocol import InstalledModel, LoadedModel, ModelCard, PullProgress


def test_canonical_names_compare_like_ollama() -> None:
    assert canonical_name("Llama3.2") == "llama3.2:latest"
    assert canonical_name(" qwen3:8B ") == "qwen3:8b"
    assert canonical_name("registry.ollama.ai/library/qwen3") == "qwen3:latest"
    assert canonical_name("library/qwen3:4b") == "qwen3:4b"
    assert (
        canonical_name("hf.co/bartowski/Model-GGUF:Q4_K_M") == "hf.co/bartowski/model-gguf:q4_k_m"
    )
    assert canonical_name("localhost:5000/me/model") == "localhost:5000/me/model:latest"
    assert same_model("llama3.2", "LLAMA3.2:latest")
    assert not same_model("llama3.2", "llama3.2:1b")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_pull_tracker_sums_all_layers_and_measures_speed() -> None:
    clock = Clock()
    tracker = PullTracker("m", clock=clock)
    tracker.feed(PullProgress("pulling manifest"))
    assert tracker.state().fraction is None
    # A layer already on disk reports complete at once: it counts in the sum, not in the speed.
    tracker.feed(PullProgress("pulling aaa", "sha256:a", total=1_000, completed=1_000))
    tracker.feed(PullProgress("pulling bbb", "sha256:b", total=9_000))
    for second in range(1, 4):
        clock.now += 1
        tracker.feed(PullProgress("pulling bbb", "sha256:b", total=9_000, completed=2_000 * second))
    state = tracker.state()
    assert (state.completed, state.total, state.layers) == (7_000, 10_000, 2)
    assert state.fraction == 0.7
    assert state.bytes_per_second == 2_000
    assert state.status == "pulling bbb"


def test_pull_tracker_speed_covers_only_the_last_seconds() -> None:
    clock = Clock()
    tracker = PullTracker("m", clock=clock)
    tracker.feed(PullProgress("pulling b", "sha256:b", total=10**9))
    done = 0
    for rate in [1_000_000] * 10 + [100_000] * 10:  # fast, then slow for ten seconds
        clock.now += 1
        done += rate
        tracker.feed(PullProgress("pulling b", "sha256:b", total=10**9, completed=done))
    speed = tracker.state().bytes_per_second
    assert speed is not None and 100_000 <= speed <= 300_000


async def test_pull_job_watchers_see_the_newest_state_and_the_end() -> None:
    job = PullJob("m")
    seen: list[PullState] = []

    async def watch() -> None:
        async for state in job.updates():
            seen.append(state)

    watcher = asyncio.create_task(watch())
    await asyncio.sleep(0)
    job.publish(PullState("m", status="a"))
    job.publish(PullState("m", status="b"))  # before the watcher ran: "a" is skipped
    await asyncio.sleep(0)
    job.publish(PullState("m", status="success", finished=True))
    await asyncio.wait_for(watcher, 1)
    assert [s.status for s in seen] == ["starting the download", "b", "success"]
    assert (await job.wait()).succeeded


def test_human_bytes_uses_decimal_units() -> None:
    assert [human_bytes(n) for n in (0, 999, 1_000, 2_019_393_189, 4_733_363_377, 123e6)] == [
        "0 B",
        "999 B",
        "1.0 KB",
        "2.0 GB",
        "4.7 GB",
        "123 MB",
    ]


def test_progress_bar() -> None:
    assert progress_bar(0) == "░" * 20
    assert progress_bar(0.5) == "█" * 10 + "░" * 10
    assert progress_bar(1.5) == "█" * 20


def test_render_pull_while_running_and_at_the_end() -> None:
    running = PullState(
        "qwen3",
        status="pulling 0123abcd4567",
        completed=1_200_000_000,
        total=2_600_000_000,
        layers=2,
        bytes_per_second=31_000_000,
    )
    assert render_pull(running) == (
        "⬇️ Pulling `qwen3`\n"
        f"`{'█' * 9}{'░' * 11}` 46%\n"
        "1.2 GB of 2.6 GB · 31.0 MB/s\n"
        "-# pulling 0123abcd4567"
    )
    assert "joined the download already running" in render_pull(running, joined=True)
    done = PullState("qwen3", status="success", completed=5, total=2_600_000_000, finished=True)
    assert render_pull(done).startswith("✅ Pulled `qwen3` (2.6 GB).")
    failed = PullState("qwen3", finished=True, error="There is no model `qwen3`.")
    assert render_pull(failed) == "⚠️ There is no model `qwen3`."


def installed(name: str) -> InstalledModel:
    return InstalledModel(
        name=name,
        size=2_000_000_000,
        family="llama",
        parameter_size="3.2B",
        quantization="Q4_K_M",
        capabilities=("completion", "tools", "vision", "thinking"),
    )


def test_model_list_pages_always_fit_one_message() -> None:
    models = [installed(f"hf.co/someone/{'x' * 150}-{n}:Q4_K_M") for n in range(23)]
    pages = list_pages(models, 10)
    assert len(pages) == 3 and "page 3 of 3" in pages[-1]
    assert all(len(page) <= DISCORD_LIMIT for page in pages)
    assert model_line(models[0]).startswith("`hf.co/someone/xxx")
    assert model_line(installed("a`b")).startswith("`aˋb` · 3.2B")  # no early end of code


def test_model_card_fits_one_message_whatever_the_system_prompt() -> None:
    card = ModelCard(
        name="big",
        architecture="llama",
        parameter_size="70B",
        parameter_count=None,
        context_length=131072,
        embedding_length=8192,
        quantization="Q4_K_M",
        capabilities=("completion",),
        parameters=tuple((f"stop{n}", '"x"' * 30) for n in range(40)),
        system="```\n" + "Be helpful. " * 1000,
        license="MIT\nsecond line\nthird line",
    )
    text = render_card(card)
    assert len(text) <= DISCORD_LIMIT
    assert text.endswith("```") and text.count("```") == 2  # the prompt's fence is defused
    assert "… and" in text and "    MIT\n    second line\n```" in text


def test_loaded_models_say_where_they_run_and_when_they_unload() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)

    def loaded(size_vram: int, expires: datetime | None) -> LoadedModel:
        return LoadedModel("m:latest", 1000, size_vram, expires, 4096)

    assert processor(loaded(1000, None)) == "100% GPU"
    assert processor(loaded(0, None)) == "100% CPU"
    assert processor(loaded(520, None)) == "48%/52% CPU/GPU"
    text = render_loaded(
        [loaded(1000, now + timedelta(minutes=5)), loaded(1000, now + timedelta(days=365 * 292))],
        now,
    )
    assert f"unloads <t:{int((now + timedelta(minutes=5)).timestamp())}:R>" in text
    assert text.splitlines()[2].endswith("stays loaded")
