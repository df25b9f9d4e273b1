"""The scheduler and the rate limit, on their own."""

from __future__ import annotations

import asyncio

import pytest

from bot.conversation.fairness import QueueFull, RateLimited, Scheduler, ShuttingDown, UserRateLimit


async def test_waiters_hear_their_place_and_move_up() -> None:
    scheduler = Scheduler(parallel=1, queue_size=5)
    places: dict[str, list[int]] = {"b": [], "c": []}
    release = asyncio.Event()
    order: list[str] = []

    async def ask(name: str, channel: int) -> None:
        callback = places[name].append if name in places else None
        async with scheduler.turn(channel, callback):
            order.append(name)
            if name == "a":
                await release.wait()

    first = asyncio.create_task(ask("a", 1))
    await asyncio.sleep(0)
    others = [asyncio.create_task(ask("b", 2)), asyncio.create_task(ask("c", 3))]
    await asyncio.sleep(0.01)
    assert scheduler.active == 1
    assert scheduler.waiting == 2
    release.set()
    await asyncio.gather(first, *others)
    assert order == ["a", "b", "c"]
    assert places == {"b": [1], "c": [2, 1]}
    assert scheduler.waiting == scheduler.active == 0


async def test_a_full_line_is_refused_and_a_closed_scheduler_takes_nothing() -> None:
    scheduler = Scheduler(parallel=1, queue_size=1)
    hold = asyncio.Event()

    async def busy(channel: int) -> None:
        async with scheduler.turn(channel):
            await hold.wait()

    tasks = [asyncio.create_task(busy(1)), asyncio.create_task(busy(2))]
    await asyncio.sleep(0.01)
    with pytest.raises(QueueFull):
        scheduler.admit(3)
    hold.set()
    await asyncio.gather(*tasks)
    scheduler.closed = True
    with pytest.raises(ShuttingDown):
        scheduler.admit(4)


async def test_a_queue_of_zero_means_no_waiting_not_refusing_everything() -> None:
    scheduler = Scheduler(parallel=1, queue_size=0)
    first = scheduler.admit(1)  # a free slot: no need to wait, so it is let in
    hold = asyncio.Event()

    async def busy() -> None:
        async with scheduler.turn(1, ticket=first):
            await hold.wait()

    task = asyncio.create_task(busy())
    await asyncio.sleep(0.01)
    with pytest.raises(QueueFull):
        scheduler.admit(2)  # would wait for the only slot
    with pytest.raises(QueueFull):
        scheduler.admit(1)  # would wait behind its channel
    hold.set()
    await task
    scheduler.release(scheduler.admit(2))  # free again


async def test_admission_counts_those_admitted_but_not_yet_generating() -> None:
    scheduler = Scheduler(parallel=1, queue_size=1)
    a = scheduler.admit(1)  # will take the slot
    b = scheduler.admit(2)  # will wait: the one place in line
    with pytest.raises(QueueFull):
        scheduler.admit(3)
    scheduler.release(a)
    scheduler.release(b)


def test_rate_limit_is_a_sliding_minute() -> None:
    now = [0.0]
    limit = UserRateLimit(2, clock=lambda: now[0])
    limit.hit(1)
    now[0] = 30.0
    limit.hit(1)
    with pytest.raises(RateLimited) as refused:
        limit.hit(1)
    assert refused.value.retry_after == pytest.approx(30.0)
    limit.hit(2)  # others are not affected
    now[0] = 60.5
    limit.hit(1)  # the first request left the window


async def test_tickets_keep_arrival_order_even_when_the_later_request_gets_there_first() -> None:
    scheduler = Scheduler(parallel=4, queue_size=10)
    order: list[str] = []
    first = scheduler.reserve(1)
    second = scheduler.reserve(1)

    async def run(name: str, ticket: object, delay: float) -> None:
        await asyncio.sleep(delay)  # e.g. the first one is still acknowledging its interaction
        async with scheduler.turn(1, ticket=ticket):  # type: ignore[arg-type]
            order.append(name)

    await asyncio.gather(run("first", first, 0.05), run("second", second, 0.0))
    assert order == ["first", "second"]


async def test_a_ticket_given_back_lets_the_next_one_go() -> None:
    scheduler = Scheduler(parallel=1, queue_size=10)
    abandoned = scheduler.reserve(7)
    kept = scheduler.reserve(7)
    scheduler.release(abandoned)
    scheduler.release(abandoned)  # idempotent
    async with asyncio.timeout(1), scheduler.turn(7, ticket=kept):
        pass
    async with asyncio.timeout(1), scheduler.turn(7):  # the line is empty again
        pass
