"""Chunking: a document cut on its structure first (Markdown headings, paragraphs, code blocks,
CSV rows), then by size. Each chunk keeps where it came from: page, line range, heading path."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

CHARS_PER_TOKEN = 4
"""The bot's tokenizer-free estimate (bot/conversation/context.py counts the same way)."""

HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
FENCE = re.compile(r"^\s*(```|~~~)")


def estimate_tokens(text: str) -> int:
    return (len(text) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN


@dataclass(frozen=True, slots=True)
class Page:
    """Text of one page (PDF) or of a whole file (page None)."""

    text: str
    number: int | None = None


@dataclass(frozen=True, slots=True)
class Chunk:
    text: str
    """What is embedded and shown to the model (with the heading path in front)."""
    page: int | None
    line_start: int
    line_end: int
    heading: str | None

    @property
    def tokens(self) -> int:
        return estimate_tokens(self.text)


@dataclass(frozen=True, slots=True)
class _Block:
    """A unit that is never split unless it alone is too big: a paragraph, a code block, a
    CSV row, a heading line."""

    lines: tuple[str, ...]
    start: int  # 1-based line number of its first line
    heading: str | None
    is_heading: bool = False

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def chunk_pages(
    pages: Sequence[Page], *, kind: str, max_tokens: int, overlap_tokens: int
) -> list[Chunk]:
    """Chunks of a document's pages (a chunk never spans two pages, so its page is exact)."""
    chunks: list[Chunk] = []
    for page in pages:
        if kind == "csv":
            blocks = list(_csv_blocks(page.text))
        else:
            blocks = list(_blocks(page.text, markdown=kind in ("markdown", "text", "pdf")))
        chunks.extend(_pack(blocks, page.number, max_tokens, overlap_tokens, csv=kind == "csv"))
    return chunks


def _blocks(text: str, *, markdown: bool) -> Iterator[_Block]:
    """Paragraphs (blank-line separated) and fenced code blocks, with the heading path."""
    path: list[tuple[int, str]] = []  # (level, title) of the headings above
    current: list[str] = []
    start = 1
    in_fence = False

    def heading() -> str | None:
        return " › ".join(title for _, title in path) or None

    for number, line in enumerate(text.splitlines(), start=1):
        if in_fence:
            current.append(line)
            if FENCE.match(line):
                in_fence = False
                yield _Block(tuple(current), start, heading())
                current = []
            continue
        if FENCE.match(line):
            if current:
                yield _Block(tuple(current), start, heading())
            current, start, in_fence = [line], number, True
            continue
        match = HEADING.match(line) if markdown else None
        if match:
            if current:
                yield _Block(tuple(current), start, heading())
                current = []
            level = len(match.group(1))
            while path and path[-1][0] >= level:
                path.pop()
            path.append((level, match.group(2).strip()))
            yield _Block((line,), number, heading(), is_heading=True)
            continue
        if not line.strip():
            if current:
                yield _Block(tuple(current), start, heading())
                current = []
            continue
        if not current:
            start = number
        current.append(line)
    if current:
        yield _Block(tuple(current), start, heading())


def _csv_blocks(text: str) -> Iterator[_Block]:
    """One block a row; the header row is repeated at the top of every chunk by `_pack`."""
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            yield _Block((line,), number, None)


def _pack(
    blocks: list[_Block], page: int | None, max_tokens: int, overlap_tokens: int, *, csv: bool
) -> Iterator[Chunk]:
    """Whole blocks into chunks of at most `max_tokens`; a new heading starts a new chunk; the
    last blocks of a chunk (up to `overlap_tokens`) begin the next one too."""
    header = blocks[0] if csv and blocks else None
    body = blocks[1:] if header is not None else blocks
    pieces: list[_Block] = []
    for block in body:
        pieces.extend(_split(block, max_tokens))
    group: list[_Block] = []
    size = 0

    def emit(group: list[_Block]) -> Chunk:
        text = "\n\n".join(b.text for b in group) if not csv else "\n".join(b.text for b in group)
        heading = group[-1].heading
        if header is not None:
            text = header.text + "\n" + text
        elif heading and (not group[0].is_heading or " › " in heading):
            text = f"[{heading}]\n{text}"
        return Chunk(
            text=text,
            page=page,
            line_start=group[0].start,
            line_end=group[-1].start + len(group[-1].lines) - 1,
            heading=heading,
        )

    budget = max_tokens - (estimate_tokens(header.text) if header is not None else 0)
    for block in pieces:
        cost = estimate_tokens(block.text) + 1
        new_section = block.is_heading and group and not all(b.is_heading for b in group)
        if group and (size + cost > budget or new_section):
            if not all(b.is_heading for b in group):
                yield emit(group)
            kept: list[_Block] = []
            if not new_section and overlap_tokens > 0:
                room = overlap_tokens
                for previous in reversed(group):
                    room -= estimate_tokens(previous.text) + 1
                    if room < 0:
                        break
                    kept.insert(0, previous)
            group = kept
            size = sum(estimate_tokens(b.text) + 1 for b in group)
        group.append(block)
        size += cost
    if group and not all(b.is_heading for b in group):
        yield emit(group)


def _split(block: _Block, max_tokens: int) -> Iterator[_Block]:
    """A block too big for one chunk, cut by lines, then a long line by characters."""
    if estimate_tokens(block.text) <= max_tokens:
        yield block
        return
    limit = max_tokens * CHARS_PER_TOKEN
    lines: list[str] = []
    start = block.start
    size = 0
    for offset, line in enumerate(block.lines):
        while len(line) > limit:
            if lines:
                yield _Block(tuple(lines), start, block.heading)
                lines, size = [], 0
            yield _Block((line[:limit],), block.start + offset, block.heading)
            line = line[limit:]
        if lines and size + len(line) + 1 > limit:
            yield _Block(tuple(lines), start, block.heading)
            lines, size = [], 0
        if not lines:
            start = block.start + offset
        lines.append(line)
        size += len(line) + 1
    if lines:
        yield _Block(tuple(lines), start, block.heading)
