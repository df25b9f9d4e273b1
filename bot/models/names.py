"""Model names as Ollama compares them: `[host/][namespace/]model[:tag]`, case-insensitive, the
tag `latest` when none is given, the default registry and namespace left out."""

from __future__ import annotations

DEFAULT_PREFIXES = ("registry.ollama.ai/library/", "registry.ollama.ai/", "library/")


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
