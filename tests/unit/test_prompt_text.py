"""How a mention message becomes the model's prompt."""

from __future__ import annotations

from bot.cogs.chat import prompt_from_message
from bot.ui.text import echo


def test_the_bots_own_mention_is_removed_and_others_become_names() -> None:
    text = prompt_from_message(
        "<@99> what does <@12> think of <@&7>? cc <@!99>",
        bot_id=99,
        bot_role_id=None,
        names={12: "bob"},
        roles={7: "mods"},
    )
    assert text == "what does @bob think of @mods? cc"


def test_the_bots_managed_role_counts_as_its_mention() -> None:
    assert prompt_from_message("<@&5> hi", bot_id=99, bot_role_id=5, names={}, roles={}) == "hi"


def test_unknown_mentions_stay_as_they_are() -> None:
    assert (
        prompt_from_message("<@99> <@404>", bot_id=99, bot_role_id=None, names={}, roles={})
        == "<@404>"
    )


def test_only_a_mention_leaves_nothing() -> None:
    assert prompt_from_message("  <@99>  ", bot_id=99, bot_role_id=None, names={}, roles={}) == ""


def test_the_echoed_question_is_one_short_quoted_line() -> None:
    assert echo("why\nis the sky blue?") == "> why is the sky blue?\n"
    long = echo("x" * 500)
    assert len(long) == len("> ") + 150 + len("\n") and long.endswith("…\n")
