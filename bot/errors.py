"""The project's own errors. Each carries a short message that is safe to show a Discord user;
details for the log travel in the exception chain (`raise ... from exc`)."""

from __future__ import annotations

import re


class BotError(Exception):
    """An error whose `user_message` can be shown to the user as it is."""

    user_message: str = "Something went wrong. The details are in the bot's log."

    def __init__(self, user_message: str | None = None) -> None:
        if user_message is not None:
            self.user_message = user_message
        super().__init__(self.user_message)


class OllamaError(BotError):
    """Ollama answered with an error we have no better name for."""

    user_message = "Ollama answered with an error. The details are in the bot's log."


class OllamaUnavailable(OllamaError):
    """No Ollama server answered. Members are not told where it is (`host` is for the log and
    the command line)."""

    def __init__(self, host: str) -> None:
        self.host = host
        super().__init__(
            "I can't reach the Ollama server. Is it running? "
            "An admin can check with `python -m bot check`."
        )


class ModelNotFound(OllamaError):
    def __init__(self, model: str) -> None:
        self.model = model
        super().__init__(
            f"The model `{model}` is not installed on the Ollama server. "
            f"An admin can pull it with `/model pull name:{model}` (or `ollama pull {model}`)."
        )


class EmbeddingModelMissing(ModelNotFound):
    """The knowledge base's embedding model is not installed."""

    def __init__(self, model: str) -> None:
        super().__init__(model)
        self.user_message = (
            f"The embedding model `{model}` is not installed on the Ollama server, so I can't "
            f"read or search the knowledge base. An admin can install it with "
            f"`ollama pull {model}` (or `/model pull name:{model}`)."
        )


class EmbeddingUnsupported(OllamaError):
    """The configured embedding model cannot make embeddings (a chat model, say)."""

    def __init__(self, model: str) -> None:
        self.model = model
        super().__init__(
            f"The model `{model}` cannot make embeddings. An admin can set `embedding_model` "
            "to an embedding model, for example `nomic-embed-text` "
            "(`ollama pull nomic-embed-text`)."
        )


class OllamaBusy(OllamaError):
    user_message = "Ollama is busy with other requests right now (503). Try again in a moment."


class StreamFailed(OllamaError):
    """Ollama reported an error, or went away, after the reply had started."""

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(f"The model stopped with an error: {safe_detail(detail)}")


class GenerationTimeout(OllamaError):
    def __init__(self, what: str, seconds: float) -> None:
        super().__init__(f"The model took too long ({what}, {seconds:g} s). Try again later.")


class BadRequest(OllamaError):
    """Ollama refused the request itself (400/500 before streaming)."""

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(f"Ollama refused the request: {safe_detail(detail)}")


class ToolsUnsupported(OllamaError):
    """The model cannot use tools (Ollama: `... does not support tools`); the reply is then
    asked again without them."""

    def __init__(self, model: str) -> None:
        self.model = model
        super().__init__(f"The model `{model}` can't use tools.")


class CreateFailed(OllamaError):
    """Ollama could not create a model (its base model is unknown, a template is broken, ...)."""

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(f"Ollama could not create the model: {safe_detail(detail)}")


class InputError(BotError):
    """The user's input cannot be used; the message says why."""


class PermissionDenied(BotError):
    pass


# ---- model management (/model) ----


class ModelNotInLibrary(OllamaError):
    """A pull of a name that the registry does not know."""

    def __init__(self, model: str) -> None:
        self.model = model
        super().__init__(
            f"There is no model `{model}` in the Ollama library. Check the name and tag at "
            "https://ollama.com/library."
        )


class InvalidModelName(InputError):
    def __init__(self, model: str) -> None:
        self.model = model
        super().__init__(
            f"`{_short(model, 100)}` is not a valid model name. Names look like `llama3.2`, "
            "`qwen3:8b` or `namespace/model:tag`."
        )


class PullFailed(OllamaError):
    """The server reported an error (or went away) during a pull."""

    def __init__(self, model: str, detail: str) -> None:
        self.model = model
        self.detail = detail
        super().__init__(f"Pulling `{model}` failed: {safe_detail(detail)}")


class ModelInUse(InputError):
    """A model that personas are built on cannot be deleted. `others`: how many of them belong
    to other guilds (counted, never named)."""

    def __init__(self, model: str, personas: list[str], *, others: int = 0) -> None:
        self.model = model
        self.personas = personas
        parts = [f"**{_short(p, 60)}**" for p in personas[:10]]
        if len(personas) > 10:
            parts.append(f"{len(personas) - 10} more")
        if others:
            parts.append(f"{others} persona{'s' if others > 1 else ''} of other servers")
        count = len(personas) + others
        if not personas:
            super().__init__(
                f"`{model}` is the base of {others} persona{'s' if others > 1 else ''} of other "
                "servers. They would stop working; it can't be deleted while they exist."
            )
            return
        which = "the persona" if count == 1 else "the personas"
        super().__init__(
            f"`{model}` is the base of {which} {', '.join(parts)}. Delete "
            f"{'it' if count == 1 else 'them'} with `/persona delete` first."
        )


class ModelProtected(InputError):
    """A model the bot itself depends on cannot be deleted; `why` completes "`x` is ..."."""

    def __init__(self, model: str, why: str) -> None:
        self.model = model
        super().__init__(f"`{model}` is {why}, so it can't be deleted.")


class VisionUnavailable(BotError):
    """An image turn has no model that can see images; the message says what to change."""


_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s\"'<>]+", re.IGNORECASE)
_IPV4 = re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b")
_IPV6 = re.compile(r"\[[0-9a-f:.%]*:[0-9a-f:.%]*\](?::\d+)?", re.IGNORECASE)
_HOST_PORT = re.compile(r"\b(?:[a-z0-9-]+\.)*[a-z0-9-]+\.?:\d{2,5}\b", re.IGNORECASE)
_DIAL = re.compile(r"\b(?:dial|read|write) (?:tcp|udp)\S*", re.IGNORECASE)
_LOOKUP = re.compile(r"\blookup \S+( on \S+)?", re.IGNORECASE)


def safe_detail(text: str, limit: int = 300) -> str:
    """An error text from Ollama as members may see it: URLs, addresses and host:port pairs
    (which would tell them how the server's network looks, and turn errors into a probe of it)
    are replaced by `[address]`, and the whole is shortened. The one place this is done: the
    error types above that carry Ollama's words."""
    text = _URL.sub("[address]", text)
    text = _IPV6.sub("[address]", text)
    text = _IPV4.sub("[address]", text)
    text = _HOST_PORT.sub("[address]", text)
    text = _DIAL.sub("connecting", text)
    text = _LOOKUP.sub("looking up [address]", text)
    return _short(text, limit)


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
