"""Tests for bot.conversation.splitter: where long replies are cut into Discord messages."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.conversation.splitter import (
    DISCORD_LIMIT,
    MIN_LIMIT,
    open_fence,
    split_message,
    split_once,
)

WHITESPACE = " \t\r\n"

# --------------------------------------------------------------------------------------------
# Helpers: an independent fence reference and the "no text lost" check.


def reference_open_fence(text: str) -> str | None:
    """Independent re-statement of the fence rule: a line that is ``` (3+ backticks) plus an
    info string without backticks, after leading spaces/tabs, toggles a code block."""
    state: str | None = None
    for line in text.split("\n"):
        stripped = line.lstrip(" \t")
        if re.fullmatch(r"`{3,}[^`]*", stripped):
            state = None if state is not None else stripped.rstrip()
    return state


_ADDED_CLOSE = re.compile(r"\n(`{3,})\Z")
_ADDED_REOPEN = re.compile(r"\A(`{3,}[^`\n]*)\n")


@dataclass
class Step:
    """One split_once call, decomposed: text == body_head + dropped + body_rest."""

    head: str
    rest: str
    body_head: str  # the head without the closing fence the splitter added
    dropped: str  # the separator removed at the cut
    body_rest: str  # the rest without the fence line the splitter added
    reopen: str  # the fence line (plus "\n") the splitter put before the rest, or ""


