"""OllamaPool: one or several Ollama servers (`OllamaHost`s) used as one `Ollama`.

Each generation goes to a host that has the model (its `/api/tags`, cached for `tags_ttl`
seconds), the one where it is expected to start soonest, judged by what the hosts have loaded
(`/api/ps`, cached for `ps_ttl` seconds and read again after each generation):

- a host that has the model loaded (or is running it for this bot now) and a free generation
  slot (fewer of this bot's generations in flight than `slots_per_host`, Ollama's
  OLLAMA_NUM_PARALLEL) starts it at once;
- a host that does not have it loaded first loads it: as long as the model's recent loads
  took (Ollama's `load_duration`, learnt from the generations that loaded it; nothing before
  the first load is seen);
- a host whose slots are all taken first finishes a generation: as long as the model's recent
  generations took, for each one in flight beyond its slots.

On equal expectations (in whole seconds) the least busy host goes first, then one that has the model loaded, all
of it in GPU memory (`size_vram` = `size`) before one that spills to the CPU, then (for a load)
the one with the most free room, approximated as the fewest bytes of loaded models (Ollama
reports no free memory), so that a load evicts as little as possible. So a model stays on the
host that has it loaded while loads are slow, and a busy model still spreads over the hosts
when loads are quick or the line on its host is long. With `load_aware=False` (for the
benchmark) the least busy host is chosen, as before.

The configured `keep_alive` (per model, else for all) is sent with every generation unless the
caller gives its own (a persona's). A host that cannot
be reached is skipped and probed again in the background after a short wait, doubling while it
stays down; when no host is up, requests still try the down ones (in case one came back).

Model management across hosts: `list_models` and `ps` are the union over the hosts that answer
(each entry names its hosts when there are several), `pull` and `create_model` (personas) act on
every host that answers, `delete_model` deletes from every host that has the model. With one host
the pool adds nothing: no tags are read and every call goes straight to it.

Two helpers carry every call: `_failover` (the first host that answers, for generations and
facts) and `_on_each` / `_on_each_streaming` (every host at once, for model management)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from bot.errors import (
    BotError,
    EmbeddingModelMissing,
    ModelNotFound,
    OllamaBusy,
    OllamaUnavailable,
    PullFailed,
)
from bot.models.names import canonical_name
from bot.ollama.host import OllamaHost
from bot.ollama.protocol import (
    ChatDelta,
    ChatMessage,
    ChatStats,
    Embeddings,
    HostState,
    InstalledModel,
    KeepAlive,
    LoadCallback,
    LoadedModel,
    ModelCard,
    ModelInfo,
    ModelSpec,
    Ollama,
    OllamaHosts,
    PullProgress,
    StructuredReply,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

TAGS_TIMEOUT = 5.0
"""Seconds for a routing look at a host's models: a host this slow is treated as down."""
MAX_RETRY = 60.0
"""The longest wait between two probes of a host that stays down."""
LEARNING_WEIGHT = 0.3
"""Weight of the newest load or generation in the moving averages of their durations."""


WARM_AFTER_GENERATION = 30.0
"""Seconds after this bot's generation of a model during which it counts as loaded on that host
without asking /api/ps (Ollama keeps a model 5 minutes by default; keep_alive 0 unloads it at
once, and is not counted). A /api/ps request for every reply cost more than the reply's own
bookkeeping (bench/README.md)."""


class _Host:
    def __init__(self, server: OllamaHost) -> None:
        self.server = server
        self.in_flight = 0
        self.generations = 0
        self.failures = 0
        self.down = False
        self.retry_in = 0.0
        self.retry_at = 0.0
        self.last_chosen = 0
        self.names: tuple[float, frozenset[str]] | None = None
        """(when read, canonical names) from /api/tags."""
        self.known: frozenset[str] = frozenset()
        """The names of its latest /api/tags, kept while it is down: its models are not lost."""
        self.loaded: tuple[float, dict[str, LoadedModel]] | None = None
        """(when read, canonical name -> entry) from /api/ps."""
        self.running: dict[str, int] = {}
        """Canonical model name -> this bot's generations of it on this host now."""
        self.generated: dict[str, float] = {}
        """Canonical model name -> when this bot's last generation of it there ended (the
        model is surely still loaded a little while after: no /api/ps needed to say so)."""
        self.probe: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return self.server.host

    def state(self) -> HostState:
        return HostState(
            self.url, not self.down, self.in_flight, self.generations, self.failures, self.retry_in
        )


