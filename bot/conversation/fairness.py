"""Sharing one Ollama among many people: a per-user rate limit, one generation at a time per
channel in arrival order, at most `parallel` generations at once, and a bounded waiting line
whose members can be told their place."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from bot.errors import BotError

PositionCallback = Callable[[int], None]
"""Told the caller's place in line (1 = next) whenever it changes while waiting."""


class RateLimited(BotError):
    def __init__(self, retry_after: float) -> None:
        self.retry_after = retry_after
        super().__init__(
            f"You're sending requests quickly. Try again in {max(1, round(retry_after))} s."
        )


class QueueFull(BotError):
    user_message = "Too many requests are waiting for the model right now. Try again in a minute."


class ShuttingDown(BotError):
    user_message = "The bot is restarting. Try again in a minute."


class UserRateLimit:
    """At most `per_minute` requests per user in any 60 seconds (a sliding window)."""

    WINDOW = 60.0

    def __init__(self, per_minute: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._limit = per_minute
        self._clock = clock
        self._hits: dict[int, deque[float]] = {}

    def hit(self, user_id: int) -> None:
        """Count a request, or raise RateLimited (not counted) when the user is over the limit."""
        if self._limit <= 0:
            return
        now = self._clock()
        hits = self._hits.setdefault(user_id, deque())
        while hits and hits[0] <= now - self.WINDOW:
            hits.popleft()
        if len(hits) >= self._limit:
            raise RateLimited(hits[0] + self.WINDOW - now)
        hits.append(now)
        if len(self._hits) > 10_000:  # bounded: forget users whose window has passed
            for user, old in list(self._hits.items()):
                if not old or old[-1] <= now - self.WINDOW:
                    del self._hits[user]


@dataclass(slots=True)
class _Waiter:
    on_position: PositionCallback | None
    position: int = 0


@dataclass(eq=False, slots=True)
class Ticket:
    """A place in a channel's line, taken the moment a request arrives (before any await), so
    that a channel's requests are answered in the order Discord delivered them."""

    channel_id: int
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    done: bool = False
    active: bool = False
    holds_slot: bool = False  # a generation slot is this request's right now
    fallback: bool = False
    """Answered by a fallback model because the line was long: it waits for a slot of the
    fallbacks' own (Ollama runs another model's requests beside the busy one's)."""


class Scheduler:
    """Admission and ordering of generations.

    `turn(channel_id)` waits until it is this request's turn: first for its channel (one
    generation per channel, in the order the tickets were taken), then for one of the `parallel`
    slots. At most `queue_size` requests wait in all; one more is refused at once with
    QueueFull. Admission (`admit`) decides that when the request arrives, before anything is
    downloaded or shown: a request that would not have to wait is always let in, so a
    `queue_size` of 0 means "no waiting", not "refuse everything"."""

    def __init__(self, *, parallel: int, queue_size: int) -> None:
        self._parallel = parallel
        self._slots = asyncio.Semaphore(parallel)
        self._fallback_slots = asyncio.Semaphore(parallel)
        self._queue_size = queue_size
        self._channels: dict[int, deque[Ticket]] = {}
        self._waiting: dict[int, _Waiter] = {}  # in arrival order
        self._ids = itertools.count()
        self.active = 0
        self.closed = False

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @property
    def idle(self) -> bool:
        """A slot is free and no one waits: a low-priority task may run without delaying
        anyone."""
        return not self.closed and self.active < self._parallel and not self._waiting

    @property
    def parallel(self) -> int:
        return self._parallel

    def _slots_of(self, ticket: Ticket) -> asyncio.Semaphore:
        return self._fallback_slots if ticket.fallback else self._slots

    def admit(self, channel_id: int, ticket: Ticket | None = None) -> Ticket:
        """`reserve` (or take the place `ticket` reserved already), unless the request would
        have to wait while the line is full (QueueFull) or the bot is stopping (ShuttingDown).
        Never waits. On a refusal, a given `ticket` is still the caller's to release."""
        if self.closed:
            raise ShuttingDown()
        pending = [
            t for line in self._channels.values() for t in line if not t.active and t is not ticket
        ]
        ready = sum(1 for t in pending if t.ready.is_set())
        free = self._parallel - self.active
        queued = len(pending) - min(ready, free)
        behind = not ticket.ready.is_set() if ticket else bool(self._channels.get(channel_id))
        if (behind or ready >= free) and queued >= self._queue_size:
            raise QueueFull()
        return ticket if ticket is not None else self.reserve(channel_id)

    def reserve(self, channel_id: int) -> Ticket:
        """Take the next place in the channel's line. Never waits. Every ticket must end in
        `turn` or `release`."""
        line = self._channels.setdefault(channel_id, deque())
        ticket = Ticket(channel_id)
        if not line:
            ticket.ready.set()
        line.append(ticket)
        return ticket

    def release(self, ticket: Ticket) -> None:
        """Give the place up (idempotent); the next ticket in the channel's line may go."""
        if ticket.done:
            return
        ticket.done = True
        line = self._channels.get(ticket.channel_id)
        if not line:
            return
        was_first = line[0] is ticket
        with contextlib.suppress(ValueError):
            line.remove(ticket)
        if not line:
            del self._channels[ticket.channel_id]
        elif was_first:
            line[0].ready.set()

    @contextlib.asynccontextmanager
    async def turn(
        self,
        channel_id: int,
        on_position: PositionCallback | None = None,
        ticket: Ticket | None = None,
    ) -> AsyncIterator[None]:
        if ticket is None:
            ticket = self.reserve(channel_id)
        try:
            if self.closed:
                raise ShuttingDown()
            number = next(self._ids)
            self._waiting[number] = _Waiter(on_position)
            slots = self._slots_of(ticket)
            try:
                if not ticket.ready.is_set() or slots.locked() or len(self._waiting) > 1:
                    self._tell_positions()  # only those who really wait are told their place
                await ticket.ready.wait()
                await slots.acquire()
                ticket.holds_slot = True
                del self._waiting[number]
                self._tell_positions()
                self.active += 1
                ticket.active = True
                yield
            finally:
                if self._waiting.pop(number, None) is not None:
                    self._tell_positions()
                if ticket.holds_slot:
                    ticket.holds_slot = False
                    self.active -= 1
                    slots.release()
        finally:
            self.release(ticket)

    @contextlib.asynccontextmanager
    async def aside(self, ticket: Ticket) -> AsyncIterator[None]:
        """Inside `turn(..., ticket)`: give the generation slot back while doing work that
        generates nothing (re-creating a persona's model), keeping the channel's place; then
        wait for a slot again like any other request."""
        if not ticket.holds_slot:
            yield
            return
        slots = self._slots_of(ticket)
        ticket.holds_slot = False
        self.active -= 1
        slots.release()
        try:
            yield
        finally:
            await slots.acquire()  # cancelled here: the turn has no slot to give back
            ticket.holds_slot = True
            self.active += 1

    def _tell_positions(self) -> None:
        for place, waiter in enumerate(self._waiting.values(), start=1):
            if waiter.position != place:
                waiter.position = place
                if waiter.on_position is not None:
                    waiter.on_position(place)