def decompose(text: str, head: str, rest: str, limit: int) -> Step:
    """Check that (head, rest) loses no text of `text` and return how the pieces map onto it.

    Either nothing was added, or the head got "\\n" + a closing fence and the rest starts with a
    reopening fence line + "\\n" -- and that happens exactly when the head's text leaves a code
    block open. What lies between the head's and the rest's text must be whitespace only.
    """
    options: list[tuple[str, str, str, str]] = [(head, rest, "", "")]
    close, reopen = _ADDED_CLOSE.search(head), _ADDED_REOPEN.match(rest)
    if close is not None and reopen is not None:
        options.append(
            (head[: close.start()], rest[reopen.end() :], close.group(1), reopen.group(1))
        )
    found = []
    for body_head, body_rest, closing, reopen_line in options:
        if len(body_head) + len(body_rest) > len(text):
            continue
        if not (text.startswith(body_head) and text.endswith(body_rest)):
            continue
        if (reference_open_fence(body_head) is None) != (reopen_line == ""):
            continue
        dropped = text[len(body_head) : len(text) - len(body_rest)]
        if dropped.strip(WHITESPACE) == "":
            found.append((body_head, dropped, body_rest, closing, reopen_line))
    assert len(found) == 1, f"text lost (or ambiguous cut): {(text, head, rest)}"
    body_head, dropped, body_rest, closing, reopen_line = found[0]

    assert body_head, "the head is never empty"
    if dropped:  # a boundary cut: the head doesn't end in whitespace, the rest rarely starts so
        assert body_head[-1] not in WHITESPACE
        reaches_past_window = len(body_head) + len(dropped) == limit + 1
        if body_rest and "\n" not in dropped and not reaches_past_window:
            assert body_rest[0] not in WHITESPACE
    if reopen_line:
        opener = reference_open_fence(body_head)
        assert opener is not None
        assert reopen_line == (opener if len(opener) <= limit // 4 else "```")
        assert closing == reopen_line[: len(reopen_line) - len(reopen_line.lstrip("`"))]
    return Step(
        head, rest, body_head, dropped, body_rest, reopen_line + "\n" if reopen_line else ""
    )


def split_steps(text: str, limit: int) -> tuple[list[Step], str]:
    """Apply split_once until the text fits, checking each step; return the steps and the tail."""
    steps: list[Step] = []
    while (cut := split_once(text, limit)) is not None:
        head, rest = cut
        assert len(rest) < len(text), "no progress"
        steps.append(decompose(text, head, rest, limit))
        text = rest
    return steps, text


def restore(steps: list[Step], tail: str) -> str:
    """The original text rebuilt from the pieces: drop the added fences, put back separators."""
    parts: list[str] = []
    carried = ""  # the fence line the previous step put in front of the current text
    for step in steps:
        assert step.body_head.startswith(carried)
        parts += [step.body_head[len(carried) :], step.dropped]
        carried = step.reopen
    assert tail.startswith(carried)
    parts.append(tail[len(carried) :])
    return "".join(parts)


def degenerate(text: str, limit: int) -> bool:
    """Texts where the splitter may have to break a fence line (see the module docstring)."""
    quarter = limit // 4
    return (
        "`" * quarter in text
        or re.search(rf"[ \t\r\n]{{{quarter},}}", text) is not None
        or any(
            len(line) > quarter for line in text.split("\n") if line.lstrip(" \t").startswith("```")
        )
    )


# --------------------------------------------------------------------------------------------
# Examples.

CODE = "```python\n" + "print(1)\n" * 10 + "```"


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        pytest.param(
            "First paragraph is here.\nIt has lines.\n\nSecond paragraph goes on for a while.",
            50,
            ("First paragraph is here.\nIt has lines.", "Second paragraph goes on for a while."),
            id="paragraph-over-line",
        ),
        pytest.param(
            "Line one. Still line one, going on\nline two. And more words here",
            40,
            ("Line one. Still line one, going on", "line two. And more words here"),
            id="line-over-sentence",
        ),
        pytest.param(
            "The first sentence ends. Then more words follow",
            40,
            ("The first sentence ends.", "Then more words follow"),
            id="sentence-over-space",
        ),
        pytest.param(
            "Some words (quoted.) Then more words follow here",
            40,
            ("Some words (quoted.)", "Then more words follow here"),
            id="sentence-with-closer",
        ),
        pytest.param(
            "alpha beta gamma delta epsilon zeta eta theta",
            40,
            ("alpha beta gamma delta epsilon zeta eta", "theta"),
            id="space",
        ),
        pytest.param("x" * 100, 40, ("x" * 40, "x" * 60), id="hard-cut"),
        pytest.param(
            "Tiny.\n\nword word word word word word word word word",
            40,
            ("Tiny.\n\nword word word word word word", "word word word"),
            id="early-paragraph-ignored",
        ),
        pytest.param(
            "Intro words here.\n```sh\nls\n```\nAfter the block, some more text.",
            40,
            ("Intro words here.\n```sh\nls\n```", "After the block, some more text."),
            id="after-code-block",
        ),
        pytest.param(
            "x" * 35 + "\n```py\ncode\n```",
            40,
            ("x" * 35, "```py\ncode\n```"),
            id="before-code-block",
        ),
        pytest.param(
            CODE,
            40,
            ("```python\nprint(1)\nprint(1)\nprint(1)\n```", CODE[:10] + CODE[37:]),
            id="code-reopens-with-language",
        ),
        pytest.param(
            "```a-very-long-language-tag\n" + "a = 1\n" * 5 + "```",
            40,
            ("```a-very-long-language-tag\na = 1\n```", "```\n" + "a = 1\n" * 4 + "```"),
            id="long-tag-reopens-plain",
        ),
        pytest.param(
            "```\nthe code. has sentences. and spaces but it goes\non",
            40,
            ("```\nthe code. has sentences. and\n```", "```\nspaces but it goes\non"),
            id="code-space-when-no-newline",
        ),
        pytest.param(
            "```py\n" + "ab\n" * 11 + "```\nafter the code",
            40,
            ("```py\n" + "ab\n" * 9 + "ab\n```", "```py\nab\n```\nafter the code"),
            id="no-empty-reopened-block",  # the window ends in "``": maybe the closing fence
        ),
        pytest.param(
            "aaaa bbbb cccc dddd eeee ffff gggg ```hhh iii jjj",
            40,
            ("aaaa bbbb cccc dddd eeee ffff", "gggg ```hhh iii jjj"),
            id="no-fence-made-at-line-start",
        ),
        pytest.param(
            "one two three four five\r\nsix seven eight nine",
            30,
            ("one two three four five", "six seven eight nine"),
            id="crlf",
        ),
        pytest.param(
            "para one\n\n  indented line that continues on and on",
            20,
            ("para one", "  indented line that continues on and on"),
            id="indentation-kept",
        ),
        pytest.param(
            "e\u0301" * 30,
            21,
            ("e\u0301" * 10, "e\u0301" * 20),
            id="combining-mark-kept",
        ),
        pytest.param(
            "。".join(["漢字漢字漢字"] * 5),
            20,
            ("漢字漢字漢字。漢字漢字漢字。", "漢字漢字漢字。漢字漢字漢字。漢字漢字漢字"),
            id="cjk",
        ),
    ],
)
def test_split_once_examples(text: str, limit: int, expected: tuple[str, str]) -> None:
    assert split_once(text, limit) == expected
    decompose(text, *expected, limit)


