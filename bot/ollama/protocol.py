"""What the bot needs from Ollama: the `Ollama` protocol the services are typed against, the
plain values it speaks in, and `ModelSpec`, the one request to create a model.

Implemented by `OllamaHost` (one server; the only module that imports `ollama`) and by
`OllamaPool` (several servers used as one). A new Ollama call is added here, in the host, and in
the pool (usually one line through its failover or fan-out helpers)."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

KeepAlive = str | float
"""Ollama's keep_alive as sent: seconds (negative: forever), or a Go duration such as "10m"."""

LoadCallback = Callable[[str], None]
"""Told a model's name when the host chosen for a generation does not have it loaded: the first
token waits for the load."""


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What the bot needs to know of a model, from `/api/show`."""

    name: str
    capabilities: frozenset[str]
    context_length: int | None
    """The model's trained context (`<arch>.context_length`)."""
    num_ctx: int | None
    """`num_ctx` from the model's own parameters (a Modelfile PARAMETER), if set."""
    family: str | None = None
    parameter_size: str | None = None
    quantization: str | None = None

    @property
    def effective_context(self) -> int | None:
        if self.num_ctx and self.context_length:
            return min(self.num_ctx, self.context_length)
        return self.num_ctx or self.context_length


@dataclass(frozen=True, slots=True)
class ChatStats:
    """The final chunk's metrics (durations in nanoseconds)."""

    model: str
    done_reason: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    total_duration_ns: int | None
    load_duration_ns: int | None
    prompt_duration_ns: int | None
    eval_duration_ns: int | None

    @property
    def tokens_per_second(self) -> float | None:
        if self.completion_tokens and self.eval_duration_ns:
            return self.completion_tokens / (self.eval_duration_ns / 1e9)
        return None


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A tool the model asks for (`message.tool_calls`), with its arguments as the model wrote
    them: any JSON object, to be checked by the tool."""

    name: str
    arguments: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ChatDelta:
    """A piece of the reply; `thinking` is reasoning text, never part of the answer;
    `tool_calls` are the tools the model asks for (only when it was offered some)."""

    content: str = ""
    thinking: str = ""
    tool_calls: tuple[ToolCall, ...] = ()


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: str
    content: str
    images: tuple[str, ...] = ()
    """Plain base64 images (no `data:` prefix), for models with the `vision` capability."""
    tool_calls: tuple[ToolCall, ...] = ()
    """An assistant message's tool calls, sent back with the results that follow it."""
    tool_name: str | None = None
    """A `tool` message: the tool whose result it holds."""


@dataclass(frozen=True, slots=True)
class StructuredReply:
    """A whole reply to a request with a `format` schema: the text as the model wrote it."""

    content: str
    stats: ChatStats


@dataclass(frozen=True, slots=True)
class Embeddings:
    """`/api/embed`'s answer: one L2-normalised vector per input, in the inputs' order."""

    model: str
    vectors: list[list[float]]
    tokens: int
    """Tokens read over all inputs (`prompt_eval_count`)."""


@dataclass(frozen=True, slots=True)
class InstalledModel:
    """One entry of `/api/tags`."""

    name: str
    size: int
    """Bytes on disk (the sum of the model's layers)."""
    family: str | None
    parameter_size: str | None
    quantization: str | None
    capabilities: tuple[str, ...]
    """In the server's order, e.g. ("completion", "tools")."""
    modified_at: datetime | None = None
    hosts: tuple[str, ...] = ()
    """With several Ollama hosts: the ones that have the model (see OllamaPool)."""


@dataclass(frozen=True, slots=True)
class LoadedModel:
    """One entry of `/api/ps`: a model in memory."""

    name: str
    size: int
    """Bytes of memory in all."""
    size_vram: int
    """Of which in GPU memory."""
    expires_at: datetime | None
    context_length: int | None
    host: str | None = None
    """With several Ollama hosts: the one it is loaded on (see OllamaPool)."""


