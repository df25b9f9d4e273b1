"""The access rules, case by case."""

from __future__ import annotations

from bot.access import NO_DMS, NOT_HERE, AccessRules


def ask(
    rules: AccessRules,
    *,
    user: int = 1,
    roles: tuple[int, ...] = (),
    channels: tuple[int, ...] = (10,),
    dm: bool = False,
    admin: bool = False,
) -> str | None:
    return rules.refusal(user_id=user, role_ids=roles, channel_ids=channels, dm=dm, admin=admin)


def test_everyone_everywhere_by_default_but_not_in_dms() -> None:
    rules = AccessRules()
    assert ask(rules) is None
    assert ask(rules, dm=True) == NO_DMS
    assert ask(AccessRules(allow_dms=True), dm=True) is None


def test_deny_lists_win_over_allow_lists() -> None:
    rules = AccessRules(allowed_users=frozenset({1}), denied_roles=frozenset({5}))
    assert ask(rules, user=1) is None
    assert ask(rules, user=1, roles=(5,)) == NOT_HERE
    assert ask(rules, user=2) == NOT_HERE


def test_allowed_roles_or_users_let_members_in() -> None:
    rules = AccessRules(allowed_roles=frozenset({7}))
    assert ask(rules, roles=(7,)) is None
    assert ask(rules, roles=(8,)) == NOT_HERE


def test_channel_rules_cover_threads_through_their_parent() -> None:
    rules = AccessRules(allowed_channels=frozenset({10}), denied_channels=frozenset({20}))
    assert ask(rules, channels=(99, 10)) is None  # a thread of channel 10
    assert ask(rules, channels=(11,)) == NOT_HERE
    assert ask(AccessRules(denied_channels=frozenset({20})), channels=(98, 20)) == NOT_HERE


def test_admins_are_never_shut_out_of_the_server() -> None:
    rules = AccessRules(denied_users=frozenset({1}), allowed_channels=frozenset({10}))
    assert ask(rules, user=1, channels=(11,), admin=True) is None


def test_denied_users_stay_out_of_dms_too() -> None:
    rules = AccessRules(allow_dms=True, denied_users=frozenset({1}))
    assert ask(rules, user=1, dm=True) == NO_DMS
    assert ask(AccessRules(allow_dms=True, allowed_users=frozenset({2})), user=1, dm=True) == NO_DMS
