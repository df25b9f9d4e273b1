"""Who may talk to the bot, and where: allow and deny lists of users, roles and channels, and
whether direct messages are answered. Admins are never shut out, so they can always fix it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from bot.settings import Settings

NOT_HERE = "You can't use this bot here. Ask a server admin if you think you should."
NO_DMS = "Direct messages to this bot are off. Talk to me in a server channel."


@dataclass(frozen=True, slots=True)
class AccessRules:
    allowed_users: frozenset[int] = frozenset()
    denied_users: frozenset[int] = frozenset()
    allowed_roles: frozenset[int] = frozenset()
    denied_roles: frozenset[int] = frozenset()
    allowed_channels: frozenset[int] = frozenset()
    denied_channels: frozenset[int] = frozenset()
    allow_dms: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> AccessRules:
        return cls(
            allowed_users=frozenset(settings.allowed_user_ids),
            denied_users=frozenset(settings.denied_user_ids),
            allowed_roles=frozenset(settings.allowed_role_ids),
            denied_roles=frozenset(settings.denied_role_ids),
            allowed_channels=frozenset(settings.allowed_channel_ids),
            denied_channels=frozenset(settings.denied_channel_ids),
            allow_dms=settings.allow_dms,
        )

    def refusal(
        self,
        *,
        user_id: int,
        role_ids: Iterable[int],
        channel_ids: Iterable[int],
        dm: bool,
        admin: bool = False,
    ) -> str | None:
        """Why this user may not use the bot in this place, or None when they may.

        `channel_ids` is the channel and, for a thread, its parent: a rule on a channel covers
        its threads."""
        if dm:
            if not self.allow_dms or user_id in self.denied_users:
                return NO_DMS
            return None if not self.allowed_users or user_id in self.allowed_users else NO_DMS
        if admin:
            return None
        roles, channels = set(role_ids), set(channel_ids)
        if (
            user_id in self.denied_users
            or roles & self.denied_roles
            or channels & self.denied_channels
        ):
            return NOT_HERE
        if self.allowed_channels and not channels & self.allowed_channels:
            return NOT_HERE
        if (self.allowed_users or self.allowed_roles) and not (
            user_id in self.allowed_users or roles & self.allowed_roles
        ):
            return NOT_HERE
        return None
