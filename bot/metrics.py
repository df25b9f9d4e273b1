"""Prometheus metrics: one registry per bot (never the library's global one), and an optional
endpoint that serves it (`metrics_port`).

The endpoint runs on the bot's own event loop with aiohttp, which discord.py already depends
on: no thread, and it stops with the bot. Without an endpoint nothing could read the counts, so
nothing is counted and `prometheus_client` is never imported (resident memory, bench/README.md)."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable
from typing import TYPE_CHECKING, TypeVar

from aiohttp import web
from discord import app_commands

from bot.ollama.protocol import ChatDelta, ChatStats, OllamaHosts

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import Metric

log = logging.getLogger(__name__)
T = TypeVar("T")

OUTCOMES = ("complete", "stopped", "failed", "incomplete")
OTHER_MODEL = "other"
"""The `model` label of a generation whose model has not answered yet since the bot started."""
"""How a generation can end (the reply turn's status)."""
FIRST_TOKEN_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120)
GENERATION_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600)


class Metrics:
    """What the bot counts. Every name starts with `ollama_bot_`. With `enabled` false (no
    endpoint to serve them) every method does nothing."""

    def __init__(self, *, enabled: bool = True) -> None:
        self.enabled = enabled
        if not enabled:
            return
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry: CollectorRegistry = CollectorRegistry()
        registry = self.registry
        # `model` is a model that has answered since the bot started, else "other": a name
        # typed into /chat that is not installed never becomes a label. No user or guild label.
        self.generations = Counter(
            "ollama_bot_generations",
            "Chat generations by how they ended, and model",
            ["outcome", "model"],
            registry=registry,
        )
        for outcome in OUTCOMES:
            self.generations.labels(outcome, OTHER_MODEL)
        self.tokens = Counter(
            "ollama_bot_tokens",
            "Tokens of chat generations as Ollama counted them: prompt (read) or completion "
            "(written), by model",
            ["kind", "model"],
            registry=registry,
        )
        self.thinking_tokens = Counter(
            "ollama_bot_thinking_tokens",
            "Reasoning tokens of chat generations (one per streamed piece; Ollama counts them "
            "in the completion tokens too)",
            registry=registry,
        )
        self._answered: set[str] = set()
        self.queue_depth = Gauge(
            "ollama_bot_queue_depth", "Requests waiting for a generation slot", registry=registry
        )
        self.active = Gauge(
            "ollama_bot_active_generations", "Generations running now", registry=registry
        )
        self.first_token = Histogram(
            "ollama_bot_time_to_first_token_seconds",
            "From asking Ollama to the first token of the reply (thinking included)",
            buckets=FIRST_TOKEN_BUCKETS,
            registry=registry,
        )
        self.first_answer_token = Histogram(
            "ollama_bot_time_to_first_answer_token_seconds",
            "From asking Ollama to the first token of the answer itself (after any thinking)",
            buckets=FIRST_TOKEN_BUCKETS,
            registry=registry,
        )
        self.generation_time = Histogram(
            "ollama_bot_generation_seconds",
            "From asking Ollama to the end of a complete reply",
            buckets=GENERATION_BUCKETS,
            registry=registry,
        )
        self.errors = Counter(
            "ollama_bot_errors",
            "Errors shown to users, by kind (the error's class)",
            ["kind"],
            registry=registry,
        )

    def watch_queue(self, *, waiting: Callable[[], int], active: Callable[[], int]) -> None:
        """The queue gauges read these at each scrape."""
        if not self.enabled:
            return
        self.queue_depth.set_function(waiting)
        self.active.set_function(active)

    def watch_ollama(self, pool: OllamaHosts) -> None:
        """Per-host gauges and counters, read from the pool at each scrape."""
        if self.enabled:
            self.registry.register(_PoolCollector(pool))

    def observe(self, stream: AsyncGenerator[T]) -> AsyncGenerator[T]:
        """Pass a model stream through, timing its first token, its first answer token and its
        end, counting tokens (reasoning ones apart); other events (tool steps) pass as they
        are."""
        return self._observed(stream) if self.enabled else stream

    async def _observed(self, stream: AsyncGenerator[T]) -> AsyncGenerator[T]:
        asked = time.monotonic()
        first = True
        answered = False
        async with contextlib.aclosing(stream):
            async for item in stream:
                if first:
                    self.first_token.observe(time.monotonic() - asked)
                    first = False
                if isinstance(item, ChatDelta):
                    if item.thinking:
                        self.thinking_tokens.inc()
                    if item.content and not answered:
                        self.first_answer_token.observe(time.monotonic() - asked)
                        answered = True
                if isinstance(item, ChatStats):
                    self.generation_time.observe(time.monotonic() - asked)
                    self._answered.add(item.model)
                    self.tokens.labels("prompt", item.model).inc(item.prompt_tokens or 0)
                    self.tokens.labels("completion", item.model).inc(item.completion_tokens or 0)
                yield item

    def generation_ended(self, outcome: str, model: str) -> None:
        if not self.enabled:
            return
        label = model if model in self._answered else OTHER_MODEL
        self.generations.labels(outcome, label).inc()

    def error(self, error: BaseException) -> None:
        if not self.enabled:
            return
        if isinstance(error, app_commands.CommandInvokeError):
            error = error.original
        self.errors.labels(type(error).__name__).inc()

    def exposition(self) -> bytes:
        """The metrics in Prometheus' text format."""
        from prometheus_client.exposition import generate_latest

        return generate_latest(self.registry)


class _PoolCollector:
    """A prometheus_client `Collector` (a Protocol: it only needs `collect`)."""

    def __init__(self, pool: OllamaHosts) -> None:
        self._pool = pool

    def collect(self) -> Iterable[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        up = GaugeMetricFamily(
            "ollama_bot_ollama_host_up", "Whether the Ollama host answers", labels=["host"]
        )
        busy = GaugeMetricFamily(
            "ollama_bot_ollama_host_generations_in_flight",
            "Generations from this bot running on the host",
            labels=["host"],
        )
        sent = CounterMetricFamily(
            "ollama_bot_ollama_host_generations",
            "Generations sent to the host",
            labels=["host"],
        )
        failures = CounterMetricFamily(
            "ollama_bot_ollama_host_failures",
            "Times the host could not be reached",
            labels=["host"],
        )
        for state in self._pool.states():
            up.add_metric([state.host], 1 if state.up else 0)
            busy.add_metric([state.host], state.in_flight)
            sent.add_metric([state.host], state.generations)
            failures.add_metric([state.host], state.failures)
        return [up, busy, sent, failures]


@contextlib.asynccontextmanager
async def serve_metrics(metrics: Metrics, host: str, port: int) -> AsyncIterator[str]:
    """Serve `/metrics` on host:port while the context is open; yields the endpoint's URL."""

    from prometheus_client import CONTENT_TYPE_LATEST

    async def scrape(request: web.Request) -> web.Response:
        response = web.Response(body=metrics.exposition())
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    app = web.Application()
    app.router.add_get("/metrics", scrape)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        url = f"http://{host}:{port}/metrics"
        log.info("serving Prometheus metrics at %s", url)
        yield url
    finally:
        await runner.cleanup()
