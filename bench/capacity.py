"""Scenario: how many requests wait for a model to load, with and without load-aware routing.

Two Ollama doubles (`FakeOllama`) whose GPU holds one model at a time (OLLAMA_MAX_LOADED_MODELS
1: loading another evicts the idle one) and where a load takes `load_delay` seconds (5). The
same seeded stream of requests for three models (60 %, 30 % and 10 % of them), arriving at
random (on average one every `gap` seconds; a reply takes about one second), at most two at a
time (the bot's default cap with two hosts of OLLAMA_NUM_PARALLEL 1), goes through the bot's own
`OllamaPool` twice: choosing hosts by what they have loaded (`/api/ps`, the default), and by
the bot's own count of generations alone (`load_aware=False`, as before issue 19). A request
that hit a cold model is one whose generation had to load it (the double's `loads`)."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass

from bench.report import Figure
from bot.ollama.pool import OllamaPool
from bot.ollama.protocol import ChatMessage, ChatStats
from tests.doubles.fake_ollama import FakeOllama, Script

SCENARIO = "capacity"
MODELS = (("llama3.2", 0.6), ("qwen3", 0.3), ("llava", 0.1))
REPLY = Script(reply=[f"w{n} " for n in range(20)], token_interval=0.05)


@dataclass(frozen=True)
class CapacityOptions:
    requests: int = 30
    load_delay: float = 5.0
    concurrency: int = 2
    gap: float = 1.0
    seed: int = 19


@dataclass(frozen=True)
class Outcome:
    cold: int
    requests: int
    seconds: float
    waited_for_loads: float
    """Seconds of load_duration summed over the requests."""


def plan(options: CapacityOptions) -> list[tuple[float, str]]:
    """(seconds after the previous request, model) for each request."""
    chooser = random.Random(options.seed)
    names = [name for name, _ in MODELS]
    weights = [weight for _, weight in MODELS]
    models = chooser.choices(names, weights, k=options.requests)
    return [(chooser.expovariate(1 / options.gap), model) for model in models]


async def once(options: CapacityOptions, *, load_aware: bool) -> Outcome:
    async with (
        FakeOllama(load_delay=options.load_delay, max_loaded_models=1, validate_schemas=False) as a,
        FakeOllama(load_delay=options.load_delay, max_loaded_models=1, validate_schemas=False) as b,
    ):
        pool = OllamaPool([a.url, b.url], load_aware=load_aware, tags_ttl=60.0)
        slots = asyncio.Semaphore(options.concurrency)  # the bot's own cap
        loads: list[float] = []

        async def request(model: str) -> None:
            async with slots:
                async for item in pool.chat_stream(model, [ChatMessage("user", "hi")]):
                    if isinstance(item, ChatStats):
                        loads.append((item.load_duration_ns or 0) / 1e9)

        for fake in (a, b):
            fake.script(*[REPLY] * options.requests)
        began = time.monotonic()
        tasks = []
        try:
            for gap, model in plan(options):
                await asyncio.sleep(gap)
                tasks.append(asyncio.create_task(request(model)))
            await asyncio.gather(*tasks)
        finally:
            await pool.close()
        return Outcome(a.loads + b.loads, options.requests, time.monotonic() - began, sum(loads))


async def run(options: CapacityOptions) -> list[Figure]:
    aware = await once(options, load_aware=True)
    blind = await once(options, load_aware=False)
    note = (
        f"{options.requests} requests for 3 models, one every {options.gap:g} s on average, "
        f"at most {options.concurrency} at a time; 2 hosts holding 1 model each, loads of "
        f"{options.load_delay:g} s"
    )
    figures = []
    for label, outcome in (("load-aware", aware), ("least busy only", blind)):
        figures += [
            Figure(
                SCENARIO,
                f"requests that hit a cold model, {label}",
                100 * outcome.cold / outcome.requests,
                "%",
                digits=0,
                note=note,
            ),
            Figure(
                SCENARIO,
                f"time spent loading, {label}",
                outcome.waited_for_loads,
                "s",
                digits=0,
                note=f"the whole run took {outcome.seconds:.0f} s",
            ),
        ]
    return figures


if __name__ == "__main__":
    from bench.report import table

    print(table(asyncio.run(run(CapacityOptions()))))