def test_text_that_fits() -> None:
    assert split_once("short", 40) is None
    assert split_once("x" * DISCORD_LIMIT) is None
    assert split_message("short") == ["short"]
    assert split_message("x" * DISCORD_LIMIT) == ["x" * DISCORD_LIMIT]


def test_empty_text() -> None:
    assert split_once("") is None
    assert split_message("") == []


def test_limit_too_small() -> None:
    with pytest.raises(ValueError, match="at least"):
        split_once("x" * 100, MIN_LIMIT - 1)
    with pytest.raises(ValueError, match="at least"):
        split_message("", MIN_LIMIT - 1)
    assert split_message("x" * 100, MIN_LIMIT) == ["x" * MIN_LIMIT] * 5


def test_long_word() -> None:
    assert split_message("w" * 5000) == ["w" * 2000, "w" * 2000, "w" * 1000]


def test_code_block_of_one_long_line() -> None:
    text = "```py\n" + "y" * 3000 + "\n```"
    pieces = split_message(text)
    assert pieces == ["```py\n" + "y" * 1990 + "\n```", "```py\n" + "y" * 1010 + "\n```"]


def test_whitespace_only() -> None:
    assert split_message(" " * 50, 20) == [" " * 20, " " * 20, " " * 10]
    pieces = split_message("\n" * 5000)
    assert all(len(piece) <= DISCORD_LIMIT for piece in pieces)
    assert "".join(pieces) == "\n" * 5000


def test_trailing_newline_leaves_no_empty_piece() -> None:
    assert split_once("x" * 40 + "\n", 40) == ("x" * 40, "")
    assert split_message("x" * 40 + "\n", 40) == ["x" * 40]


def test_reopened_rest_keeps_streaming_in_code() -> None:
    cut = split_once(CODE, 40)
    assert cut is not None
    head, rest = cut
    assert open_fence(head) is None
    assert open_fence(rest) is None  # the rest closes its block with the original fence
    assert open_fence(rest[:-3]) == "```python"


def test_open_fence() -> None:
    assert open_fence("") is None
    assert open_fence("text") is None
    assert open_fence("```py") == "```py"
    assert open_fence("a\n  ```python  \r\nx = 1") == "```python"
    assert open_fence("```py\nx\n```") is None
    assert open_fence("```\nx\n```js\n") is None  # any fence line closes the block
    assert open_fence("inline ```py\nx") is None  # not at the start of a line
    assert open_fence("```py`\nx") is None  # backtick in the info string: not a fence
    assert open_fence("~~~\nx") is None


def test_fast_on_100_kb() -> None:
    text = ("Some prose. " * 40 + "\n\n```py\n" + "value = compute(1, 2)\n" * 30 + "```\n") * 90
    assert len(text) > 100_000
    started = time.perf_counter()
    pieces = split_message(text)
    assert time.perf_counter() - started < 0.5
    assert all(len(piece) <= DISCORD_LIMIT for piece in pieces)


# --------------------------------------------------------------------------------------------
# Properties.

_TOKENS = [
    "word", "a", "Lorem", "ipsum", " ", "  ", "\n", "\n\n", "\r\n", "\t", ". ", "! ", "? ",
    ".\n", ".)", "`", "``", "`code`", "```py\n", "```\n", "\n```\n", "\n```python\n", "``` x y",
    "```py  \n", "  ```\n", "~~~\n", "😀", "👍🏽", "👨\u200d👩\u200d👧", "🇫🇷", "e\u0301", "。", "漢字",
    "(", ")", "*", '"', "-",
]  # fmt: skip
_PROSE = (
    "Here is an answer. It has sentences! Does it? Yes.\n\nA second paragraph, with a list:\n"
    "- one item\n  - nested item\n- another item\n\n```python\ndef f(x):\n    return x + 1\n\n"
    "print(f(2))  # prints 3. ok\n```\nAfter the code, more prose follows; and then some more.\n"
) * 40


