"""OllamaHost: one Ollama server, and the only module that imports `ollama`. It implements the
`Ollama` protocol: the client's answers become plain values (`bot.ollama.protocol`) and its
errors the project's own (`bot.errors`), each with a message for the user."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import AsyncGenerator, Mapping, Sequence
from datetime import datetime
from typing import Any

import aiohttp
import httpx
import ollama
from httpx_aiohttp import AiohttpTransport

from bot.errors import (
    BadRequest,
    BotError,
    CreateFailed,
    EmbeddingModelMissing,
    EmbeddingUnsupported,
    InvalidModelName,
    ModelNotFound,
    ModelNotInLibrary,
    OllamaBusy,
    OllamaError,
    OllamaUnavailable,
    PullFailed,
    StreamFailed,
    ToolsUnsupported,
    VisionUnavailable,
)
from bot.models.names import canonical_name
from bot.ollama.protocol import (
    ChatDelta,
    ChatMessage,
    ChatStats,
    Embeddings,
    InstalledModel,
    KeepAlive,
    LoadCallback,
    LoadedModel,
    ModelCard,
    ModelInfo,
    ModelSpec,
    PullProgress,
    StructuredReply,
    ToolCall,
)

log = logging.getLogger(__name__)

REQUEST_TIMEOUT = 15.0
"""Seconds for the small, non-generating requests (version, show, tags)."""
EMBED_TIMEOUT = 120.0
"""Seconds for one batch of embeddings (the model may have to load first)."""
NO_EMBEDDING_ERRORS = ("does not support embeddings", "does not support embedding")
NO_VISION_ERRORS = (
    "missing data required for image input",  # Ollama's own engine (v0.6 to v0.31)
    "image input is not supported",  # the llama-server backend (v0.32+)
)


class OllamaHost:
    """Talks to one Ollama server through one shared client (never a client per message)."""

    def __init__(self, host: str, *, show_ttl: float = 300.0) -> None:
        self.host = host
        # No read timeout on the client: generations are timed by the chat service, which knows
        # the first-token, between-tokens and total limits. Connecting is bounded here.
        timeout = httpx.Timeout(None, connect=10.0)
        # No connection cap either: the scheduler bounds generations (max_parallel_generations),
        # and httpx's default of 100 connections made the 101st reply wait, unseen.
        # The official client speaks Ollama's API; aiohttp carries its bytes. httpx's own
        # HTTP/1.1 stack (httpcore, anyio, h11, all Python) cost about 0.05 ms more CPU for
        # every streamed line than aiohttp's C parser: with 200 replies streaming at once, a
        # fifth of the bot's CPU (bench/README.md).
        self._client = ollama.AsyncClient(host=host, timeout=timeout, transport=_transport())
        self._http = httpx.AsyncClient(
            base_url=host, timeout=REQUEST_TIMEOUT, transport=_transport()
        )
        self._show_ttl = show_ttl
        self._show_cache: dict[str, tuple[float, ModelInfo]] = {}

    async def close(self) -> None:
        await self._client.close()  # type: ignore[no-untyped-call]  # public, but unannotated in 0.6.3
        await self._http.aclose()

    async def version(self) -> str:
        """The server's version; raises OllamaUnavailable when it does not answer."""
        try:
            response = await self._http.get("/api/version")
            response.raise_for_status()
            return str(response.json()["version"])
        except (httpx.TransportError, httpx.HTTPStatusError, ValueError, KeyError) as exc:
            raise OllamaUnavailable(self.host) from exc

    async def show(self, model: str) -> ModelInfo:
        """Model facts from `/api/show`, cached for `show_ttl` seconds per model name."""
        now = time.monotonic()
        cached = self._show_cache.get(model)
        if cached is not None and now - cached[0] < self._show_ttl:
            return cached[1]
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                shown = await self._client.show(model)
        except TimeoutError as exc:
            raise OllamaUnavailable(self.host) from exc
        except Exception as exc:
            raise self._translate(exc, model) from exc
        info = _model_info(model, shown)
        self._show_cache[model] = (now, info)
        if len(self._show_cache) > 256:  # bounded: drop the oldest entries
            for name, _ in sorted(self._show_cache.items(), key=lambda item: item[1][0])[:64]:
                del self._show_cache[name]
        return info

    def forget(self, model: str) -> None:
        """Drop the cached `/api/show` answers for a model (after it was deleted, re-created or
        pulled again), under whichever spelling of its name they were cached."""
        target = canonical_name(model)
        for name in [name for name in self._show_cache if canonical_name(name) == target]:
            del self._show_cache[name]

    async def list_models(self) -> list[InstalledModel]:
        """The installed models (`/api/tags`), newest first.

        Read as raw JSON: the ollama client's types drop the `capabilities` that newer servers
        list here. For servers that don't, they come from `/api/show` (cached)."""
        data = await self._request_json("GET", "/api/tags")
        entries = [e for e in data.get("models") or [] if isinstance(e, dict)]
        models: list[InstalledModel] = []
        missing: list[int] = []
        for entry in entries:
            details = entry.get("details") or {}
            listed = entry.get("capabilities")
            if not isinstance(listed, list):
                missing.append(len(models))
            models.append(
                InstalledModel(
                    name=str(entry.get("name") or entry.get("model") or "?"),
                    size=_int(entry.get("size")) or 0,
                    family=details.get("family") or None,
                    parameter_size=details.get("parameter_size") or None,
                    quantization=details.get("quantization_level") or None,
                    capabilities=tuple(str(c) for c in listed or ()),
                    modified_at=_datetime(entry.get("modified_at")),
                )
            )
        if missing:
            shown = await asyncio.gather(
                *(self.show(models[i].name) for i in missing), return_exceptions=True
            )
            for index, info in zip(missing, shown, strict=True):
                if isinstance(info, ModelInfo):
                    capabilities = tuple(sorted(info.capabilities))
                    models[index] = dataclasses.replace(models[index], capabilities=capabilities)
        return models

    async def model_names(self) -> list[str]:
        """The installed models' names (`/api/tags`), nothing else: what routing needs."""
        try:
            response = await self._http.get("/api/tags")
            response.raise_for_status()
            entries = response.json().get("models") or []
        except (httpx.TransportError, httpx.HTTPStatusError, ValueError, AttributeError) as exc:
            raise OllamaUnavailable(self.host) from exc
        return [str(e.get("name") or e.get("model")) for e in entries if isinstance(e, dict)]

    async def is_loaded(self, model: str) -> bool:
        """Whether `model` is in memory (`/api/ps`); True when the server cannot tell."""
        try:
            loaded = await self.ps()
        except BotError:
            return True
        return canonical_name(model) in {canonical_name(m.name) for m in loaded}

    async def serves(self, model: str) -> bool:
        """Whether the server answers and has `model` (`/api/tags`)."""
        try:
            names = await self.model_names()
        except OllamaUnavailable:
            return False
        return canonical_name(model) in {canonical_name(n) for n in names}

    async def ps(self) -> list[LoadedModel]:
        """The models in memory (`/api/ps`)."""
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                answer = await self._client.ps()
        except TimeoutError as exc:
            raise OllamaUnavailable(self.host) from exc
        except Exception as exc:
            raise self._translate(exc, "") from exc
        return [
            LoadedModel(
                name=m.name or m.model or "?",
                size=int(m.size or 0),
                size_vram=int(m.size_vram or 0),
                expires_at=m.expires_at,
                context_length=m.context_length,
            )
            for m in answer.models
        ]

    async def describe(self, model: str) -> ModelCard:
        """Everything `ollama show` prints about a model (`/api/show`, not cached).

        Read as raw JSON: the ollama client's ShowResponse has no `system`."""
        data = await self._request_json("POST", "/api/show", model=model, body={"model": model})
        info: Mapping[str, Any] = data.get("model_info") or {}
        details: Mapping[str, Any] = data.get("details") or {}
        arch = info.get("general.architecture")
        return ModelCard(
            name=model,
            architecture=str(arch) if arch else None,
            parameter_size=details.get("parameter_size") or None,
            parameter_count=_int(info.get("general.parameter_count")),
            context_length=_int(info.get(f"{arch}.context_length")) if arch else None,
            embedding_length=_int(info.get(f"{arch}.embedding_length")) if arch else None,
            quantization=details.get("quantization_level") or None,
            capabilities=tuple(str(c) for c in data.get("capabilities") or ()),
            parameters=_parameter_lines(str(data.get("parameters") or "")),
            system=str(data["system"]) if data.get("system") else None,
            license=str(data["license"]) if data.get("license") else None,
        )

    async def pull(self, model: str) -> AsyncGenerator[PullProgress]:
        """Pull a model from the registry, yielding each status line as it comes.

        Errors come out translated; a name the registry does not know is ModelNotInLibrary.
        Closing the iterator closes the HTTP stream (Ollama then stops the download)."""
        started = False
        try:
            stream = await self._client.pull(model, stream=True)
            async for line in stream:
                started = True
                yield PullProgress(
                    status=line.status or "",
                    digest=line.digest or None,
                    total=line.total,
                    completed=line.completed,
                )
        except Exception as exc:
            raise self._translate_pull(exc, model, started=started) from exc
        finally:
            self.forget(model)

    async def create_model(self, spec: ModelSpec) -> AsyncGenerator[PullProgress]:
        """Create (or replace) `spec.name` from `spec.base` with `/api/create`, yielding the
        server's progress lines. Ollama pulls the base first when it does not have it."""
        started = False
        model, base = spec.name, spec.base
        try:
            stream = await self._client.create(
                model=model,
                from_=base,
                system=spec.system,
                template=spec.template,
                parameters=dict(spec.parameters) if spec.parameters else None,
                messages=[{"role": m.role, "content": m.content} for m in spec.messages] or None,
                license=list(spec.license) or None,
                stream=True,
            )
            async for line in stream:
                started = True
                yield PullProgress(
                    status=line.status or "",
                    digest=line.digest or None,
                    total=line.total,
                    completed=line.completed,
                )
        except ollama.ResponseError as exc:
            if exc.status_code == 503:
                raise OllamaBusy() from exc
            log.warning("ollama could not create %s from %s: %s", model, base, exc.error)
            raise CreateFailed(exc.error or str(exc)) from exc
        except Exception as exc:
            raise self._translate(exc, model, started=started) from exc
        finally:
            self.forget(model)

    async def delete_model(self, model: str) -> None:
        """Delete an installed model; ModelNotFound when there is none of that name."""
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                await self._client.delete(model)
        except TimeoutError as exc:
            raise OllamaUnavailable(self.host) from exc
        except Exception as exc:
            raise self._translate(exc, model) from exc
        finally:
            self.forget(model)

    async def _request_json(
        self, method: str, path: str, *, model: str = "", body: Any = None
    ) -> dict[str, Any]:
        """A small request through the plain HTTP client, errors translated like the others."""
        try:
            response = await self._http.request(method, path, json=body)
        except httpx.TransportError as exc:  # refused, reset, or timed out
            raise OllamaUnavailable(self.host) from exc
        if response.status_code >= 400:
            error = ollama.ResponseError(response.text, response.status_code)
            raise self._translate(error, model) from error
        try:
            data = response.json()
        except ValueError as exc:
            log.warning("ollama answered %s %s with something that is not JSON", method, path)
            raise OllamaError() from exc
        if not isinstance(data, dict):
            raise OllamaError()
        return data

    def _translate_pull(self, exc: BaseException, model: str, *, started: bool) -> BotError:
        if isinstance(exc, ollama.ResponseError):
            text = exc.error or ""
            if "file does not exist" in text or "manifest unknown" in text:
                return ModelNotInLibrary(model)
            if "invalid model name" in text:
                return InvalidModelName(model)
            if exc.status_code == -1:  # an error line after the pull had started
                return PullFailed(model, text)
        if started and isinstance(exc, httpx.TransportError | json.JSONDecodeError):
            return PullFailed(model, "the connection to Ollama was lost")
        return self._translate(exc, model, started=started)

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
        """Stream a chat reply: deltas, then one ChatStats. Errors come out translated.

        Closing the iterator early (or cancelling the task reading it) closes the HTTP stream,
        which is how Ollama learns that the request was abandoned. `on_load` is asked here
        from a fresh /api/ps (the pool asks its cached one instead)."""
        if on_load is not None and not await self.is_loaded(model):
            on_load(model)
        started = False
        try:
            stream = await self._client.chat(
                model=model,
                messages=_wire(messages),
                stream=True,
                options=dict(options) if options else None,
                think=think,
                tools=[dict(tool) for tool in tools] or None,
                keep_alive=keep_alive,
            )
            async for chunk in stream:
                started = True
                message = chunk.message
                # The final chunk is not always empty: Ollama's output parsers flush the text
                # they held back there, with the statistics (and, for some parsers, the calls).
                delta = ChatDelta(
                    content=message.content or "",
                    thinking=message.thinking or "",
                    tool_calls=_tool_calls(message),
                )
                if delta.content or delta.thinking or delta.tool_calls:
                    yield delta
                if chunk.done:
                    # Read on to the end of the response (nothing follows the last line but
                    # the end of the body): a response closed early takes its connection with
                    # it, and every reply would open a new one.
                    async for _ in stream:
                        pass
                    yield _stats(model, chunk)
                    return
        except Exception as exc:
            raise self._translate(exc, model, started=started) from exc
        raise StreamFailed("the reply ended without its final message")

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
        """One reply, not streamed, with Ollama's `format` set to the JSON `schema`. The text
        comes back as written: the caller validates it, since a model can still stray."""
        try:
            response = await self._client.chat(
                model=model,
                messages=_wire(messages),
                stream=False,
                format=dict(schema),
                options=dict(options) if options else None,
                think=think,
                keep_alive=keep_alive,
            )
        except Exception as exc:
            raise self._translate(exc, model) from exc
        return StructuredReply(
            content=response.message.content or "", stats=_stats(model, response)
        )

    async def embed(self, model: str, texts: Sequence[str]) -> Embeddings:
        """One `/api/embed` request for all of `texts` (Ollama batches them itself)."""
        try:
            async with asyncio.timeout(EMBED_TIMEOUT):
                response = await self._client.embed(model=model, input=list(texts), truncate=True)
        except TimeoutError as exc:
            raise OllamaUnavailable(self.host) from exc
        except ollama.ResponseError as exc:
            text = exc.error or ""
            if exc.status_code == 404 and "not found" in text:
                raise EmbeddingModelMissing(model) from exc
            if any(sign in text for sign in NO_EMBEDDING_ERRORS):
                raise EmbeddingUnsupported(model) from exc
            raise self._translate(exc, model) from exc
        except Exception as exc:
            raise self._translate(exc, model) from exc
        vectors = [list(vector) for vector in response.embeddings]
        if len(vectors) != len(texts):
            raise BadRequest(f"asked for {len(texts)} embeddings, got {len(vectors)}")
        return Embeddings(
            model=model, vectors=vectors, tokens=_int(response.prompt_eval_count) or 0
        )

    def _translate(
        self, exc: BaseException, model: str, *, started: bool = False
    ) -> OllamaError | VisionUnavailable:
        if started and isinstance(exc, ConnectionError | httpx.TransportError):
            # The reply had begun: the connection was lost mid-stream (the aiohttp transport
            # reports a dropped connection as a connect error too).
            return StreamFailed("the connection to Ollama was lost")
        if isinstance(exc, ConnectionError | httpx.ConnectError | httpx.ConnectTimeout):
            return OllamaUnavailable(self.host)
        if isinstance(exc, ollama.ResponseError):
            status = exc.status_code
            text = exc.error or ""
            if status == 404 and "not found" in text:
                return ModelNotFound(model)
            if status == 503:
                return OllamaBusy()
            if status == 400 and text.endswith("does not support tools"):
                return ToolsUnsupported(model)
            if any(sign in text for sign in NO_VISION_ERRORS):
                # Only if a model's capabilities said "vision" but its runner disagrees.
                return VisionUnavailable(
                    f"The model `{model}` cannot read images. Ask a vision model with the "
                    "`model:` option, or set BOT_VISION_MODEL (`vision_model`) to one."
                )
            if status == -1:
                return StreamFailed(text)
            log.warning("ollama refused a request for %s: %s (status %s)", model, text, status)
            return BadRequest(text)
        if isinstance(exc, httpx.TransportError | json.JSONDecodeError):
            if started:
                return StreamFailed("the connection to Ollama was lost")
            return OllamaUnavailable(self.host)
        log.exception("unexpected error talking to ollama", exc_info=exc)
        return OllamaError()


