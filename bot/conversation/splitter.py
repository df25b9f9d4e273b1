"""Cut long replies into Discord-sized messages.

A Discord message holds at most `DISCORD_LIMIT` characters (Python `str` length, i.e. code points).
`split_once` cuts the first message off a text; `split_message` cuts a whole text into pieces.

Stability. The bot calls `split_once` on a growing buffer and freezes a head as soon as it is cut,
so every decision is taken from the first ``limit + 1`` characters of the text (the *window*) only:

* the head depends only on ``text[:limit + 1]``;
* the rest is ``reopen + text[k:]``, where the fence line ``reopen`` (possibly empty) and the offset
  ``k <= limit + 1`` also depend only on the window.

Hence ``split_once(text + more) == (head, rest + more)`` whenever ``split_once(text) == (head,
rest)``, and cutting a stream whenever its buffer exceeds the limit gives the same pieces as
`split_message` on the whole text.

Where to cut. Candidate boundaries, best first:

0. a paragraph break (a whitespace run holding two or more newlines) outside code, or a line break
   right after a closing fence line / right before an opening fence line (a code block boundary);
1. a line break outside code;
2. a blank line inside a code block;
3. a line break inside a code block;
4. a sentence end outside code: ``.``, ``!``, ``?`` (optionally followed by closing quotes, brackets
   or ``*_~``) and then spaces; also ``。！？`` directly followed by text (no separator dropped);
5. spaces / tabs outside code;
6. spaces / tabs inside a code block (sentence ends mean nothing in code).

The cut takes the best-ranked kind whose last occurrence leaves a head of at least ``limit // 2``
characters; if no kind reaches that far, the last boundary of any kind; if there is none, a hard cut
as late as possible (avoiding, when it can, a split between a character and a following combining
mark, ZWJ, variation selector, skin-tone modifier, inside a flag pair or inside ``\\r\\n``).

What is dropped. At a boundary the whole whitespace run (spaces, tabs, ``\\r``, ``\\n``) is dropped,
except the indentation that follows its last newline, which stays with the rest (it matters for
code and nested lists). So a head cut at a boundary never ends with whitespace, and a rest starts
with whitespace only when it is indentation or when the run reaches past the window. Hard cuts and
``。！？`` cuts drop nothing. Nothing else is ever removed: ``head + dropped + rest`` is the text, once the fence lines
added by the splitter are taken off.

Code fences. A line whose text, after leading spaces/tabs, starts with three or more backticks and
whose info string (after the backtick run) holds no backtick is a fence line; each fence line
toggles a code block (open / closed), like Discord, which closes a block at any fence. ``~~~`` is
not a fence (Discord does not render it). When a cut falls inside a code block, the head gets
``"\\n" + closing`` appended (``closing`` is the backtick run of the reopening line; room for it is
reserved) and the rest starts with ``reopen + "\\n"``, where ``reopen`` is the (stripped) opening
fence line, e.g. ``"```python"``, or plain ``"```"`` when that line is longer than ``limit // 4``.
The splitter never cuts inside a fence line, never cuts a code block right after its opening line
(it would be empty), and never lets the rest's first line start with a fence unless the original
line did. So every head renders with all code blocks closed, and the rest continues in the same
state as the original text: the last piece leaves a block open only if the text does (the bot can
use `open_fence` to close it while the reply is still streaming). Only in degenerate texts -- a
fence line, or a run of backticks or of whitespace, longer than about half a message -- may the
splitter have to cut a fence line or let a rest start with a fence (it then cuts at ``limit``, or
at ``limit - 1 - limit // 4`` when it must close a block); heads are still balanced then.

Other guarantees: pieces are never empty; every rest is strictly shorter than its text, so
`split_message` terminates; each call is O(limit). A piece can be blank (whitespace only) when the
text holds a whitespace run about as long as a message, and the last piece when the text ends with
whitespace the last cut did not reach: Discord rejects blank messages, so skip blank pieces when
sending. Limits below `MIN_LIMIT` raise `ValueError`.
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_right
from collections.abc import Iterable
from typing import NamedTuple

__all__ = ["DISCORD_LIMIT", "MIN_LIMIT", "open_fence", "split_message", "split_once"]

DISCORD_LIMIT = 2000
MIN_LIMIT = 20  # the smallest limit accepted: room for a reopened and a closed fence plus text

_FENCE = "```"
_WHITESPACE = " \t\r\n"
# Maximal whitespace runs holding a newline / holding none (lookbehinds keep the scans linear).
_NEWLINE_RUN = re.compile(r"(?<![ \t\r])[ \t\r]*\n[ \t\r\n]*")
_SPACE_RUN = re.compile(r"(?<![ \t\r\n])(?P<run>[ \t\r]+)(?![ \t\r\n])")
_SENTENCE_RUN = re.compile(r"[.!?][)\]\"'”’»*_~]*(?P<run>[ \t\r]+)(?![ \t\r\n])")
_CJK_STOP = re.compile(r"[。！？](?=[^ \t\r\n])")
_SENTENCE_END = ".!?。！？"
_CLOSERS = ")]\"'”’»*_~"
_SOFT_BACKOFF = 32  # how far a hard cut may move back to keep a character cluster whole

# Boundary ranks, best first (see the module docstring).
_PARAGRAPH, _LINE, _CODE_PARAGRAPH, _CODE_LINE, _SENTENCE, _SPACE, _CODE_SPACE = range(7)


class _Cut(NamedTuple):
    head_end: int  # the head is text[:head_end] (plus a closing fence when `opener` is set)
    rest_start: int  # the rest is text[rest_start:] (after a reopened fence when `opener` is set)
    opener: str | None  # the opening fence line of the code block the cut falls in, if any


def _check_limit(limit: int) -> None:
    if limit < MIN_LIMIT:
        raise ValueError(f"limit must be at least {MIN_LIMIT}, got {limit}")


def _fence_opener(line: str) -> str | None:
    """The stripped line when `line` is a fence line, else None."""
    stripped = line.lstrip(" \t")
    if not stripped.startswith(_FENCE) or "`" in stripped.lstrip("`"):
        return None
    return stripped.rstrip()


def open_fence(text: str) -> str | None:
    """The opening fence line (e.g. "```python") of a code block left open at the end of `text`.

    None when every code block is closed. The line is returned without its indentation and
    trailing whitespace. A last line without a newline counts as a full line, so
    `open_fence("```py")` is "```py".
    """
    if _FENCE not in text:
        return None
    state: str | None = None
    for line in text.split("\n"):
        opener = _fence_opener(line)
        if opener is not None:
            state = opener if state is None else None
    return state


def _reopen_line(opener: str, limit: int) -> str:
    return opener if len(opener) <= limit // 4 else _FENCE


def _closing_fence(reopen: str) -> str:
    return reopen[: len(reopen) - len(reopen.lstrip("`"))]


