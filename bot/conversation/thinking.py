"""Thinking models: the levels a member may ask for, which of them a model takes, and the
`<think>` tags of models whose content carries their reasoning.

Plain values only (no discord.py, no Ollama client): the chat service and the cogs share it."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Collection
from typing import Literal

from bot.errors import BotError, InputError
from bot.ollama.protocol import ChatDelta, ChatStats

ThinkLevel = Literal["default", "off", "on", "low", "medium", "high"]
LEVELS: tuple[ThinkLevel, ...] = ("default", "off", "on", "low", "medium", "high")
"""What `/think`, `/chat think:`, `/persona create think:` and `default_think` accept, in the
order they are listed to members. `default` means: the next level up the chain decides
(message → channel → persona → setting), and at the top, Ollama's own default."""

OPEN_TAG = "<think>"
CLOSE_TAG = "</think>"


def wire_value(level: str | None) -> bool | str | None:
    """The `think` value Ollama gets for a level: None means the field is left out."""
    if level in (None, "default"):
        return None
    if level == "on":
        return True
    if level == "off":
        return False
    return level


def resolve(*levels: str | None) -> str:
    """The first level of the chain (most specific first) that is not `default`/unset."""
    for level in levels:
        if level is not None and level != "default":
            return level
    return "default"


def is_gpt_oss(name: str, family: str | None) -> bool:
    """gpt-oss reasons in levels only: Ollama ignores `think: true/false` for it."""
    bare = name.rsplit("/", 1)[-1].lower()
    return (family or "").lower() == "gptoss" or bare.startswith("gpt-oss")


def model_levels(name: str, capabilities: Collection[str], family: str | None) -> tuple[str, ...]:
    """The levels a model takes, from its `/api/show` capabilities. A model without
    `thinking` takes only off and default (Ollama accepts `think: false` on any model since
    0.12.5); gpt-oss takes low/medium/high; other thinking models on/off."""
    if "thinking" not in capabilities:
        return ("default", "off")
    if is_gpt_oss(name, family):
        return ("default", "low", "medium", "high")
    return ("default", "off", "on")


def describe_levels(name: str, capabilities: Collection[str], family: str | None) -> str | None:
    """`/model list` and `/model info`: how a thinking model's thinking is set, else None."""
    if "thinking" not in capabilities:
        return None
    if is_gpt_oss(name, family):
        return "low/medium/high"
    return "on/off"


LEAST = "least"
"""The level of Retry without thinking: off, or the least a model takes that cannot be
switched off (gpt-oss: low)."""


class ThinkRefused(InputError):
    """A thinking level the model cannot take (refused before anything is sent to Ollama)."""


class ThoughtWithoutAnswer(BotError):
    """The model spent its whole budget thinking and ended with no answer."""

    user_message = "The model spent its whole budget thinking and gave no answer."


def think_value(
    level: str, model: str, capabilities: Collection[str], family: str | None, *, source: str
) -> bool | str | None:
    """Ollama's `think` for `level` on this model; ThinkRefused (listing the levels it takes)
    when it cannot take it. `source` says where the level comes from ("The `think` option",
    "This channel's `/think` level"), for the message."""
    allowed = model_levels(model, capabilities, family)
    if level == LEAST:
        level = "off" if "off" in allowed else "low"
    if level in allowed:
        return wire_value(level)
    shown = ", ".join(f"`{a}`" for a in allowed)
    raise ThinkRefused(
        f"{source} is `{level}`, but `{model}` takes only {shown}. "
        "Pick one of those (`/think level:` sets the channel's)."
    )


class ThinkTagParser:
    """Splits a model's content into reasoning and answer, for models whose template does not
    separate them and write `<think>…</think>` into the content. Fed chunk by chunk (a tag may
    be split across chunks); `feed` returns (reasoning, answer) text that is certain so far,
    `end` flushes the rest. Text before the opening tag is answer; only the first block is
    reasoning (a later `<think>` is quoted text); a block never closed (the output ended at
    the length limit) is all reasoning."""

    __slots__ = ("_held", "_state")

    def __init__(self) -> None:
        self._state: Literal["before", "inside", "after"] = "before"
        self._held = ""  # a possible start of the tag being looked for

    def feed(self, text: str) -> tuple[str, str]:
        if self._state == "after":
            return "", text
        reasoning: list[str] = []
        answer: list[str] = []
        data = self._held + text
        self._held = ""
        while data:
            tag = OPEN_TAG if self._state == "before" else CLOSE_TAG
            out = answer if self._state == "before" else reasoning
            at = data.find(tag)
            if at >= 0:
                out.append(data[:at])
                data = data[at + len(tag) :]
                if self._state == "before":
                    self._state = "inside"
                else:
                    self._state = "after"
                    answer.append(data)
                    data = ""
                continue
            keep = _partial_suffix(data, tag)
            out.append(data[: len(data) - keep])
            self._held = data[len(data) - keep :]
            break
        return "".join(reasoning), "".join(answer)

    def end(self) -> tuple[str, str]:
        held, self._held = self._held, ""
        if self._state == "inside":
            return held, ""
        return "", held


def _partial_suffix(text: str, tag: str) -> int:
    """Length of the longest end of `text` that is a start of `tag` (it may be completed by
    the next chunk)."""
    if "<" not in text[-(len(tag) - 1) :]:
        return 0  # the common case, checked first: this runs for every piece of every reply
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-size:]):
            return size
    return 0


async def split_think_tags(
    stream: AsyncGenerator[ChatDelta | ChatStats],
) -> AsyncGenerator[ChatDelta | ChatStats]:
    """`stream` with `<think>` blocks in the content turned into thinking deltas. Reasoning
    Ollama separates itself (`message.thinking`) passes through as it is."""
    parser = ThinkTagParser()
    try:
        async for item in stream:
            if isinstance(item, ChatStats):
                reasoning, answer = parser.end()
                if reasoning or answer:
                    yield ChatDelta(content=answer, thinking=reasoning)
                yield item
                continue
            if not item.content:
                yield item
                continue
            reasoning, answer = parser.feed(item.content)
            if reasoning or answer or item.thinking:
                yield ChatDelta(content=answer, thinking=item.thinking + reasoning)
    finally:
        await stream.aclose()