class OllamaPool:
    """Several Ollama servers (or one) used as one; see the module's docstring."""

    def __init__(
        self,
        hosts: Sequence[str],
        *,
        show_ttl: float = 300.0,
        tags_ttl: float = 10.0,
        retry_after: float = 5.0,
        ps_ttl: float = 2.0,
        slots_per_host: int = 1,
        load_aware: bool = True,
        keep_alive: KeepAlive | None = None,
        keep_alive_per_model: Mapping[str, KeepAlive] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not hosts:
            raise ValueError("an Ollama pool needs at least one host")
        self._hosts = [_Host(OllamaHost(host, show_ttl=show_ttl)) for host in hosts]
        self._by_server = {id(h.server): h for h in self._hosts}
        self._tags_ttl = tags_ttl
        self._ps_ttl = ps_ttl
        self._slots_per_host = slots_per_host
        self._load_aware = load_aware
        self._load_seconds: dict[str, float] = {}  # canonical model -> moving average
        self._run_seconds: dict[str, float] = {}
        self._keep_alive = keep_alive
        self._keep_alive_per_model = {
            canonical_name(name): value for name, value in (keep_alive_per_model or {}).items()
        }
        self._retry_after = retry_after
        self._clock = clock
        self._choices = 0

    @property
    def host(self) -> str:
        """The host, or the hosts comma-separated (for messages)."""
        return ", ".join(h.url for h in self._hosts)

    @property
    def hosts(self) -> list[str]:
        return [h.url for h in self._hosts]

    @property
    def several(self) -> bool:
        return len(self._hosts) > 1

    def states(self) -> list[HostState]:
        return [h.state() for h in self._hosts]

    async def close(self) -> None:
        probes = [h.probe for h in self._hosts if h.probe is not None]
        for probe in probes:
            probe.cancel()
        for probe in probes:
            with contextlib.suppress(asyncio.CancelledError):
                await probe
        for host in self._hosts:
            await host.server.close()

    # ---- health ------------------------------------------------------------------------------

    def _failed(self, host: _Host, exc: BaseException) -> None:
        """`host` could not be reached: skip it, and probe it again later."""
        host.failures += 1
        host.names = None
        host.loaded = None
        if not host.down:
            log.warning(
                "ollama host %s is down (%r)%s",
                host.url,
                exc.__cause__ or exc,
                "; trying the others" if self.several else "",
            )
            host.down = True
            host.retry_in = self._retry_after
        else:
            host.retry_in = min(host.retry_in * 2, max(MAX_RETRY, self._retry_after))
        host.retry_at = self._clock() + host.retry_in
        if self.several and (host.probe is None or host.probe.done()):
            host.probe = asyncio.create_task(self._probe(host), name=f"probe {host.url}")

    def _answered(self, host: _Host) -> None:
        if host.down:
            log.info("ollama host %s answers again", host.url)
        host.down = False
        host.retry_in = 0.0

    async def _probe(self, host: _Host) -> None:
        """Ask a down host for its version after each wait, until it answers."""
        while host.down:
            await asyncio.sleep(max(host.retry_at - self._clock(), 0.0))
            if not host.down:
                return
            try:
                await host.server.version()
            except OllamaUnavailable as exc:
                self._failed(host, exc)
            else:
                self._answered(host)

    # ---- choosing a host ---------------------------------------------------------------------

    async def _names(self, host: _Host) -> frozenset[str] | None:
        """The host's models (canonical names), from a recent /api/tags; None if it is down."""
        now = self._clock()
        if host.names is not None and now - host.names[0] < self._tags_ttl:
            return host.names[1]
        try:
            async with asyncio.timeout(TAGS_TIMEOUT):
                names = await host.server.model_names()
        except TimeoutError:
            self._failed(host, OllamaUnavailable(host.url))
            return None
        except OllamaUnavailable as exc:
            self._failed(host, exc)
            return None
        self._answered(host)
        host.names = (now, frozenset(canonical_name(n) for n in names))
        host.known = host.names[1]
        return host.names[1]

    async def _loaded(self, host: _Host) -> dict[str, LoadedModel] | None:
        """The host's loaded models by canonical name, from a recent /api/ps; None when it
        does not say (one that does not answer is then treated as down)."""
        now = self._clock()
        if host.loaded is not None and now - host.loaded[0] < self._ps_ttl:
            return host.loaded[1]
        try:
            async with asyncio.timeout(TAGS_TIMEOUT):
                models = await host.server.ps()
        except TimeoutError:
            self._failed(host, OllamaUnavailable(host.url))
            return None
        except BotError as exc:
            if isinstance(exc, OllamaUnavailable):
                self._failed(host, exc)
            return None
        self._answered(host)
        host.loaded = (now, {canonical_name(m.name): m for m in models})
        return host.loaded[1]

    async def _warm(self, host: _Host, model: str) -> bool:
        """Whether `model` (canonical) is loaded on `host`, or being run there by this bot."""
        if host.running.get(model):
            return True
        ended = host.generated.get(model)
        if ended is not None and self._clock() - ended < WARM_AFTER_GENERATION:
            return True
        loaded = await self._loaded(host)
        return loaded is None or model in loaded  # a host that does not say: no notice

    async def _candidates(self, model: str) -> list[_Host]:
        """Hosts to try for `model`, best first: the up hosts that have it, by what they have
        loaded (see the module's text); else, when only hosts that are down had it, those
        (a generation there raises OllamaUnavailable, not ModelNotFound); else every up host
        (one of them will say the model is missing); down hosts last."""
        if not self.several:
            return list(self._hosts)
        up = [h for h in self._hosts if not h.down]
        found = await asyncio.gather(*(self._names(h) for h in up))
        wanted = canonical_name(model)
        checked = list(zip(up, found, strict=True))
        up = [h for h, names in checked if names is not None]
        having = [h for h, names in checked if names is not None and wanted in names]
        down = sorted((h for h in self._hosts if h.down), key=lambda h: h.retry_at)
        if not having:
            lost = [h for h in down if wanted in h.known]
            if lost:
                return lost
            return sorted(up, key=lambda h: (h.in_flight, h.last_chosen)) + down
        if not self._load_aware or len(having) == 1:
            return sorted(having, key=lambda h: (h.in_flight, h.last_chosen)) + down
        loaded = await asyncio.gather(*(self._loaded(h) for h in having))
        load_cost = _expected(self._load_seconds, wanted)
        run_cost = _expected(self._run_seconds, wanted)
        ranks: dict[int, tuple[float, ...]] = {}
        for host, said in zip(having, loaded, strict=True):
            models: dict[str, LoadedModel] = said or {}
            entry = models.get(wanted)
            warm = bool(host.running.get(wanted)) or entry is not None
            spills = entry is not None and entry.size_vram < entry.size
            beyond = host.in_flight - self._slots_per_host + 1
            cost = (0.0 if warm else load_cost) + max(beyond, 0) * run_cost
            used = 0 if warm else sum(m.size for m in models.values())
            ranks[id(host)] = (
                math.floor(cost),  # in whole seconds: milliseconds are noise, not a reason
                host.in_flight,
                int(not warm),
                int(spills),
                used,
                host.last_chosen,
            )
        return sorted(having, key=lambda h: ranks[id(h)]) + down

    def _learn(self, model: str, stats: ChatStats, loaded: bool) -> None:
        """Learn how long `model`'s loads (when this generation loaded it) and generations
        take, for choosing hosts."""
        load = (stats.load_duration_ns or 0) / 1e9
        if loaded and load:
            _average(self._load_seconds, model, load)
        if stats.total_duration_ns:
            _average(self._run_seconds, model, max(stats.total_duration_ns / 1e9 - load, 0.0))

    def keep_alive_for(self, model: str, given: KeepAlive | None = None) -> KeepAlive | None:
        """What a generation of `model` sends as keep_alive: `given` (a persona's), else the
        model's own setting, else the general one (None: Ollama's default)."""
        if given is not None:
            return given
        return self._keep_alive_per_model.get(canonical_name(model), self._keep_alive)

    @contextlib.asynccontextmanager
    async def _generating(
        self, server: OllamaHost, model: str, on_load: LoadCallback | None
    ) -> AsyncGenerator[Callable[[ChatStats], None]]:
        """Around one generation on `server`: tell `on_load` when the model is not loaded
        there, count the generation as the model's on that host, and read its /api/ps again
        afterwards (the generation loaded the model, or kept it, or unloaded it). Yields what
        to tell the generation's stats, to learn from."""
        host = self._by_server[id(server)]
        key = canonical_name(model)
        warm = True
        if on_load is not None or (self.several and self._load_aware):
            warm = await self._warm(host, key)
        unloads = self.keep_alive_for(model) in (0, "0", "0s", "0m")
        if on_load is not None and not warm:
            on_load(model)
        host.running[key] = host.running.get(key, 0) + 1
        try:
            yield lambda stats: self._learn(key, stats, not warm)
        finally:
            host.running[key] -= 1
            if not host.running[key]:
                del host.running[key]
            host.loaded = None
            if unloads:
                host.generated.pop(key, None)
            else:
                host.generated[key] = self._clock()
                if len(host.generated) > 1000:  # bounded: models come and go
                    host.generated.pop(next(iter(host.generated)))

    def _chosen(self, host: _Host) -> None:
        self._choices += 1
        host.last_chosen = self._choices

    async def _failover(
        self,
        hosts: Sequence[_Host],
        start: Callable[[OllamaHost], AsyncGenerator[T]],
        *,
        generation: bool = False,
    ) -> AsyncGenerator[T]:
        """`start` on the first of `hosts` that answers: a host that cannot be reached, or says
        it is busy, before anything came back is left for the next; once something came back,
        errors are the caller's. A generation counts as in flight on its host meanwhile."""
        error: BotError | None = None
        for host in hosts:
            if generation:
                self._chosen(host)
                host.in_flight += 1
                host.generations += 1
            started = False
            try:
                async with contextlib.aclosing(start(host.server)) as items:
                    async for item in items:
                        if not started:
                            started = True
                            self._answered(host)
                        yield item
                if not started:
                    self._answered(host)
                return
            except OllamaUnavailable as exc:
                if started:
                    raise
                self._failed(host, exc)
                error = exc
            except OllamaBusy as exc:
                if started:
                    raise
                error = exc
            finally:
                if generation:
                    host.in_flight -= 1
        assert error is not None  # there is always a host
        raise error

    async def _first(
        self,
        hosts: Sequence[_Host],
        call: Callable[[OllamaHost], Awaitable[T]],
        *,
        generation: bool = False,
    ) -> T:
        """`call`'s answer from the first of `hosts` that gives one (see `_failover`)."""

        async def once(server: OllamaHost) -> AsyncGenerator[T]:
            yield await call(server)

        answers = self._failover(hosts, once, generation=generation)
        async with contextlib.aclosing(answers):
            async for answer in answers:
                return answer
        raise AssertionError("a failover ends with an answer or an error")

    # ---- generating --------------------------------------------------------------------------

    async def chat_stream(
        self,
        model: str,
        messages: Sequence[ChatMessage],
        *,
        options: Mapping[str, Any] | None = None,
        think: bool | str | None = None,
        tools: Sequence[Mapping[str, Any]] = (),
        keep_alive: KeepAlive | None = None,
        on_load: LoadCallback | None = None,
    ) -> AsyncGenerator[ChatDelta | ChatStats]:
        """OllamaHost.chat_stream on the best host that has the model (see the module's text).
        A host that cannot be reached, or says it is busy, before the reply starts is left for
        the next."""
        keep = self.keep_alive_for(model, keep_alive)

        async def start(server: OllamaHost) -> AsyncGenerator[ChatDelta | ChatStats]:
            async with (
                self._generating(server, model, on_load) as learn,
                contextlib.aclosing(
                    server.chat_stream(
                        model,
                        messages,
                        options=options,
                        think=think,
                        tools=tools,
                        keep_alive=keep,
                    )
                ) as items,
            ):
                async for item in items:
                    if isinstance(item, ChatStats):
                        learn(item)
                    yield item

        stream = self._failover(await self._candidates(model), start, generation=True)
        async with contextlib.aclosing(stream):
            async for item in stream:
                yield item

    async def chat_structured(
        self,
        model: str,
        messages: Sequence[ChatMessage],
        *,
        schema: Mapping[str, Any],
        options: Mapping[str, Any] | None = None,
        think: bool | str | None = None,
        keep_alive: KeepAlive | None = None,
    ) -> StructuredReply:
        keep = self.keep_alive_for(model, keep_alive)

        async def call(server: OllamaHost) -> StructuredReply:
            async with self._generating(server, model, None) as learn:
                reply = await server.chat_structured(
                    model, messages, schema=schema, options=options, think=think, keep_alive=keep
                )
                learn(reply.stats)
                return reply

        return await self._first(await self._candidates(model), call, generation=True)

    async def serves(self, model: str) -> bool:
        """Whether a host that answers has `model` (its cached /api/tags)."""
        wanted = canonical_name(model)
        up = [h for h in self._hosts if not h.down]
        found = await asyncio.gather(*(self._names(h) for h in up))
        return any(names is not None and wanted in names for names in found)

    async def embed(self, model: str, texts: Sequence[str]) -> Embeddings:
        try:
            return await self._first(
                await self._candidates(model), lambda server: server.embed(model, texts)
            )
        except EmbeddingModelMissing:
            raise
        except ModelNotFound as exc:  # said by a host for the pool: the same fix
            raise EmbeddingModelMissing(model) from exc

    # ---- facts about models --------------------------------------------------------------------

    async def version(self) -> str:
        """The version of the first host that answers; OllamaUnavailable if none does."""
        hosts = sorted(self._hosts, key=lambda h: h.down)
        return await self._first(hosts, lambda server: server.version())

    async def versions(self) -> list[tuple[str, str | None]]:
        """(host, its version, or None when it does not answer) for every host."""
        answers = await asyncio.gather(
            *(h.server.version() for h in self._hosts), return_exceptions=True
        )
        result: list[tuple[str, str | None]] = []
        for host, answer in zip(self._hosts, answers, strict=True):
            if isinstance(answer, str):
                self._answered(host)
                result.append((host.url, answer))
            elif isinstance(answer, OllamaUnavailable):
                self._failed(host, answer)
                result.append((host.url, None))
            else:
                raise answer
        return result

    async def show(self, model: str) -> ModelInfo:
        return await self._first(await self._candidates(model), lambda server: server.show(model))

    async def describe(self, model: str) -> ModelCard:
        hosts = await self._candidates(model)
        return await self._first(hosts, lambda server: server.describe(model))

    def forget(self, model: str) -> None:
        for host in self._hosts:
            host.server.forget(model)
            host.names = None

    async def _on_each(self, call: Callable[[OllamaHost], Awaitable[T]]) -> list[tuple[_Host, T]]:
        """`call` on every host that is up (on all when none is), together; the hosts that
        cannot be reached are left out. OllamaUnavailable when none answers; any other error of
        a host is raised."""
        hosts = [h for h in self._hosts if not h.down] or list(self._hosts)
        answers = await asyncio.gather(*(call(h.server) for h in hosts), return_exceptions=True)
        results: list[tuple[_Host, T]] = []
        unreachable: OllamaUnavailable | None = None
        for host, answer in zip(hosts, answers, strict=True):
            if isinstance(answer, OllamaUnavailable):
                self._failed(host, answer)
                unreachable = answer
            elif isinstance(answer, BaseException):
                raise answer
            else:
                self._answered(host)
                results.append((host, answer))
        if not results and unreachable is not None:
            if self.several:
                raise OllamaUnavailable(self.host) from unreachable
            raise unreachable
        return results

    async def list_models(self) -> list[InstalledModel]:
        """The installed models of every host that answers, each once, newest first; with
        several hosts each names the hosts that have it."""
        answers = await self._on_each(lambda server: server.list_models())
        if not self.several:
            return answers[0][1]
        merged: dict[str, InstalledModel] = {}
        for host, models in answers:
            host.names = (self._clock(), frozenset(canonical_name(m.name) for m in models))
            for model in models:
                key = canonical_name(model.name)
                seen = merged.get(key)
                if seen is None:
                    merged[key] = dataclasses.replace(model, hosts=(host.url,))
                else:
                    merged[key] = dataclasses.replace(seen, hosts=(*seen.hosts, host.url))
        newest_first = sorted(
            merged.values(), key=lambda m: m.modified_at.timestamp() if m.modified_at else 0.0
        )
        return newest_first[::-1]

    async def ps(self) -> list[LoadedModel]:
        answers = await self._on_each(lambda server: server.ps())
        if not self.several:
            return answers[0][1]
        return [
            dataclasses.replace(model, host=host.url)
            for host, models in answers
            for model in models
        ]

    # ---- changing models -----------------------------------------------------------------------

    async def pull(self, model: str) -> AsyncGenerator[PullProgress]:
        """Pull `model` on every host that is up, at once; the progress lines of all come
        through (see `_on_each_streaming`)."""
        stream = self._on_each_streaming(lambda server: server.pull(model))
        async with contextlib.aclosing(stream) as lines:
            async for line in lines:
                yield line

    async def create_model(self, spec: ModelSpec) -> AsyncGenerator[PullProgress]:
        """Create `spec` (a persona's model) on every host that is up, at once, like `pull`."""
        stream = self._on_each_streaming(lambda server: server.create_model(spec))
        async with contextlib.aclosing(stream) as lines:
            async for line in lines:
                yield line

    async def _on_each_streaming(
        self, start: Callable[[OllamaHost], AsyncGenerator[PullProgress]]
    ) -> AsyncGenerator[PullProgress]:
        """A progress stream (pull, create) on every host that is up, merged: each line names
        its host and its layer is told apart by host (so totals add up over the hosts), and one
        `success` line ends it once every host has succeeded."""
        if not self.several:
            async with contextlib.aclosing(start(self._hosts[0].server)) as stream:
                async for line in stream:
                    yield line
            return
        hosts = [h for h in self._hosts if not h.down] or list(self._hosts)
        streams = {h.url: start(h.server) for h in hosts}
        async for url, line in _merged(streams):
            if line.status == "success":
                continue
            yield dataclasses.replace(
                line,
                status=f"{url}: {line.status}",
                digest=f"{url} {line.digest}" if line.digest else None,
            )
        yield PullProgress(status="success")

    async def delete_model(self, model: str) -> None:
        """Delete `model` from every host that has it; ModelNotFound when none has."""

        async def delete(server: OllamaHost) -> bool:
            try:
                await server.delete_model(model)
            except ModelNotFound:
                return False
            return True

        try:
            deleted = await self._on_each(delete)
        finally:
            self.forget(model)
        if not any(done for _, done in deleted):
            raise ModelNotFound(model)


def _expected(seconds: Mapping[str, float], model: str) -> float:
    """The model's moving average, else the average over the models seen, else 0."""
    if model in seconds:
        return seconds[model]
    return sum(seconds.values()) / len(seconds) if seconds else 0.0


def _average(seconds: dict[str, float], model: str, value: float) -> None:
    before = seconds.get(model)
    seconds[model] = value if before is None else before + LEARNING_WEIGHT * (value - before)
    if len(seconds) > 1000:  # bounded: models come and go
        seconds.pop(next(iter(seconds)))


async def _merged(
    streams: Mapping[str, AsyncGenerator[T]],
) -> AsyncGenerator[tuple[str, T]]:
    """The items of several streams as they come, each with its key. The first error of any
    stream ends them all (a PullFailed names the host); closing this closes them all."""
    queue: asyncio.Queue[tuple[str, T] | tuple[str, BaseException] | str] = asyncio.Queue()

    async def pump(key: str, stream: AsyncGenerator[T]) -> None:
        try:
            async with contextlib.aclosing(stream):
                async for item in stream:
                    await queue.put((key, item))
        except Exception as exc:
            await queue.put((key, exc))
        else:
            await queue.put(key)

    tasks = [asyncio.create_task(pump(key, stream)) for key, stream in streams.items()]
    try:
        running = len(tasks)
        while running:
            entry = await queue.get()
            if isinstance(entry, str):
                running -= 1
                continue
            key, item = entry
            if isinstance(item, PullFailed):
                raise PullFailed(item.model, f"{key}: {item.detail}") from item
            if isinstance(item, BaseException):
                raise item
            yield key, item
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


if TYPE_CHECKING:

    def _implements(host: OllamaHost, pool: OllamaPool) -> tuple[Ollama, Ollama, OllamaHosts]:
        """Never called: mypy checks here that the host and the pool are `Ollama`s."""
        return host, pool, pool
