"""OllamaPool: one or several Ollama servers (`OllamaHost`s) used as one `Ollama`.

Each generation goes to the least busy host (fewest generations in flight from this bot) among
those that have the model (their `/api/tags`, cached for `tags_ttl` seconds). A host that cannot
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
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not hosts:
            raise ValueError("an Ollama pool needs at least one host")
        self._hosts = [_Host(OllamaHost(host, show_ttl=show_ttl)) for host in hosts]
        self._tags_ttl = tags_ttl
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
        return host.names[1]

    async def _candidates(self, model: str) -> list[_Host]:
        """Hosts to try for `model`, best first: the up hosts that have it, least busy first;
        else every up host (one of them will say the model is missing); down hosts last."""
        if not self.several:
            return list(self._hosts)
        up = [h for h in self._hosts if not h.down]
        found = await asyncio.gather(*(self._names(h) for h in up))
        wanted = canonical_name(model)
        checked = list(zip(up, found, strict=True))
        up = [h for h, names in checked if names is not None]
        having = [h for h, names in checked if names is not None and wanted in names]
        down = sorted((h for h in self._hosts if h.down), key=lambda h: h.retry_at)
        return sorted(having or up, key=lambda h: (h.in_flight, h.last_chosen)) + down

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
    ) -> AsyncGenerator[ChatDelta | ChatStats]:
        """OllamaHost.chat_stream on the least busy host that has the model. A host that
        cannot be reached, or says it is busy, before the reply starts is left for the next."""
        stream = self._failover(
            await self._candidates(model),
            lambda server: server.chat_stream(model, messages, options=options),
            generation=True,
        )
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
    ) -> StructuredReply:
        return await self._first(
            await self._candidates(model),
            lambda server: server.chat_structured(model, messages, schema=schema, options=options),
            generation=True,
        )

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
