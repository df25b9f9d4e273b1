"""The context window: newest turns that fit, usable turns only."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.conversation import context
from bot.ollama.protocol import ChatMessage
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


def test_turns_are_estimated_from_their_text_and_calibrated_per_model() -> None:
    # completion_tokens count reasoning that is never sent back: the text decides
    assert context.turn_tokens(turn(1, "assistant", "x" * 400, completion_tokens=7)) == 100 + 4
    assert context.turn_tokens(turn(1, "user", "x" * 400)) == 100 + 4
    assert context.turn_tokens(turn(1, "user", "x" * 400), ratio=2.5) == 250 + 4


def test_calibration_learns_each_models_ratio_and_ignores_cut_prompts() -> None:
    calibration = context.Calibration()
    messages = [ChatMessage("user", "x" * 400), ChatMessage("assistant", "y" * 400)]
    assert calibration.ratio("m") == 1.0
    calibration.observe("m", messages, 2 * 300 + 8, window=4096)  # three times the estimate
    assert calibration.ratio("m") == 3.0
    calibration.observe("m", messages, 4096, window=4096)  # cut to the window: no news
    assert calibration.ratio("m") == 3.0
    calibration.observe("m", messages, 2 * 100 + 8, window=4096)
    assert calibration.ratio("m") == 2.0  # smoothed
    assert calibration.ratio("other") == 1.0
    assert calibration.estimate("m", messages) == 2 * (200 + 4)


def test_speaker_labels_carry_no_mentions_newlines_or_long_names() -> None:
    assert context.speaker("Alice") == "Alice"
    assert context.speaker("@everyone <@123> hi\nthere") == "everyone hi there"
    assert context.speaker("<@&5><#6>") == "someone"
    assert len(context.speaker("x" * 100)) == 32
