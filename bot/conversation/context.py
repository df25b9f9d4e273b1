"""What goes into the context sent to Ollama: the newest turns that fit the token budget.

The window is the one Ollama runs: the bot sends it as `num_ctx` with every request (`Windows`),
so Ollama never cuts a prompt the bot planned to fit. Tokens are estimated from characters and
corrected per model by what Ollama reports it evaluated (`Calibration`)."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from bot.ollama.protocol import ChatMessage, Ollama
from bot.storage.history import StoredTurn
from bot.storage.models import Role, TurnStatus

FALLBACK_CONTEXT = 4096
"""Ollama's own default `num_ctx` on small GPUs, used when /api/show names no length."""

MESSAGE_OVERHEAD_TOKENS = 4
"""Template tokens around each message (role markers, separators)."""

IMAGE_TOKENS = 768
"""What an image costs in a vision model's context (Ollama's server/prompt.go counts 768)."""


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


def text_tokens(text: str, ratio: float = 1.0) -> int:
    """A tokenizer-free estimate of a text alone: four characters a token, rounded up, times
    the model's calibrated `ratio` (see Calibration)."""
    raw = (len(text) + 3) // 4
    return raw if ratio == 1.0 else math.ceil(raw * ratio)


def estimate_tokens(text: str, ratio: float = 1.0) -> int:
    """A message's tokens: its text (calibrated by `ratio`) and the template around it."""
    return text_tokens(text, ratio) + MESSAGE_OVERHEAD_TOKENS


def turn_tokens(turn: StoredTurn, ratio: float = 1.0) -> int:
    """Estimated from the stored text for every turn, the model's answers too: their
    `completion_tokens` count reasoning that is never sent back, and the calibration corrects
    the text estimate for each model anyway."""
    return estimate_tokens(turn.content, ratio)


class Calibration:
    """Per model, how many tokens Ollama counts for what the estimate calls one: the ratio of
    `prompt_eval_count` to the estimate of the same prompt, smoothed (an exponential moving
    average), within sane bounds. Kept in memory: a restart learns it again in a reply or two."""

    SMOOTHING = 0.5
    BOUNDS = (0.25, 6.0)
    MIN_TEXT_TOKENS = 16
    """Prompts with less text than this tell too little (mostly template framing)."""

    def __init__(self) -> None:
        self._ratios: dict[str, float] = {}

    def ratio(self, model: str) -> float:
        return self._ratios.get(model, 1.0)

    def observe(
        self, model: str, messages: Sequence[ChatMessage], evaluated: int, window: int
    ) -> None:
        """Ollama evaluated `evaluated` prompt tokens for `messages`, in a `window`."""
        if evaluated >= window:
            return  # cut to the window (or capped): says nothing about the text
        text = sum(text_tokens(m.content) for m in messages)
        fixed = MESSAGE_OVERHEAD_TOKENS * len(messages) + IMAGE_TOKENS * sum(
            len(m.images) for m in messages
        )
        if text < self.MIN_TEXT_TOKENS or evaluated <= fixed:
            return
        seen = (evaluated - fixed) / text
        low, high = self.BOUNDS
        seen = min(max(seen, low), high)
        old = self._ratios.get(model)
        ratio = seen if old is None else old + self.SMOOTHING * (seen - old)
        if len(self._ratios) >= 10_000 and model not in self._ratios:
            self._ratios.pop(next(iter(self._ratios)))  # bounded: forget the oldest model
        self._ratios[model] = ratio

    def estimate(self, model: str, messages: Sequence[ChatMessage]) -> int:
        """The calibrated estimate of a prompt of `messages`."""
        ratio = self.ratio(model)
        return sum(
            estimate_tokens(m.content, ratio) + IMAGE_TOKENS * len(m.images) for m in messages
        )


class Windows:
    """The context window of each model, the same for every request to it (a different
    `num_ctx` makes Ollama reload the model): the model's context length from /api/show (or
    its own num_ctx parameter, if lower), capped by `context_tokens_max` and by a persona's
    num_ctx. Sent as `options.num_ctx` with every chat request."""

    def __init__(self, gateway: Ollama, *, cap: int, reply_reserve: int) -> None:
        self._gateway = gateway
        self.cap = cap
        self.reply_reserve = reply_reserve
        self.calibration = Calibration()

    async def size(self, model: str, persona_num_ctx: int | None = None) -> int:
        info = await self._gateway.show(model)
        sizes = [info.effective_context or FALLBACK_CONTEXT, self.cap]
        if persona_num_ctx:
            sizes.append(persona_num_ctx)
        return min(sizes)

    def budget(self, window: int) -> Budget:
        return budget(window, cap=self.cap, reply_reserve=self.reply_reserve)


SPEAKER_CHARS = 32
_MENTIONS = re.compile(r"<(?:@[!&]?|#|a?:\w+:)\d+>")


def speaker(name: str) -> str:
    """A display name as a speaker label in the context: no mentions, no @, one line, short."""
    text = _MENTIONS.sub("", name).replace("@", "")
    text = " ".join(text.split())[:SPEAKER_CHARS].strip()
    return text or "someone"


def with_speakers(turns: Sequence[StoredTurn]) -> list[StoredTurn]:
    """User turns prefixed with their speaker's name ("Alice: ..."), so that the model can tell
    several people apart."""
    return [
        t._replace(content=f"{speaker(t.author_name)}: {t.content}") if t.role == Role.USER else t
        for t in turns
    ]


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


def window(turns: Sequence[StoredTurn], tokens: int, ratio: float = 1.0) -> list[StoredTurn]:
    """The newest turns (oldest first) whose estimated tokens add up to at most `tokens`."""
    chosen: list[StoredTurn] = []
    used = 0
    for turn in reversed(turns):
        cost = turn_tokens(turn, ratio)
        if used + cost > tokens:
            break
        chosen.append(turn)
        used += cost
    chosen.reverse()
    # A context never starts with the model's own words: drop a leading assistant turn.
    while chosen and chosen[0].role == Role.ASSISTANT:
        chosen.pop(0)
    return chosen
