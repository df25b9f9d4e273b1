"""The model stream's timeouts (first token, between tokens, in all), kept by one watchdog."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import pytest

from bot.conversation.service import ChatLimits, timed
from bot.errors import GenerationTimeout


def limits(first: float = 5.0, between: float = 5.0, total: float = 50.0) -> ChatLimits:
    return ChatLimits(
        default_model="m",
        context_cap=1000,
        reply_reserve=100,
        first_token_timeout=first,
        between_tokens_timeout=between,
        total_timeout=total,
    )


async def tokens(*delays: float) -> AsyncGenerator[int]:
    """Yields 0, 1, 2, ... each after its delay."""
    for n, delay in enumerate(delays):
        await asyncio.sleep(delay)
        yield n


async def read(stream: AsyncGenerator[int], rules: ChatLimits) -> list[int]:
    return [item async for item in timed(stream, rules)]


async def test_a_stream_within_its_limits_is_passed_through() -> None:
    assert await read(tokens(0.05, 0.05, 0.05), limits(first=0.5, between=0.5)) == [0, 1, 2]


@pytest.mark.parametrize(
    ("delays", "rules", "what"),
    [
        ((0.5,), limits(first=0.1), "waiting for the first token"),
        ((0.0, 0.5), limits(between=0.1), "between tokens"),
        ((0.0,) + (0.06,) * 10, limits(between=0.1, total=0.3), "in all"),
    ],
)
async def test_each_limit_ends_the_stream_with_its_reason(
    delays: tuple[float, ...], rules: ChatLimits, what: str
) -> None:
    with pytest.raises(GenerationTimeout, match=what):
        await read(tokens(*delays), rules)
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0  # the watchdog's cancel was taken back


async def slow_to_stop() -> AsyncGenerator[int]:
    """A stream that shrugs off the first cancellation (finishing something first), as a
    cancelled read might; the second one ends it."""
    try:
        await asyncio.sleep(10)
    except asyncio.CancelledError:
        await asyncio.sleep(10)
    yield 0


async def test_a_cancellation_beside_a_limit_running_out_is_not_swallowed() -> None:
    reader = asyncio.create_task(read(slow_to_stop(), limits(first=0.2)))
    await asyncio.sleep(0.05)
    reader.cancel()  # the Stop button, while the stream is still finishing something
    with pytest.raises(asyncio.CancelledError):  # not GenerationTimeout: the Stop wins
        await reader
