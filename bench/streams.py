"""Scenario 2: long replies at realistic speeds, through the bot and read raw.

For each speed (tokens a second) the Ollama double streams the same reply twice at the same time:
once to the bot, for a /chat in a channel of its own, and once to the plain ollama client in the
bench process. The figure is the bot's wall time (INTERACTION_CREATE sent to the final edit
applied) divided by the raw read's (request sent to the last line read). All speeds run at once,
each with its own model so that the double's scripts cannot be swapped between them. The bot
runs with its default settings (an edit of each message at most once a second) but one
generation slot per speed (BOT_MAX_PARALLEL_GENERATIONS), so that no reply waits for another.

Also shown, from the double's stamps: edits per message, 429s from the Discord double, how long
after the model's first token the first text showed and after its last the final edit landed
(product.md promises 50 ms and 100 ms)."""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import ollama

from bench.harness import (
    BotProcess,
    Doubles,
    Watcher,
    database,
    doubles,
    failed,
    migrated,
    pieces,
    profiled,
)
from bench.report import Figure
from tests.doubles.fake_discord import FakeInteraction
from tests.doubles.fake_ollama import FakeModel, RecordedRequest, Script

SCENARIO = "streaming"
WORDS = ("the ", "model ", "writes ", "a ", "long ", "answer ", "about ", "it", ", ", "and ")
RAW_QUESTION = "raw read"


@dataclass(frozen=True)
class StreamOptions:
    rates: tuple[float, ...] = (20.0, 50.0, 100.0)
    tokens: int = 1_500
    error_after: int | None = None
    """Have the Ollama double end every reply with an error after this many tokens: the smoke
    test's check that a failed reply counts as failed."""


def reply(tokens: int) -> list[str]:
    """About four characters a token, like English text."""
    return [WORDS[n % len(WORDS)] for n in range(tokens)]


BOT_WINDOW = 8192
"""The window the bot asks for these models (its default context_tokens_max)."""


def model_name(rate: float) -> str:
    return f"bench{rate:g}".replace(".", "-")


async def read_raw(client: ollama.AsyncClient, model: str) -> float:
    """Seconds to read one whole reply with the ollama client alone. It asks for the window
    the bot asks for (`context_tokens_max`): a model loaded with another `num_ctx` is loaded
    again, and waits for the other's request to end, in Ollama as in its double."""
    began = time.monotonic()
    stream = await client.chat(
        model=model,
        messages=[{"role": "user", "content": RAW_QUESTION}],
        stream=True,
        options={"num_ctx": BOT_WINDOW},
    )
    async for _ in stream:
        pass
    return time.monotonic() - began


async def run(options: StreamOptions, profile: Path | None = None) -> list[Figure]:
    async with doubles(channels=len(options.rates) + 1) as world:
        for rate in options.rates:
            world.ollama.add_model(FakeModel(name=model_name(rate)))
        with database() as url:
            await migrated(url)
            # One generation slot per speed, so that none waits for another.
            bot = await BotProcess.start(world, url, max_parallel_generations=len(options.rates))
            try:
                return await _measure(world, bot, options, profile)
            finally:
                await bot.stop()


