"""Model names as Ollama compares them: `[host/][namespace/]model[:tag]`, case-insensitive, the
tag `latest` when none is given, the default registry and namespace left out.

Personas are Ollama models too, named `persona-<guild id>-<name>` (`persona-builtin-<name>` for
the shipped ones): one guild must never see, use or even learn the names of another's."""

from __future__ import annotations

import re

DEFAULT_PREFIXES = ("registry.ollama.ai/library/", "registry.ollama.ai/", "library/")
_PERSONA_MODEL = re.compile(r"persona-(builtin|\d+)-[^/:]+:[^/]*")


def canonical_name(name: str) -> str:
    """`Llama3.2` → `llama3.2:latest`; `registry.ollama.ai/library/qwen3:8b` → `qwen3:8b`.

    Two names that Ollama treats as the same model have the same canonical name."""
    text = name.strip().lower()
    for prefix in DEFAULT_PREFIXES:
        if text.startswith(prefix):
            text = text[len(prefix) :]
            break
    last = text.rsplit("/", 1)[-1]
    if ":" not in last:
        text += ":latest"
    return text


def same_model(a: str, b: str) -> bool:
    return canonical_name(a) == canonical_name(b)


def persona_owner(name: str) -> str | None:
    """For a persona's Ollama model, whose it is: a guild id (as text) or `builtin`; None for
    any other model."""
    match = _PERSONA_MODEL.fullmatch(canonical_name(name))
    return match.group(1) if match else None


def visible(name: str, guild_id: int | None) -> bool:
    """Whether a member in `guild_id` (None: a DM) may see and use the model `name`: every model
    but the personas of other guilds. Everything that lists, completes, describes or runs a model
    a member named goes through this, so that no guild learns another's personas."""
    owner = persona_owner(name)
    return owner is None or owner == "builtin" or owner == str(guild_id)


def registry_host(name: str) -> str | None:
    """The registry host a model name pulls from, when it names one (`hf.co/org/model`,
    `10.0.0.5:22/a/b`, `registry.ollama.ai/library/x`); None for a plain library name."""
    text = name.strip()
    if "/" not in text:
        return None
    first = text.split("/", 1)[0]
    # Like Ollama's parser: the first part is a host when there are three parts, or when it
    # looks like one (a dot, a port, or localhost).
    if text.count("/") >= 2 or "." in first or ":" in first or first.lower() == "localhost":
        return first
    return None
