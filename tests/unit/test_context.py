"""The context window: newest turns that fit, usable turns only."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.conversation import context
from bot.storage.history import StoredTurn


def turn(
    id: int,
    role: str,
    content: str,
    status: str = "complete",
    reply_to: int | None = None,
    completion_tokens: int | None = None,
) -> StoredTurn:
    return StoredTurn(
        id=id,
        channel_id=1,
        role=role,
        author_id=1,
        author_name="x",
        content=content,
        model="m",
        status=status,
        error=None,
        reply_to_id=reply_to,
        prompt_tokens=None,
        completion_tokens=completion_tokens,
        total_duration_ns=None,
        eval_duration_ns=None,
        created_at=datetime.now(UTC),
    )


def test_budget_caps_the_window_and_keeps_a_quarter_at_most_for_the_reply() -> None:
    assert context.budget(131072, cap=8192, reply_reserve=1024) == context.Budget(8192, 1024)
    assert context.budget(2048, cap=8192, reply_reserve=1024) == context.Budget(2048, 512)
    assert context.budget(None, cap=8192, reply_reserve=1024).window == context.FALLBACK_CONTEXT


def test_window_keeps_the_newest_turns_that_fit() -> None:
    turns = [turn(i, "user" if i % 2 else "assistant", "x" * 40) for i in range(1, 11)]
    per_turn = context.turn_tokens(turns[0])
    chosen = context.window(turns, per_turn * 3)
    assert [t.id for t in chosen] == [9, 10]  # 8 would be first but an assistant turn never leads


def test_failed_replies_and_their_questions_are_left_out() -> None:
    turns = [
        turn(1, "user", "q1"),
        turn(2, "assistant", "a1", reply_to=1),
        turn(3, "user", "q2"),
        turn(4, "assistant", "", status="failed", reply_to=3),
        turn(5, "user", "q3"),
        turn(6, "assistant", "partial", status="stopped", reply_to=5),
        turn(7, "user", "q4"),
        turn(8, "assistant", "half", status="incomplete", reply_to=7),
    ]
    assert [t.id for t in context.usable(turns)] == [1, 2, 5, 6]


def test_assistant_turns_count_their_real_token_count() -> None:
    assert context.turn_tokens(turn(1, "assistant", "x" * 400, completion_tokens=7)) == 7 + 4
    assert context.turn_tokens(turn(1, "user", "x" * 400)) == 100 + 4
