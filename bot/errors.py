"""The project's own errors. Each carries a short message that is safe to show a Discord user;
details for the log travel in the exception chain (`raise ... from exc`)."""

from __future__ import annotations


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
    def __init__(self, host: str) -> None:
        super().__init__(
            f"I can't reach the Ollama server at {host}. Is it running? "
            "An admin can check with `python -m bot check`."
        )


class ModelNotFound(OllamaError):
    def __init__(self, model: str) -> None:
        self.model = model
        super().__init__(
            f"The model `{model}` is not installed on the Ollama server. "
            f"An admin can pull it with `/model pull name:{model}` (or `ollama pull {model}`)."
        )


class OllamaBusy(OllamaError):
    user_message = "Ollama is busy with other requests right now (503). Try again in a moment."


class StreamFailed(OllamaError):
    """Ollama reported an error, or went away, after the reply had started."""

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(f"The model stopped with an error: {_short(detail)}")


class GenerationTimeout(OllamaError):
    def __init__(self, what: str, seconds: float) -> None:
        super().__init__(f"The model took too long ({what}, {seconds:g} s). Try again later.")


class BadRequest(OllamaError):
    """Ollama refused the request itself (400/500 before streaming)."""

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(f"Ollama refused the request: {_short(detail)}")


class CreateFailed(OllamaError):
    """Ollama could not create a model (its base model is unknown, a template is broken, ...)."""

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(f"Ollama could not create the model: {_short(detail)}")


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
        super().__init__(f"Pulling `{model}` failed: {_short(detail)}")


class ModelInUse(InputError):
    """A model that personas are built on cannot be deleted."""

    def __init__(self, model: str, personas: list[str]) -> None:
        self.model = model
        self.personas = personas
        names = ", ".join(f"**{_short(p, 60)}**" for p in personas[:10])
        more = f" and {len(personas) - 10} more" if len(personas) > 10 else ""
        which = "the persona" if len(personas) == 1 else "the personas"
        super().__init__(
            f"`{model}` is the base of {which} {names}{more}. Delete "
            f"{'it' if len(personas) == 1 else 'them'} with `/persona delete` first."
        )


class VisionUnavailable(BotError):
    """An image turn has no model that can see images; the message says what to change."""


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