async def _measure(
    world: Doubles, bot: BotProcess, options: StreamOptions, profile: Path | None
) -> list[Figure]:
    fake, ollama_double = world.discord, world.ollama
    tokens = reply(options.tokens)
    async with Watcher(fake) as watcher:
        warmup = await fake.slash_command(
            "chat", {"message": "hello"}, channel_id=world.channels[-1]
        )
        await asyncio.wait_for(watcher.watch(warmup), 30)
        limited_before = len(fake.rate_limited)

        async def through_bot(rate: float, channel: str) -> FakeInteraction:
            interaction = await fake.slash_command(
                "chat",
                {"message": f"a long answer at {rate:g} tokens/s", "model": model_name(rate)},
                channel_id=channel,
            )
            await asyncio.wait_for(watcher.watch(interaction), options.tokens / rate + 60)
            return interaction

        for rate in options.rates:  # two identical scripts per model: whoever asks first
            script = Script(
                reply=tokens,
                token_interval=1 / rate,
                model=model_name(rate),
                error_after=options.error_after,
            )
            ollama_double.script(script, script)
        # Made beforehand: building a client (its SSL context) would stall this process's loop,
        # which serves the doubles, for tens of milliseconds each.
        clients = [ollama.AsyncClient(host=ollama_double.url) for _ in options.rates]
        async with profiled(bot, profile, "streaming"):
            results = await asyncio.gather(
                *(through_bot(r, c) for r, c in zip(options.rates, world.channels, strict=False)),
                *(read_raw(c, model_name(r)) for c, r in zip(clients, options.rates, strict=True)),
                return_exceptions=True,
            )
        for client in clients:
            with contextlib.suppress(Exception):
                await client.close()
    bot_replies = results[: len(options.rates)]
    raw_times = results[len(options.rates) :]
    limited = len(fake.rate_limited) - limited_before

    figures = []
    first_texts, final_edits, edit_counts = [], [], []
    failures = 0
    for rate, interaction, raw in zip(options.rates, bot_replies, raw_times, strict=True):
        name = f"wall time through the bot / raw, {rate:g} tokens/s"
        # A reply that ended in a warning (⚠️) instead of its footer, or never ended, failed:
        # its time is no figure of a streamed reply.
        if not isinstance(interaction, FakeInteraction) or failed(fake, interaction):
            failures += 1
            why = "no reply" if not isinstance(interaction, FakeInteraction) else "failed"
            figures.append(
                Figure(SCENARIO, name, None, "×", 1.02, inclusive=True, note=f"reply {why}")
            )
            continue
        if not isinstance(raw, float):
            note = f"raw read failed: {raw!r}"
            figures.append(Figure(SCENARIO, name, None, "×", 1.02, inclusive=True, note=note))
            continue
        shown = pieces(fake, interaction)
        final = max(t for m in shown for t, _ in m.edits)
        through = final - interaction.created_at
        request = bot_request(ollama_double.requests, model_name(rate))
        first_texts.append((shown[0].edits[0][0] - request.sent[0]) * 1000)
        final_edits.append((final - request.sent[-1]) * 1000)
        edits = [len(m.edits) for m in shown]
        edit_counts += edits
        figures.append(
            Figure(
                SCENARIO,
                name,
                through / raw,
                "×",
                limit=1.02,
                inclusive=True,
                digits=3,
                note=f"{through:.2f} s / {raw:.2f} s; {len(shown)} messages, "
                f"edits per message {edits}",
            )
        )
    figures += [
        Figure(
            SCENARIO,
            "failed replies",
            failures,
            "",
            limit=0,
            inclusive=True,
            digits=0,
            note=f"of {len(options.rates)}; a reply ending in a warning counts as failed",
        ),
        Figure(
            SCENARIO,
            "429s from the Discord double",
            limited,
            "",
            limit=0,
            inclusive=True,
            digits=0,
        ),
        Figure(
            SCENARIO,
            "edits per message (mean)",
            statistics.mean(edit_counts) if edit_counts else None,
            "",
            note=f"{options.tokens} tokens a reply; edits of one message at most 1/s",
        ),
        Figure(
            SCENARIO,
            "first text after the first token (worst)",
            max(first_texts, default=None),
            "ms",
            limit=50,
            note="product.md promise",
        ),
        Figure(
            SCENARIO,
            "final edit after the last token (worst)",
            max(final_edits, default=None),
            "ms",
            limit=100,
            note="product.md promise",
        ),
    ]
    return figures


def bot_request(requests: list[RecordedRequest], model: str) -> RecordedRequest:
    """The bot's streamed /api/chat for `model` (the raw read asks RAW_QUESTION)."""
    for request in requests:
        body = request.json if isinstance(request.json, dict) else {}
        messages = body.get("messages") or [{}]
        if (
            request.path == "/api/chat"
            and body.get("model") == model
            and messages[-1].get("content") != RAW_QUESTION
        ):
            return request
    raise LookupError(f"no /api/chat from the bot for {model}")
