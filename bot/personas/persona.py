"""The persona as the bot uses it: a guild's (stored) or a built-in one. The storage reads and
writes this record directly (bot/storage/personas.py); the table row is PersonaRow."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Persona:
    """A persona as the bot uses it: one of the guild's, or a built-in one."""

    name: str
    ollama_model: str
    base_model: str
    modelfile: str
    """The Modelfile text as written (the author's, or the shipped file)."""
    system: str | None
    num_ctx: int | None
    builtin: bool = False
    author_id: int | None = None
    author_name: str | None = None
    think: str | None = None
    """The persona's thinking level (`/persona create think:`); None: not set."""
    keep_alive: str | None = None
    """How long Ollama keeps its model loaded after a request (over the settings)."""
    guild_id: int | None = None
    """The guild it belongs to; None for a built-in persona."""
    created_at: datetime | None = None
    """When it was stored; None for a built-in persona."""
