"""Scenario: a thinking model's reply, through the real bot (issue 14's figure).

A thinking model (the Ollama double with `thinking` in its capabilities) thinks for 30 s (its
reasoning streamed as `message.thinking` chunks with empty content, as Ollama sends them), then
writes a 500-token answer, both at 40 tokens a second. The bot runs with its defaults (edits of a
message at most once a second). The reply shows `💭 Thinking… N s` while the model thinks, then
the answer. Figures, from the Discord double's own stamps: edits of each message, the most edits
of one message in any window of Discord's per-message budget (5 in 5 s), and 429s (target 0).

    python -m bench --only thinking
    python -m bench.thinking --thinking-seconds 30 --answer-tokens 500 --rate 40
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.harness import BotProcess, Doubles, Watcher, database, doubles, pieces, profiled
from bench.report import Figure, table
from tests.doubles.fake_discord import FakeMessage
from tests.doubles.fake_ollama import FakeModel, Script

SCENARIO = "thinking"
MODEL = "thinker"
WORDS = ("the ", "model ", "writes ", "a ", "long ", "answer ", "about ", "it", ", ", "and ")
BUDGET = (5, 5.0)
"""Discord's edits of one message per window of seconds (the double's `edit_budget`)."""


@dataclass(frozen=True)
class ThinkingOptions:
    thinking_seconds: float = 30.0
    answer_tokens: int = 500
    rate: float = 40.0


def most_in_a_window(times: Sequence[float], window: float) -> int:
    """The most of `times` that fall in any `window` seconds."""
    ordered = sorted(times)
    most = start = 0
    for end, at in enumerate(ordered):
        while at - ordered[start] >= window:
            start += 1
        most = max(most, end - start + 1)
    return most


async def run(options: ThinkingOptions, profile: Path | None = None) -> list[Figure]:
    async with doubles(channels=2) as world:
        world.ollama.add_model(
            FakeModel(name=MODEL, family="qwen3", capabilities=["completion", "thinking"])
        )
        with database() as url:
            bot = await BotProcess.start(world, url)
            try:
                return await _measure(world, bot, options, profile)
            finally:
                await bot.stop()


async def _measure(
    world: Doubles, bot: BotProcess, options: ThinkingOptions, profile: Path | None
) -> list[Figure]:
    fake = world.discord
    thinking = [f"step {n}, " for n in range(int(options.thinking_seconds * options.rate))]
    answer = [WORDS[n % len(WORDS)] for n in range(options.answer_tokens)]
    world.ollama.script(
        Script(reply=answer, thinking=thinking, token_interval=1 / options.rate, final_text="")
    )
    async with Watcher(fake) as watcher:
        limited_before = len(fake.rate_limited)
        async with profiled(bot, profile, SCENARIO):
            interaction = await fake.slash_command(
                "chat", {"message": "think first, then answer", "model": MODEL}
            )
            await asyncio.wait_for(
                watcher.watch(interaction),
                options.thinking_seconds + options.answer_tokens / options.rate + 60,
            )
    limited = len(fake.rate_limited) - limited_before
    shown: list[FakeMessage] = pieces(fake, interaction)
    edits = [len(m.edits) for m in shown]
    statuses = sum("💭 Thinking…" in content for _, content in shown[0].edits)
    busiest = max(most_in_a_window([t for t, _ in m.edits], BUDGET[1]) for m in shown)
    footer = shown[-1].content.rsplit("\n", 1)[-1]
    return [
        Figure(
            SCENARIO,
            f"edits per message, {options.thinking_seconds:g} s thinking + "
            f"{options.answer_tokens} tokens",
            max(edits),
            "",
            digits=0,
            note=f"{len(shown)} messages, edits {edits}; {statuses} of the first message's "
            f"showed the thinking status; footer `{footer}`",
        ),
        Figure(
            SCENARIO,
            f"most edits of one message in {BUDGET[1]:g} s",
            busiest,
            "",
            limit=BUDGET[0],
            inclusive=True,
            digits=0,
        ),
        Figure(SCENARIO, "429s from Discord", limited, "", limit=0, inclusive=True, digits=0),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.thinking", description=__doc__)
    p.add_argument("--thinking-seconds", type=float, default=30.0)
    p.add_argument("--answer-tokens", type=int, default=500)
    p.add_argument("--rate", type=float, default=40.0, help="tokens a second")
    args = p.parse_args(argv)
    options = ThinkingOptions(args.thinking_seconds, args.answer_tokens, args.rate)
    print(table(asyncio.run(run(options))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
