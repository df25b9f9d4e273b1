"""StreamingReply: draws a growing reply into Discord messages at a steady cadence.

The model's stream is read by the caller, who hands each piece to `feed()` (which never waits).
A writer task beside it turns the text into messages: the first text goes out at once (after a
short gather, FIRST_TEXT_GATHER), later edits of one message are at least `interval` seconds
apart, the final edit goes out as soon as the reply is complete, and text past Discord's 2,000
characters continues in new messages.

Discord allows about five edits of one message in five seconds. Edits while streaming are spaced
so that they use at most four of those five, which keeps one free for the final edit: it never
has to wait, and never draws a 429."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from bot.conversation.splitter import DISCORD_LIMIT, split_message, split_once

log = logging.getLogger(__name__)

STATUS_INTERVAL = 5.0
"""Seconds between updates of a waiting notice ("number 3 in line"): news, not a stream."""

FIRST_TEXT_GATHER = 0.02
"""Seconds the first text waits for more before it is shown. A reply that is complete by then
(a short answer from a fast model) is sent once, final, instead of as a first text and an edit
right after it: half the requests, and the promise of first text within 50 ms still holds."""

STATUS_DELAY = 1.0
"""Seconds a reply waits before it shows a waiting notice: a wait shorter than that is not
worth a message that is replaced at once (Discord shows "thinking…" meanwhile)."""

DISCORD_EDIT_BUDGET = (5, 5.0)
"""Edits of one message that Discord accepts per window of seconds."""
BUDGET_MARGIN = 0.05
"""Seconds added to the budget window, for clocks that disagree by a little."""

H = TypeVar("H")
T = TypeVar("T")


class EditPacer:
    """Edits of all replies together, kept under a rate (Discord limits each bot to about 50
    requests a second in all). Streaming edits wait for a free slot; first sends and final
    edits never wait, but they count, so the streaming edits after them slow down. Many
    conversations streaming at once thus each get steady updates instead of bursts."""

    def __init__(self, per_second: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = 1.0 / per_second
        self._clock = clock
        self._next = 0.0  # when the next streaming edit may go

    def reserve(self) -> float:
        """Take the next free slot for a streaming edit; seconds until it comes (0: now).
        Each waiting writer holds a slot of its own, so a freed slot wakes one writer, not all
        of them (with 200 replies streaming, waking every writer 25 times a second to find the
        slot taken cost a fifth of the bot's CPU)."""
        now = self._clock()
        slot = max(self._next, now)
        self._next = slot + self._interval
        return slot - now

    def spend(self) -> None:
        """Count a write that did not wait for a slot (a first send, a final edit)."""
        self._next = max(self._next, self._clock()) + self._interval


class EditBudget:
    """Discord's rate limit per bucket, kept by the bot before Discord has to: the writes made
    lately in each bucket (a channel's messages; an interaction token's webhook messages), in a
    sliding window. One instance is shared by everything the bot draws (streaming replies and
    progress messages alike), so two displays in one bucket share its budget."""

    def __init__(
        self,
        budget: tuple[int, float] = DISCORD_EDIT_BUDGET,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        count, window = budget
        self.count = count
        self.window = window + BUDGET_MARGIN
        self._clock = clock
        self._writes: dict[str, deque[float]] = {}

    def writes(self, bucket: str) -> deque[float]:
        """The writes of `bucket` within the window, oldest first."""
        now = self._clock()
        writes = self._writes.get(bucket)
        if writes is None:
            if len(self._writes) >= 4096:  # forget the buckets that went quiet
                self._writes = {
                    k: w for k, w in self._writes.items() if w and w[-1] > now - self.window
                }
            writes = self._writes[bucket] = deque()
        while writes and writes[0] <= now - self.window:
            writes.popleft()
        return writes

    def wait(self, bucket: str, *, last: bool, spacing: float) -> float:
        """Seconds before the next write to `bucket`: a display's last write needs only a free
        slot; others keep `spacing` after the bucket's latest write (which leaves a slot free
        for last writes when `spacing` spreads count - 1 writes over the window)."""
        writes = self.writes(bucket)
        now = self._clock()
        if last:
            return 0.0 if len(writes) < self.count else writes[0] + self.window - now
        return max(writes[-1] + spacing - now, 0.0) if writes else 0.0

    def record(self, bucket: str) -> None:
        self.writes(bucket).append(self._clock())


class ReplyTarget(Protocol[H]):
    """Where a reply is drawn: `send` makes the n-th message, `edit` changes one. `view` is the
    message's controls (buttons), or None for none."""

    async def send(self, index: int, content: str, view: Any) -> H: ...

    async def edit(self, handle: H, content: str, view: Any) -> H: ...

    def bucket(self, index: int) -> str:
        """The Discord rate-limit bucket that writing the `index`-th message draws from."""
        ...


@dataclass(slots=True)
class _Drawn(Generic[T]):
    handle: T
    content: str
    view: Any


class StreamingReply(Generic[T]):
    """One reply being drawn. Use `feed()` while streaming, then `finish()` or `fail()`."""

    def __init__(
        self,
        target: ReplyTarget[T],
        *,
        interval: float = 1.0,
        limit: int = DISCORD_LIMIT,
        clock: Callable[[], float] = time.monotonic,
        prefix: str = "",
        budget: EditBudget | None = None,
        stop_view: Any = None,
        pacer: EditPacer | None = None,
        gather: float = FIRST_TEXT_GATHER,
        status_delay: float = STATUS_DELAY,
        max_messages: int = 0,
        on_full: Callable[[], None] | None = None,
        on_broken: Callable[[BaseException], None] | None = None,
    ) -> None:
        self._target = target
        self._pacer = pacer
        self._budget = budget if budget is not None else EditBudget(clock=clock)
        # Streaming edits use at most count - 1 slots of a window: one is kept for the final edit.
        self._spacing = max(interval, self._budget.window / max(self._budget.count - 1, 1))
        self._limit = limit
        self._clock = clock
        self._frozen: list[str] = []  # pieces cut off the text; they never change again
        self._tail = prefix  # the text after the frozen pieces
        self._fed = False  # nothing is shown until the model's first text arrives
        self._gather = gather
        self._status_from = clock() + status_delay  # no waiting notice before then
        self._first_at = 0.0  # when the first text arrived
        self._status: str | None = None  # shown until then, e.g. the place in line
        self._live = False  # the status changes like text (thinking), not like news
        self._final: list[str] | None = None  # the pieces to show once finished
        self._drawn: list[_Drawn[T]] = []
        self._stop_view = stop_view  # on the first message while streaming
        self._final_view: Any = None  # on the last message once finished
        self._wake = asyncio.Event()
        self._idle = False  # the writer waits for news (everything shown is up to date)
        self._slot = False  # a pacer slot is held for the next write
        self._max_messages = max_messages  # 0: no limit
        self._on_full = on_full
        self._on_broken = on_broken
        self.full = False  # the reply filled `max_messages`; later text is dropped
        self.broken: BaseException | None = None  # why Discord would not show the reply
        self._writer = asyncio.create_task(self._write(), name="streaming-reply-writer")
        self.edits = 0

    @property
    def messages(self) -> list[T]:
        return [drawn.handle for drawn in self._drawn]

    def feed(self, text: str) -> None:
        """Add text to the reply. Never waits: the writer catches up on its own schedule."""
        if self._final is not None or self.full or not text:
            return
        self._tail += text
        if not self._fed:
            self._fed = True
            self._first_at = self._clock()
        froze = False
        while (cut := split_once(self._tail, self._limit)) is not None:
            if self._max_messages and len(self._frozen) + 1 >= self._max_messages:
                # The last message allowed: it ends here, and the rest is not shown.
                self._tail = cut[0]
                self.full = True
                if self._on_full is not None:
                    self._on_full()
                break
            head, self._tail = cut
            self._frozen.append(head)
            froze = True
        # A writer waiting out an edit's spacing could not show this text any sooner: waking
        # it for every token cost more than reading the token (bench/README.md). A piece cut
        # off for good may be drawn at once, and an idle writer has news.
        if froze or self._idle:
            self._wake.set()

    async def finish(
        self, footer: str | None = None, *, empty: str = "*(no reply)*", view: Any = None
    ) -> list[T]:
        """Show the full final text (with `footer` on its own last line) and `view` under the
        last message, and wait until shown. Once the reply is final, it stays as it is."""
        self.finish_soon(footer, empty=empty, view=view)
        await self._writer
        return self.messages

    def finish_soon(
        self, footer: str | None = None, *, empty: str = "*(no reply)*", view: Any = None
    ) -> None:
        """`finish` without waiting until shown."""
        if self._final is not None:
            return
        self._final_view = view
        if not self._fed:
            self.feed(empty)
        pieces = self._pieces_so_far() or [empty]
        if footer:
            self._close_with(pieces, "\n", footer)
        self._settle(pieces)

    async def fail(self, message: str, *, view: Any = None) -> list[T]:
        """Show the text so far, then the error, and wait until shown (unless the reply is
        final already)."""
        if self._final is not None:
            await self._writer
            return self.messages
        self._final_view = view
        note = f"⚠️ {message}"
        pieces = self._pieces_so_far() or [self._tail]
        self._close_with(pieces, "\n\n" if pieces[-1].strip() else "", note)
        self._settle(pieces)
        await self._writer
        return self.messages

    def _close_with(self, pieces: list[str], separator: str, note: str) -> None:
        """End `pieces` with `note`: under the last piece when it fits; in messages of its own
        otherwise, unless the reply may fill no more messages: then the last piece is cut
        short (with an ellipsis) to make room."""
        last = pieces[-1].rstrip() if separator else pieces[-1]
        joined = f"{last}{separator}{note}"
        if len(joined) <= self._limit:
            pieces[-1] = joined
        elif self._max_messages and len(pieces) >= self._max_messages:
            room = max(0, self._limit - len(separator) - len(note) - 1)
            pieces[-1] = f"{last[:room].rstrip()}…{separator}{note}"[: self._limit]
        else:
            pieces.extend(split_message(note, self._limit))

    async def cancel(self) -> None:
        self._writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._writer

    def _settle(self, pieces: list[str]) -> None:
        """Make `pieces` the final text; the writer shows it as soon as it may."""
        self._final = pieces
        self._wake.set()

    def _pieces_so_far(self) -> list[str]:
        """The reply as messages: frozen pieces and the tail, leaving out blank ones (which
        Discord refuses, and which only a model emitting pages of whitespace produces)."""
        pieces = [piece for piece in self._frozen if piece.strip()]
        if self._tail.strip():
            pieces.append(self._tail)
        return pieces

    def set_status(self, status: str | None, *, live: bool = False) -> None:
        """Show `status` (after the prefix) until the first text arrives. Never waits. A
        `live` status (the model thinking) is edited at the pace of text; another (the place
        in line) at most every STATUS_INTERVAL seconds."""
        if self._fed or self._final is not None:
            return
        self._status = status
        self._live = live
        self._wake.set()

    def _wanted(self) -> list[str]:
        if self._final is not None:
            return self._final
        if self._fed:
            return self._pieces_so_far()
        return [self._tail + self._status] if self._status else []

    async def _write(self) -> None:
        try:
            await self._write_until_final()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # Discord refused a send or an edit (missing permissions, an archived thread, the
            # question or the reply deleted): nothing more of this reply can be shown.
            self.broken = exc
            if self._on_broken is not None:
                self._on_broken(exc)

    async def _write_until_final(self) -> None:
        while True:
            final = self._final is not None
            delay = await self._draw_next(self._wanted(), final)
            if delay == 0:
                continue
            if delay is None:
                if final:
                    return
                self._idle = True
                await self._wake.wait()
                self._idle = False
                self._wake.clear()
            elif final:
                await asyncio.sleep(delay)  # only when Discord's budget is spent
            else:
                # Too early to edit again: wait, but wake at once if the reply is finished.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._wake.wait()
                if self._final is None:
                    self._wake.clear()

    async def _draw_next(self, wanted: list[str], final: bool) -> float | None:
        """Make one change towards `wanted`. Returns 0 after a change, seconds to wait before the
        next allowed change, or None when everything shown is up to date."""
        for index, content in enumerate(wanted):
            view = self._view_for(index, len(wanted), final)
            if index == len(self._drawn):
                if index == 0 and not final:
                    # The reply may be complete by then (one write, not two), or its text may
                    # have come (no waiting notice that is replaced at once).
                    since = self._first_at + self._gather if self._fed else self._status_from
                    wait = since - self._clock()
                    if wait > 0:
                        return wait
                self._spend()
                bucket = self._target.bucket(index)
                handle = await self._target.send(index, content, view)
                self._budget.record(bucket)
                self._drawn.append(_Drawn(handle, content, view))
                return 0
            drawn = self._drawn[index]
            if drawn.content == content and drawn.view is view:
                continue
            # A message's last edit: the reply is complete, or this piece was cut off for good.
            last_edit = final or index < len(self._frozen)
            bucket = self._target.bucket(index)
            wait = self._wait_before_edit(bucket, last_edit)
            if wait > 0:
                return wait
            self._spend()
            drawn.handle = await self._target.edit(drawn.handle, content, view)
            drawn.content = content
            drawn.view = view
            self._budget.record(bucket)
            self.edits += 1
            return 0
        return None

    def _view_for(self, index: int, count: int, final: bool) -> Any:
        if final:
            return self._final_view if index == count - 1 else None
        return self._stop_view if index == 0 else None

    def _wait_before_edit(self, bucket: str, last_edit: bool) -> float:
        if last_edit:
            return self._budget.wait(bucket, last=True, spacing=self._spacing)
        live = self._fed or self._live  # text, or a live status such as "thinking… 12 s"
        spacing = self._spacing if live else max(self._spacing, STATUS_INTERVAL)
        own = self._budget.wait(bucket, last=False, spacing=spacing)
        if own > 0 or self._pacer is None or self._slot:
            return own
        self._slot = True
        return self._pacer.reserve()

    def _spend(self) -> None:
        if self._slot:
            self._slot = False  # counted when it was reserved
        elif self._pacer is not None:
            self._pacer.spend()