def _close_cost(opener: str | None, limit: int) -> int:
    if opener is None:
        return 0
    return 1 + len(_closing_fence(_reopen_line(opener, limit)))


_CLOSED: tuple[str | None, int] = (None, -1)
_FENCE_LINE = re.compile(r"^[ \t]*```[^\n]*", re.MULTILINE)  # a line starting with ```


class _Fences:
    """The lines of the window that start with ``` and the fence state after each of them.

    A state is (opener, end of the opener line) for an open code block, else (None, -1).
    """

    def __init__(self, window: str) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []  # index of the line's newline, or len(window)
        self.after: list[tuple[str | None, int]] = []
        state = _CLOSED
        for match in _FENCE_LINE.finditer(window):
            start, end = match.span()
            self.starts.append(start)
            self.ends.append(end)
            opener = _fence_opener(match.group())
            if opener is not None:  # a fence line: it toggles the block
                state = (opener, end) if state[0] is None else _CLOSED
            self.after.append(state)

    def in_fence_line(self, pos: int) -> bool:
        """Whether `pos` lies in a line starting with ``` (its newline included)."""
        i = bisect_right(self.starts, pos) - 1
        return i >= 0 and pos <= self.ends[i]

    def state(self, pos: int) -> tuple[str | None, int]:
        """The state after the line holding `pos` if it starts with ```, else before that line."""
        i = bisect_right(self.starts, pos) - 1
        return self.after[i] if i >= 0 else _CLOSED


def _rest_ok(window: str, pos: int) -> bool:
    """Whether a rest whose first non-blank character is at `pos` surely doesn't start with ```."""
    if pos >= len(window):
        return False  # what follows lies beyond the window: unknown
    return not _FENCE.startswith(window[pos : pos + 3])


def _is_sentence_end(window: str, end: int) -> bool:
    i = end - 1
    while i > 0 and window[i] in _CLOSERS:
        i -= 1
    return window[i] in _SENTENCE_END


