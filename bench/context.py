"""What a long conversation sends to Ollama: turns and tokens per request, the window asked for
(`num_ctx`) and what Ollama cut, for a conversation of many turns in one channel.

    python -m bench.context                       # 200 turns, this checkout
    python -m bench.context --turns 50
    python -m bench.context --bot-root /tmp/old   # the same conversation with another checkout

The real bot runs in a process of its own (as in `python -m bench`) against the doubles: the
Ollama double runs with Ollama's default window (4,096 tokens, OLLAMA_CONTEXT_LENGTH) unless a
request names another, and cuts a longer prompt from its oldest messages, as Ollama does. This is
not a timing benchmark: it counts what was sent and what the model saw."""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
from dataclasses import dataclass
from pathlib import Path

from bench.harness import ROOT, BotProcess, database, doubles, failed, finished
from tests.doubles.fake_ollama import FakeOllama, RecordedRequest, Script, count_tokens

SUMMARY_MARK = "running summary"
"""A phrase of the bot's summary instructions: tells its summary requests from replies."""

WORDS = [
    "garden",
    "tomato",
    "river",
    "mountain",
    "recipe",
    "budget",
    "holiday",
    "python",
    "database",
    "engine",
    "question",
    "answer",
    "weather",
    "music",
    "history",
    "school",
    "travel",
    "coffee",
    "market",
    "report",
    "meeting",
    "project",
    "deadline",
    "idea",
]


def sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words)).capitalize() + "."


@dataclass(frozen=True)
class Sent:
    """One request the bot sent, as the Ollama double saw it."""

    messages: int
    """Messages sent (system, summary, turns, the question)."""
    tokens: int
    """Their tokens, as the double counts them, before any cut."""
    num_ctx: int | None
    """The window asked for (None: Ollama's default)."""
    window: int
    """The window the model ran with."""
    dropped: int
    """Messages Ollama cut to fit its window."""
    evaluated: int


def sent(record: RecordedRequest) -> Sent:
    body = record.json
    messages = body["messages"]
    return Sent(
        messages=len(messages),
        tokens=sum(count_tokens(m.get("content") or "") + 4 for m in messages),
        num_ctx=(body.get("options") or {}).get("num_ctx"),
        window=record.num_ctx or 0,
        dropped=record.dropped,
        evaluated=record.prompt_eval_count or 0,
    )


async def conversation(turns: int, bot_root: Path, seed: int) -> tuple[list[Sent], int]:
    """Drive `turns` /chat turns through the bot in one channel; returns what each reply's
    request sent, and how many summaries were asked for."""
    rng = random.Random(seed)
    async with doubles(channels=1, users=3) as world:
        with database() as url:
            bot = await BotProcess.start(world, url, root=bot_root, user_requests_per_minute=0)
            try:
                for n in range(turns):
                    user = world.users[n % len(world.users)]
                    # replies of 60-140 words, questions of 15-40: a chatty conversation
                    world.ollama.script(Script(reply=sentence(rng, rng.randint(60, 140))))
                    question = f"({n}) " + sentence(rng, rng.randint(15, 40))
                    interaction = await world.discord.slash_command(
                        "chat", {"message": question}, user=user
                    )
                    await world.discord.wait_until(
                        lambda i=interaction: finished(world.discord, i), timeout=30
                    )
                    if failed(world.discord, interaction):
                        raise RuntimeError(f"turn {n} failed:\n{bot.output()}")
                    await _settle(world.ollama)
            finally:
                await bot.stop()
        records = world.ollama.chat_records()
        summaries = [r for r in records if SUMMARY_MARK in str(r.json["messages"][0])]
        replies = [sent(r) for r in records if r not in summaries]
        return replies, len(summaries)


async def _settle(ollama: FakeOllama) -> None:
    """Let a summary the reply set off finish before the next question (as in a conversation
    at human pace), so that every run sees the same sequence."""
    await asyncio.sleep(0.05)
    await ollama.wait_until(lambda: ollama.active_generations == 0, timeout=30)


def report(replies: list[Sent], summaries: int, label: str) -> str:
    last = replies[-50:]
    lines = [
        f"## {label}: {len(replies)} turns in one channel",
        "",
        "| | first request | request 50 | request 100 | last request | mean of the last 50 |",
        "|---|---|---|---|---|---|",
    ]

    def row(name: str, pick: object) -> str:
        values = [pick(r) for r in replies]  # type: ignore[operator]
        at = [values[0], values[min(49, len(values) - 1)], values[min(99, len(values) - 1)]]
        tail = [pick(r) for r in last]  # type: ignore[operator]
        numeric = all(isinstance(v, int) for v in tail)
        shown = [*at, values[-1], round(statistics.mean(tail), 1) if numeric else tail[-1]]
        return f"| {name} | " + " | ".join(str(v) for v in shown) + " |"

    lines.append(row("messages sent", lambda r: r.messages))
    lines.append(row("tokens sent", lambda r: r.tokens))
    lines.append(row("num_ctx asked", lambda r: r.num_ctx if r.num_ctx else "none"))
    lines.append(row("window Ollama ran", lambda r: r.window))
    lines.append(row("messages Ollama cut", lambda r: r.dropped))
    lines.append(row("tokens the model saw", lambda r: r.evaluated))
    cut = sum(1 for r in replies if r.dropped)
    lines += [
        "",
        f"requests cut by Ollama: {cut} of {len(replies)}; "
        f"messages cut in all: {sum(r.dropped for r in replies)}; summaries written: {summaries}",
    ]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.context", description=__doc__)
    p.add_argument("--turns", type=int, default=200)
    p.add_argument("--seed", type=int, default=18)
    p.add_argument("--bot-root", type=Path, default=ROOT, help="the checkout the bot runs from")
    p.add_argument("--label", default="this checkout")
    args = p.parse_args()
    replies, summaries = asyncio.run(conversation(args.turns, args.bot_root, args.seed))
    print(report(replies, summaries, args.label))


if __name__ == "__main__":
    main()
