"""What goes into the context sent to Ollama: the newest turns that fit the token budget."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bot.storage.history import StoredTurn
from bot.storage.models import Role, TurnStatus

FALLBACK_CONTEXT = 4096
"""Ollama's own default `num_ctx` on small GPUs, used when /api/show names no length."""

MESSAGE_OVERHEAD_TOKENS = 4
"""Template tokens around each message (role markers, separators)."""


@dataclass(frozen=True, slots=True)
class Budget:
    window: int
    reply_reserve: int

    @property
    def for_history(self) -> int:
        return self.window - self.reply_reserve


def budget(model_context: int | None, *, cap: int, reply_reserve: int) -> Budget:
    """The window is the model's context (capped); the reply keeps at most a quarter of it."""
    window = min(model_context or FALLBACK_CONTEXT, cap)
    return Budget(window=window, reply_reserve=min(reply_reserve, window // 4))


def estimate_tokens(text: str) -> int:
    """A tokenizer-free estimate: about four characters a token for English text, rounded up.

    Errs on the high side for code and non-Latin text less than a real tokenizer would, which
    is why a quarter of the window stays reserved for the reply."""
    return (len(text) + 3) // 4 + MESSAGE_OVERHEAD_TOKENS


def turn_tokens(turn: StoredTurn) -> int:
    if turn.role == Role.ASSISTANT and turn.completion_tokens:
        return turn.completion_tokens + MESSAGE_OVERHEAD_TOKENS
    return estimate_tokens(turn.content)


def usable(turns: Sequence[StoredTurn]) -> list[StoredTurn]:
    """Turns that belong in a context: completed or stopped replies and the questions they
    answer. A failed or unfinished reply, and the question it failed to answer, are left out,
    so that asking again does not show the model the same question twice."""
    unanswered = {
        t.reply_to_id
        for t in turns
        if t.role == Role.ASSISTANT and t.status not in (TurnStatus.COMPLETE, TurnStatus.STOPPED)
    }
    kept = []
    for turn in turns:
        if turn.role == Role.ASSISTANT:
            if turn.status in (TurnStatus.COMPLETE, TurnStatus.STOPPED) and turn.content:
                kept.append(turn)
        elif turn.id not in unanswered:
            kept.append(turn)
    return kept


def window(turns: Sequence[StoredTurn], tokens: int) -> list[StoredTurn]:
    """The newest turns (oldest first) whose estimated tokens add up to at most `tokens`."""
    chosen: list[StoredTurn] = []
    used = 0
    for turn in reversed(turns):
        cost = turn_tokens(turn)
        if used + cost > tokens:
            break
        chosen.append(turn)
        used += cost
    chosen.reverse()
    # A context never starts with the model's own words: drop a leading assistant turn.
    while chosen and chosen[0].role == Role.ASSISTANT:
        chosen.pop(0)
    return chosen