def _fits(cut: _Cut, opener_end: int, limit: int) -> bool:
    if cut.opener is None:
        return cut.head_end <= limit
    # Inside a code block: the head must keep some code after the opening line, and room to close.
    return cut.head_end > opener_end and cut.head_end + _close_cost(cut.opener, limit) <= limit


class _Ranked(NamedTuple):
    rank: int
    cut: _Cut


def _line_break(window: str, fences: _Fences, run: re.Match[str], limit: int) -> _Ranked | None:
    """A cut at a whitespace run holding a newline: the head ends with a whole line."""
    start, end = run.span()
    if start == 0:
        return None
    last_newline = window.rfind("\n", start, end)
    opener, opener_end = fences.state(start)
    paragraph = window.find("\n", start, last_newline) != -1
    if opener is not None:
        if not _rest_ok(window, end):
            return None  # don't reopen a block only to close it at once
        rank = _CODE_PARAGRAPH if paragraph else _CODE_LINE
    elif paragraph or fences.in_fence_line(start) or window.startswith(_FENCE, end):
        rank = _PARAGRAPH
    else:
        rank = _LINE
    # The rest keeps the indentation after the last newline.
    cut = _Cut(start, last_newline + 1, opener)
    return _Ranked(rank, cut) if _fits(cut, opener_end, limit) else None


def _in_line(window: str, fences: _Fences, start: int, end: int, limit: int) -> _Ranked | None:
    """A cut inside a line: at spaces/tabs (window[start:end]) or after a CJK full stop."""
    if start == 0 or not _rest_ok(window, end):
        return None
    if fences.in_fence_line(start):
        return None
    opener, opener_end = fences.state(start)
    if opener is not None:
        if start == end:
            return None  # no CJK sentence cuts in code
        rank = _CODE_SPACE
    elif _is_sentence_end(window, start):
        rank = _SENTENCE
    else:
        rank = _SPACE
    cut = _Cut(start, end, opener)
    return _Ranked(rank, cut) if _fits(cut, opener_end, limit) else None


def _pick(found: list[_Ranked], half: int) -> _Cut | None:
    """The best-ranked kind whose last cut reaches `half`, else the latest cut of any kind."""
    reaching = [item for item in found if item.cut.head_end >= half]
    if reaching:
        return min(reaching, key=lambda item: (item.rank, -item.cut.head_end)).cut
    if found:
        return max(found, key=lambda item: item.cut.head_end).cut
    return None


def _latest_first(candidates: Iterable[_Ranked | None], half: int, top: int) -> list[_Ranked]:
    """Take candidates, latest first, until the outcome is settled: the first one below `half`
    (the latest cut if none reaches half), or one of rank `top` or better reaching half."""
    found: list[_Ranked] = []
    for ranked in candidates:
        if ranked is not None:
            found.append(ranked)
            if ranked.cut.head_end < half or ranked.rank <= top:
                break
    return found


def _boundary_cut(window: str, fences: _Fences, limit: int) -> _Cut | None:
    half = limit // 2
    # Line breaks (ranks 0-3) beat every in-line boundary (ranks 4-6): look at them first.
    runs = reversed(list(_NEWLINE_RUN.finditer(window)))
    breaks = (_line_break(window, fences, run, limit) for run in runs)
    best = _pick(_latest_first(breaks, half, _PARAGRAPH), half)
    if best is not None and best.head_end >= half:
        return best
    found = [
        ranked
        for stop in _CJK_STOP.finditer(window)
        if (ranked := _in_line(window, fences, stop.end(), stop.end(), limit)) is not None
    ]
    for pattern, top in ((_SENTENCE_RUN, _SENTENCE), (_SPACE_RUN, _SPACE)):
        runs = reversed(list(pattern.finditer(window)))
        spaces = (_in_line(window, fences, *run.span("run"), limit) for run in runs)
        found += _latest_first(spaces, half, top)
    inline = _pick(found, half)
    if inline is None or (best is not None and inline.head_end < best.head_end):
        return best  # nothing reaches half: the latest boundary of any kind
    return inline


def _is_extender(char: str) -> bool:
    return (
        unicodedata.category(char) in ("Mn", "Mc", "Me")
        or char == "\u200d"
        or "\ufe00" <= char <= "\ufe0f"
        or "\U0001f3fb" <= char <= "\U0001f3ff"
        or "\U000e0020" <= char <= "\U000e007f"
        or "\U000e0100" <= char <= "\U000e01ef"
    )