def _transport() -> AiohttpTransport:
    """httpx's interface over an aiohttp session, made on first use (inside the event loop),
    with no cap on connections (aiohttp's default is 100)."""
    return AiohttpTransport(
        client=lambda: aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    )


def _wire(messages: Sequence[ChatMessage]) -> list[dict[str, Any]]:
    """Messages as the client sends them; `images`, `tool_calls` and `tool_name` only where
    there are some."""
    wire: list[dict[str, Any]] = []
    for message in messages:
        item: dict[str, Any] = {"role": message.role, "content": message.content}
        if message.images:
            item["images"] = list(message.images)
        if message.tool_calls:
            item["tool_calls"] = [
                {"function": {"name": c.name, "arguments": dict(c.arguments)}}
                for c in message.tool_calls
            ]
        if message.tool_name:
            item["tool_name"] = message.tool_name
        wire.append(item)
    return wire


def _tool_calls(message: ollama.Message) -> tuple[ToolCall, ...]:
    return tuple(
        ToolCall(name=call.function.name, arguments=dict(call.function.arguments or {}))
        for call in message.tool_calls or ()
    )


def _stats(model: str, chunk: ollama.ChatResponse) -> ChatStats:
    return ChatStats(
        model=model,
        done_reason=chunk.done_reason,
        prompt_tokens=chunk.prompt_eval_count,
        completion_tokens=chunk.eval_count,
        total_duration_ns=chunk.total_duration,
        load_duration_ns=chunk.load_duration,
        prompt_duration_ns=chunk.prompt_eval_duration,
        eval_duration_ns=chunk.eval_duration,
    )


