"""Thinking levels and the `<think>` tag parser (bot/conversation/thinking.py)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.conversation.thinking import (
    LEAST,
    ThinkRefused,
    ThinkTagParser,
    describe_levels,
    model_levels,
    resolve,
    think_value,
    wire_value,
)

QWEN = ("qwen3", frozenset({"completion", "tools", "thinking"}), "qwen3")
GPT_OSS = ("gpt-oss:20b", frozenset({"completion", "thinking"}), "gptoss")
LLAMA = ("llama3.2", frozenset({"completion", "tools"}), "llama")


def parse(chunks: list[str]) -> tuple[str, str]:
    parser = ThinkTagParser()
    reasoning: list[str] = []
    answer: list[str] = []
    for chunk in chunks:
        r, a = parser.feed(chunk)
        reasoning.append(r)
        answer.append(a)
    r, a = parser.end()
    return "".join([*reasoning, r]), "".join([*answer, a])


def cut(text: str, points: list[int]) -> list[str]:
    bounds = sorted({p % (len(text) + 1) for p in points} | {0, len(text)})
    return [text[a:b] for a, b in itertools.pairwise(bounds)]


def test_levels_map_to_what_ollama_takes() -> None:
    assert [wire_value(level) for level in ("default", "off", "on", "low", "high")] == [
        None,
        False,
        True,
        "low",
        "high",
    ]
    assert resolve(None, "default", "high", "off") == "high"
    assert resolve(None, "default") == "default"


def test_which_levels_a_model_takes_comes_from_its_capabilities() -> None:
    assert model_levels(*QWEN) == ("default", "off", "on")
    assert model_levels(*GPT_OSS) == ("default", "low", "medium", "high")
    assert model_levels("gpt-oss:120b", {"thinking"}, None) == model_levels(*GPT_OSS)
    assert model_levels(*LLAMA) == ("default", "off")
    assert describe_levels(*QWEN) == "on/off"
    assert describe_levels(*GPT_OSS) == "low/medium/high"
    assert describe_levels(*LLAMA) is None


def test_a_level_the_model_cannot_take_is_refused_with_the_ones_it_can() -> None:
    with pytest.raises(ThinkRefused) as refused:
        think_value("high", *QWEN, source="The `think` option")
    assert refused.value.user_message.startswith("The `think` option is `high`, but `qwen3`")
    assert "`default`, `off`, `on`" in refused.value.user_message
    with pytest.raises(ThinkRefused):
        think_value("on", *LLAMA, source="x")
    with pytest.raises(ThinkRefused):
        think_value("off", *GPT_OSS, source="x")
    assert think_value("off", *LLAMA, source="x") is False
    assert think_value("medium", *GPT_OSS, source="x") == "medium"
    # Retry without thinking: off, or the least a model that cannot stop thinking takes.
    assert think_value(LEAST, *QWEN, source="x") is False
    assert think_value(LEAST, *GPT_OSS, source="x") == "low"


@pytest.mark.parametrize(
    ("text", "reasoning", "answer"),
    [
        ("<think>hmm</think>Blue.", "hmm", "Blue."),
        ("Plain answer.", "", "Plain answer."),
        ("Sure. <think>hmm</think> Blue.", "hmm", "Sure.  Blue."),
        ("<think>cut off at the length lim", "cut off at the length lim", ""),
        ("<think>a</think>b<think>c</think>", "a", "b<think>c</think>"),
        ("a < b and <thin but no tag", "", "a < b and <thin but no tag"),
        ("<think></think>", "", ""),
    ],
)
def test_think_tags_split_reasoning_from_the_answer(text: str, reasoning: str, answer: str) -> None:
    assert parse([text]) == (reasoning, answer)


texts = st.lists(
    st.sampled_from(["<think>", "</think>", "<", ">", "/", "think", "a", " ", "\n", "<thi"]),
    max_size=30,
).map("".join)


@given(text=texts, points=st.lists(st.integers(min_value=0, max_value=400), max_size=12))
def test_the_split_does_not_depend_on_where_the_chunks_break(text: str, points: list[int]) -> None:
    assert parse(cut(text, points)) == parse([text])


@given(text=texts, points=st.lists(st.integers(min_value=0, max_value=400), max_size=12))
def test_nothing_is_lost_but_the_tags_of_the_first_block(text: str, points: list[int]) -> None:
    reasoning, answer = parse(cut(text, points))
    opened = text.find("<think>")
    if opened < 0:
        assert (reasoning, answer) == ("", text)
        return
    closed = text.find("</think>", opened + len("<think>"))
    if closed < 0:
        assert (text[:opened], text[opened + len("<think>") :]) == (answer, reasoning)
    else:
        assert reasoning == text[opened + len("<think>") : closed]
        assert answer == text[:opened] + text[closed + len("</think>") :]


@given(text=texts)
def test_each_character_alone_gives_the_same_split(text: str) -> None:
    assert parse(list(text)) == parse([text])