def _is_regional_indicator(char: str) -> bool:
    return "\U0001f1e6" <= char <= "\U0001f1ff"


def _splits_cluster(window: str, pos: int) -> bool:
    before, after = window[pos - 1], window[pos]
    if _is_extender(after) or before == "\u200d" or (before == "\r" and after == "\n"):
        return True
    if _is_regional_indicator(before) and _is_regional_indicator(after):
        count, i = 0, pos - 1
        while i >= 0 and _is_regional_indicator(window[i]):
            count, i = count + 1, i - 1
        return count % 2 == 1
    return False


def _hard_cut_at(
    window: str, fences: _Fences, pos: int, next_text: int, next_solid: int, limit: int
) -> _Cut | None:
    """A cut at `pos`; `next_text` / `next_solid` are the first non-blank / non-whitespace
    positions at or after `pos` (len(window) when there is none)."""
    at_line_start = window[pos - 1] == "\n"  # the head ends with a whole line
    if not at_line_start and fences.in_fence_line(pos - 1):
        return None
    opener, opener_end = fences.state(pos - 1)
    if opener is not None:
        if pos <= opener_end + 1 or not _rest_ok(window, next_solid):
            return None
    elif not at_line_start and not _rest_ok(window, next_text):
        return None
    cut = _Cut(pos, pos, opener)
    return cut if _fits(cut, opener_end, limit) else None


def _hard_cut(window: str, fences: _Fences, limit: int) -> _Cut | None:
    found: _Cut | None = None
    next_text = next_solid = len(window)
    for pos in range(len(window) - 1, 0, -1):
        char = window[pos]
        if char not in " \t":
            next_text = pos
            if char not in _WHITESPACE:
                next_solid = pos
        if pos > limit or (next_text == len(window) and window[pos - 1] != "\n"):
            continue  # too long, or the rest's first line might start with a fence
        if found is not None and pos < found.head_end - _SOFT_BACKOFF:
            break
        cut = _hard_cut_at(window, fences, pos, next_text, next_solid, limit)
        if cut is None:
            continue
        if not _splits_cluster(window, pos):
            return cut
        if found is None:
            found = cut
    return found


def _last_resort(text: str, limit: int) -> _Cut:
    """A cut for degenerate windows: an over-long fence line, backtick or whitespace run."""
    for end in (limit, limit - 1 - limit // 4):  # the second one always leaves room to close
        opener = open_fence(text[:end])
        if end + _close_cost(opener, limit) <= limit:
            break
    return _Cut(end, end, opener)


def _apply(text: str, cut: _Cut, limit: int) -> tuple[str, str]:
    head = text[: cut.head_end]
    rest = text[cut.rest_start :]
    if cut.opener is None:
        return head, rest
    reopen = _reopen_line(cut.opener, limit)
    return f"{head}\n{_closing_fence(reopen)}", f"{reopen}\n{rest}"


def split_once(text: str, limit: int = DISCORD_LIMIT) -> tuple[str, str] | None:
    """Cut the first message off `text`. Return None when `text` fits in one message (len <= limit).

    Otherwise return (head, rest): head has at most `limit` characters and is never empty; rest is
    the remaining text (possibly empty), starting with a re-opened code fence (same fence and
    language tag) when the cut fell inside a code block. The head depends only on
    `text[:limit + 1]`. Raises ValueError when `limit < MIN_LIMIT`.
    """
    _check_limit(limit)
    if len(text) <= limit:
        return None
    window = text[: limit + 1]
    fences = _Fences(window)
    cut = _boundary_cut(window, fences, limit) or _hard_cut(window, fences, limit)
    if cut is None:
        cut = _last_resort(text, limit)
    return _apply(text, cut, limit)


def split_message(text: str, limit: int = DISCORD_LIMIT) -> list[str]:
    """All pieces of `text`, by applying `split_once` repeatedly; [] for the empty text.

    A text that fits is returned as the only piece, unchanged. An empty rest after the last cut
    adds no piece. Raises ValueError when `limit < MIN_LIMIT`.
    """
    _check_limit(limit)
    pieces: list[str] = []
    while text:
        cut = split_once(text, limit)
        if cut is None:
            pieces.append(text)
            break
        head, text = cut
        pieces.append(head)
    return pieces