@dataclass(frozen=True, slots=True)
class ModelCard:
    """What `ollama show` prints about a model."""

    name: str
    architecture: str | None
    parameter_size: str | None
    parameter_count: int | None
    context_length: int | None
    embedding_length: int | None
    quantization: str | None
    capabilities: tuple[str, ...]
    parameters: tuple[tuple[str, str], ...]
    """(name, value) pairs from the model's own parameters, values as Ollama prints them."""
    system: str | None
    license: str | None


@dataclass(frozen=True, slots=True)
class PullProgress:
    """One status line of `/api/pull` (or of `/api/create`, which has the same lines)."""

    status: str
    digest: str | None = None
    total: int | None = None
    completed: int | None = None


@dataclass(frozen=True, slots=True)
class HostState:
    """One host as `/status` and the metrics show it."""

    host: str
    up: bool
    in_flight: int
    """Generations from this bot running on it now."""
    generations: int
    """Generations sent to it since the bot started."""
    failures: int
    """Times it could not be reached."""
    retry_in: float
    """While it is down: seconds between the latest probe and the next."""


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A model for `/api/create`: `name` made from `base` with a Modelfile's settings (the
    bot's personas). Empty fields keep the base's (an empty `system` keeps the base's too)."""

    name: str
    base: str
    system: str | None = None
    template: str | None = None
    parameters: Mapping[str, Any] = field(default_factory=dict)
    messages: tuple[ChatMessage, ...] = ()
    license: tuple[str, ...] = ()


class Ollama(Protocol):
    """What the services ask of Ollama. Errors come out as the project's own (`bot.errors`):
    OllamaUnavailable, ModelNotFound, OllamaBusy, StreamFailed, ..."""

    @property
    def host(self) -> str:
        """The server, or the servers comma-separated (for messages and logs)."""
        ...

    async def close(self) -> None: ...

    async def version(self) -> str:
        """A server's version; OllamaUnavailable when none answers."""
        ...

    async def show(self, model: str) -> ModelInfo:
        """Facts about a model (`/api/show`), cached for a while."""
        ...

    def forget(self, model: str) -> None:
        """Drop what is cached about `model` (after it was deleted, re-created or pulled)."""
        ...

    async def describe(self, model: str) -> ModelCard:
        """Everything `ollama show` prints about a model (not cached)."""
        ...

    async def list_models(self) -> list[InstalledModel]:
        """The installed models (`/api/tags`), newest first."""
        ...

    async def ps(self) -> list[LoadedModel]:
        """The models in memory (`/api/ps`)."""
        ...

    async def serves(self, model: str) -> bool:
        """Whether a server that answers now has `model` (for fallbacks)."""
        ...

    def pull(self, model: str) -> AsyncGenerator[PullProgress]:
        """Pull a model, yielding each status line; closing the iterator stops it."""
        ...

    def create_model(self, spec: ModelSpec) -> AsyncGenerator[PullProgress]:
        """Create (or replace) a model, yielding each status line."""
        ...

    async def delete_model(self, model: str) -> None:
        """Delete a model; ModelNotFound when there is none of that name."""
        ...

    def chat_stream(
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
        """Stream a reply: deltas, then one ChatStats. Closing it early stops the generation.
        `think`: Ollama's `think` (None: left out, the model's default). `tools`: Ollama's tool
        definitions offered to the model; ToolsUnsupported when the model cannot use them.
        `keep_alive` overrides the configured one for this request; `on_load` hears the
        model's name when it must be loaded first (see LoadCallback)."""
        ...

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
        """One whole reply constrained by a JSON schema (Ollama's `format`)."""
        ...

    async def embed(self, model: str, texts: Sequence[str]) -> Embeddings:
        """Embed `texts` in one request (`/api/embed`, inputs longer than the model's context
        truncated). EmbeddingModelMissing when the model is not installed, EmbeddingUnsupported
        when it cannot embed."""
        ...


class OllamaHosts(Protocol):
    """What `/status` and the metrics read about the servers (the pool's view of them)."""

    @property
    def several(self) -> bool: ...

    def states(self) -> list[HostState]: ...

    async def versions(self) -> list[tuple[str, str | None]]:
        """(host, its version, or None when it does not answer) for every host."""
        ...
