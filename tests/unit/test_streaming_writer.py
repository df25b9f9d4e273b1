"""StreamingReply's writer: what it draws while it waits out an edit's spacing."""

from __future__ import annotations

import asyncio
from typing import Any

from bot.ui.progress import PacedEdits
from bot.ui.streaming import EditBudget, EditPacer, StreamingReply


class Recorder:
    """A ReplyTarget that keeps what was drawn (messages are their index)."""

    def __init__(self) -> None:
        self.shown: list[str] = []
        self.edits: list[tuple[int, str]] = []
        self.changed = asyncio.Event()

    async def send(self, index: int, content: str, view: Any) -> int:
        self.shown.append(content)
        self.changed.set()
        return index

    async def edit(self, handle: int, content: str, view: Any) -> int:
        self.shown[handle] = content
        self.edits.append((handle, content))
        self.changed.set()
        return handle

    def bucket(self, index: int) -> str:
        return "channel:1"  # one channel, as Discord counts a reply's messages


async def until(predicate: Any, target: Recorder, limit: float) -> None:
    async with asyncio.timeout(limit):
        while not predicate():
            target.changed.clear()
            await target.changed.wait()


async def test_text_between_edits_waits_for_the_next_edit() -> None:
    target = Recorder()
    reply: StreamingReply[int] = StreamingReply(target, interval=0.3)
    reply.feed("one ")
    await until(lambda: target.shown == ["one "], target, 2)
    for word in ("two ", "three ", "four "):
        reply.feed(word)  # within the spacing: no edit for each
        await asyncio.sleep(0.01)
    await until(lambda: target.shown == ["one two three four "], target, 2)
    assert target.edits == [(0, "one two three four ")]
    await reply.finish("-# done")
    assert target.shown == ["one two three four\n-# done"]


async def test_a_full_message_continues_in_a_new_one_without_waiting_out_the_spacing() -> None:
    target = Recorder()
    reply: StreamingReply[int] = StreamingReply(target, interval=30.0, limit=100)
    reply.feed("start ")
    await until(lambda: len(target.shown) == 1, target, 2)
    reply.feed("more ")  # too soon to show: the writer waits out the spacing
    await asyncio.sleep(0.05)
    reply.feed("word " * 30)  # past 100 characters: the first message is complete for good
    # Far sooner than the 30 s spacing: the cut-off piece gets its last edit, the rest a message.
    await until(lambda: len(target.shown) == 2, target, 5)
    assert target.shown[0].startswith("start more word") and len(target.shown[0]) <= 100
    await reply.finish()
    whole = "start more " + "word " * 30
    assert "".join(target.shown).replace(" ", "") == whole.replace(" ", "")


async def test_a_reply_complete_within_the_gather_is_written_once() -> None:
    target = Recorder()
    reply: StreamingReply[int] = StreamingReply(target, gather=0.2)
    for word in ("Short ", "answer."):
        reply.feed(word)
        await asyncio.sleep(0)  # the writer runs, and holds the first text back
    assert target.shown == []
    await reply.finish("-# done")
    assert target.shown == ["Short answer.\n-# done"]
    assert target.edits == []  # one send, already final


async def test_a_reply_still_streaming_after_the_gather_shows_its_first_text() -> None:
    target = Recorder()
    reply: StreamingReply[int] = StreamingReply(target, interval=30.0, gather=0.05)
    reply.feed("Once ")
    await until(lambda: target.shown == ["Once "], target, 2)  # no more text needed for it
    reply.feed("upon a time.")
    await reply.finish("-# done")
    assert target.shown == ["Once upon a time.\n-# done"]
    assert target.edits == [(0, "Once upon a time.\n-# done")]


def test_the_pacer_gives_each_waiting_writer_a_slot_of_its_own() -> None:
    now = [100.0]
    pacer = EditPacer(per_second=10, clock=lambda: now[0])
    assert [round(pacer.reserve(), 3) for _ in range(3)] == [0.0, 0.1, 0.2]
    pacer.spend()  # a final edit goes at once, but counts: later slots move back
    assert round(pacer.reserve(), 3) == 0.4
    now[0] += 10  # a quiet spell: the next writer goes at once
    assert pacer.reserve() == 0.0