def _model_info(name: str, shown: ollama.ShowResponse) -> ModelInfo:
    info: Mapping[str, Any] = shown.modelinfo or {}
    arch = info.get("general.architecture")
    context_length = info.get(f"{arch}.context_length") if arch else None
    details = shown.details
    return ModelInfo(
        name=name,
        capabilities=frozenset(shown.capabilities or ()),
        context_length=int(context_length) if isinstance(context_length, int | float) else None,
        num_ctx=_num_ctx(shown.parameters or ""),
        family=details.family if details else None,
        parameter_size=details.parameter_size if details else None,
        quantization=details.quantization_level if details else None,
    )


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _datetime(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _parameter_lines(parameters: str) -> tuple[tuple[str, str], ...]:
    """show's `parameters` text (`name<padding>value` per line) as (name, value) pairs."""
    pairs: list[tuple[str, str]] = []
    for line in parameters.splitlines():
        key, _, value = line.strip().partition(" ")
        if key:
            pairs.append((key, value.strip()))
    return tuple(pairs)


def _num_ctx(parameters: str) -> int | None:
    """`num_ctx` from show's `parameters` text: one `name   value` line per value."""
    for line in parameters.splitlines():
        key, _, value = line.strip().partition(" ")
        if key == "num_ctx":
            try:
                return int(value.strip().strip('"'))
            except ValueError:
                return None
    return None