_WORD_UNITS = ["x", "x", "x", "e\u0301", "👍🏽", "🇫🇷", "👨\u200d👩\u200d👧", "漢", "`"]
# A token: a string as is, or an int / a pair: a long word (of _WORD_UNITS) / a slice of _PROSE,
# whose size is that percentage of the limit. Strategies are built once (per draw is slow).
_TOKEN = st.one_of(
    st.sampled_from(_TOKENS),
    st.text(st.sampled_from("ab .\n`é😀"), max_size=6),
    st.integers(1, 200),
    st.tuples(st.integers(0, len(_PROSE) // 2), st.integers(1, 200)),
)
_LIMIT = st.one_of(st.integers(MIN_LIMIT, 60), st.integers(61, 300), st.integers(301, 2000))


@st.composite
def texts_and_limits(draw: st.DrawFn, longer: bool = False) -> tuple[str, int]:
    """A limit and a text made of tokens, long words and prose/code slices (longer than the
    limit when `longer`)."""
    limit = draw(_LIMIT)
    parts: list[str] = []
    for token in draw(st.lists(_TOKEN, max_size=30)):
        if isinstance(token, int):
            unit = _WORD_UNITS[token % len(_WORD_UNITS)]
            parts.append(unit * (limit * token // 100 // len(unit) + 1))
        elif isinstance(token, tuple):
            start, percent = token
            parts.append(_PROSE[start : start + limit * percent // 100 + 1])
        else:
            parts.append(token)
    text = "".join(parts)
    if longer and len(text) <= limit:
        start = draw(st.integers(0, len(_PROSE) // 2))
        text += _PROSE[start : start + limit + 1 - len(text) + start % limit]
    return text, limit


PROPERTY = settings(max_examples=200, deadline=None)


@PROPERTY
@given(texts_and_limits())
def test_pieces_fit_lose_no_text_and_close_their_fences(case: tuple[str, int]) -> None:
    text, limit = case
    pieces = split_message(text, limit)
    steps, tail = split_steps(text, limit)  # checks every cut with `decompose`
    assert pieces == [step.head for step in steps] + ([tail] if tail else [])
    assert all(0 < len(piece) <= limit for piece in pieces)
    assert restore(steps, tail) == text
    for piece in [text, *pieces]:
        assert open_fence(piece) == reference_open_fence(piece)
    # Every frozen piece renders with its code blocks closed ...
    assert all(open_fence(piece) is None for piece in pieces[:-1])
    # ... and the last one ends in the same state as the text.
    if pieces and not degenerate(text, limit):
        assert (open_fence(pieces[-1]) is None) == (open_fence(text) is None)


@PROPERTY
@given(texts_and_limits(longer=True), st.text(max_size=50))
def test_head_depends_only_on_first_limit_plus_one_chars(case: tuple[str, int], more: str) -> None:
    text, limit = case
    window = text[: limit + 1]
    full, prefix, extended = (split_once(t, limit) for t in (text, window, window + more))
    assert full is not None
    assert prefix is not None
    assert extended is not None
    assert full[0] == prefix[0] == extended[0]
    assert full[1] == prefix[1] + text[limit + 1 :]


@PROPERTY
@given(texts_and_limits(), st.lists(st.integers(1, 400), min_size=1, max_size=50))
def test_streaming_gives_the_same_pieces(case: tuple[str, int], chunk_sizes: list[int]) -> None:
    text, limit = case
    pieces: list[str] = []
    buffer, pos, i = "", 0, 0
    while pos < len(text):
        size = chunk_sizes[i % len(chunk_sizes)]
        buffer += text[pos : pos + size]
        pos, i = pos + size, i + 1
        while (cut := split_once(buffer, limit)) is not None:
            head, buffer = cut
            pieces.append(head)
    if buffer:
        pieces.append(buffer)
    assert pieces == split_message(text, limit)