async def test_replies_sharing_a_pacer_stay_under_its_rate() -> None:
    pacer = EditPacer(per_second=20)
    targets = [Recorder() for _ in range(5)]
    # A generous per-message budget, so that only the shared pacer holds the edits back.
    replies = [
        StreamingReply(t, interval=0.0, pacer=pacer, gather=0.0, budget=EditBudget((100, 1.0)))
        for t in targets
    ]
    await asyncio.sleep(0.05)
    for n in range(40):
        for reply in replies:
            reply.feed(f"{n} ")
        await asyncio.sleep(0.01)
    edits = sum(len(t.edits) for t in targets)
    for reply in replies:
        await reply.cancel()
    # The first sends go at once (5); then 20 edits a second in all over about 0.4 s.
    assert all(t.shown for t in targets)
    assert 3 <= edits <= 0.5 * 20 + 1


async def test_a_short_wait_shows_no_waiting_notice() -> None:
    target = Recorder()
    reply: StreamingReply[int] = StreamingReply(target, status_delay=0.3, gather=0.0)
    reply.set_status("number 1 in line")
    await asyncio.sleep(0.1)
    reply.feed("Answer.")  # the wait is over before the notice was due
    await reply.finish()
    assert target.shown == ["Answer."] and target.edits == []


async def test_a_long_wait_shows_the_waiting_notice() -> None:
    target = Recorder()
    reply: StreamingReply[int] = StreamingReply(target, status_delay=0.1, gather=0.0)
    reply.set_status("number 1 in line")
    await until(lambda: target.shown == ["number 1 in line"], target, 2)
    reply.feed("Answer.")
    await reply.finish()
    assert target.shown == ["Answer."]


async def test_a_reply_and_a_progress_message_in_one_bucket_share_its_budget() -> None:
    """Discord counts a channel's (or a token's) writes together: a streaming reply and a
    progress display drawn into the same bucket stay within one budget between them."""
    budget = EditBudget((5, 1.0))
    target = Recorder()
    stamps: list[float] = []
    clock = asyncio.get_running_loop().time

    async def write(text: str) -> None:
        stamps.append(clock())

    progress = PacedEdits(write, interval=0.0, budget=budget, bucket="channel:1")
    reply = StreamingReply(target, interval=0.0, gather=0.0, budget=budget)
    original_send, original_edit = target.send, target.edit

    async def send(index: int, content: str, view: Any) -> int:
        stamps.append(clock())
        return await original_send(index, content, view)

    async def edit(handle: int, content: str, view: Any) -> int:
        stamps.append(clock())
        return await original_edit(handle, content, view)

    target.send, target.edit = send, edit  # type: ignore[method-assign]
    for n in range(60):
        reply.feed(f"{n} ")
        progress.show(f"{n}%")
        await asyncio.sleep(0.02)
    await reply.finish("-# done")
    await progress.finish("100%")
    window = budget.window
    for start in stamps:
        assert sum(1 for t in stamps if start <= t < start + window) <= 5, stamps
    assert len(stamps) >= 6  # both displays were drawn


async def status_changes_soon(*, live: bool) -> bool:
    """Whether a changed status is drawn within 0.5 s (text pace: 0.1 s; a waiting notice
    waits STATUS_INTERVAL, 5 s); the answer then replaces it either way."""
    target = Recorder()
    reply: StreamingReply[int] = StreamingReply(
        target, interval=0.05, budget=EditBudget((5, 0.4)), status_delay=0.0, gather=0.0
    )
    reply.set_status("💭 Thinking… 0 s", live=live)
    await until(lambda: target.shown == ["💭 Thinking… 0 s"], target, 2)
    reply.set_status("💭 Thinking… 1 s", live=live)
    try:
        await until(lambda: target.shown == ["💭 Thinking… 1 s"], target, 0.5)
        changed = True
    except TimeoutError:
        changed = False
    reply.feed("Answer.")
    await reply.finish()
    assert target.shown == ["Answer."]
    return changed


async def test_a_live_status_is_edited_at_the_pace_of_text_a_waiting_notice_is_not() -> None:
    assert await status_changes_soon(live=True)
    assert not await status_changes_soon(live=False)
