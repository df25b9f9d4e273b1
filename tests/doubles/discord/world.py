"""The world the bot lives in: guilds, channels, users, members, roles and permission overwrites,
and what a test changes in it (a guild leaves, a thread is archived, a message deleted)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from jsonschema import Draft202012Validator

from tests.doubles.discord.constants import (
    ADMIN_ROLE_PERMISSIONS,
    ADMINISTRATOR,
    ALL_PERMISSIONS,
    BOT_ROLE_PERMISSIONS,
    DM,
    EVERYONE_PERMISSIONS,
    GUILD_TEXT,
    INTENT_DIRECT_MESSAGES,
    INTENT_GUILD_MEMBERS,
    INTENT_GUILD_MESSAGES,
    INTENT_GUILDS,
    SEND_MESSAGES,
    SEND_MESSAGES_IN_THREADS,
    THREAD_TYPES,
    VIEW_CHANNEL,
)
from tests.doubles.discord.helpers import _clone, _now_iso
from tests.doubles.discord.records import ApiError, FakeGuild
from tests.doubles.discord.schemas import _schema_errors


class WorldMixin:
    """Guilds, channels, users, roles and permissions (state: `guilds`, `channels`, `users`,
    `roles`, `thread_members`)."""

    # ------------------------------------------------------------------ world building

    def _make_user(
        self, name: str, *, bot: bool = False, user_id: str | None = None
    ) -> dict[str, Any]:
        user: dict[str, Any] = {
            "id": user_id or self._ids.next(),
            "username": name.lower(),
            "global_name": None if bot else name.capitalize(),
            "discriminator": "0",
            "avatar": None,
            "avatar_decoration_data": None,
            "banner": None,
            "accent_color": None,
            "public_flags": 0,
            "flags": 0,
            "collectibles": None,
            "primary_guild": None,
            "clan": None,
        }
        if bot:
            user["bot"] = True
        return user

    @staticmethod
    def _make_role(
        role_id: str, name: str, permissions: int, position: int, *, managed: bool = False
    ) -> dict[str, Any]:
        return {
            "id": role_id,
            "name": name,
            "description": None,
            "permissions": str(permissions),
            "position": position,
            "color": 0,
            "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
            "hoist": False,
            "managed": managed,
            "mentionable": False,
            "icon": None,
            "unicode_emoji": None,
            "flags": 0,
        }

    async def add_guild(
        self,
        name: str,
        channels: Iterable[str] = ("general",),
        *,
        shard: tuple[int, int] | None = None,
    ) -> str:
        """Add a guild with the same members (the admin has its Admin role) and these text
        channels; returns its id. A connected bot gets GUILD_CREATE, as when it is invited
        (on the connection of the guild's shard). With ``shard`` (id, count) the guild's id is one
        that Discord would send to that shard when the bot runs ``count`` shards."""
        guild_id = self._ids.next(shard)
        admin_role_id, bot_role_id = self._ids.next(), self._ids.next()
        self.guilds[guild_id] = FakeGuild(
            id=guild_id,
            name=name,
            roles=[
                self._make_role(guild_id, "@everyone", EVERYONE_PERMISSIONS, 0),
                self._make_role(bot_role_id, "Ollama", BOT_ROLE_PERMISSIONS, 1, managed=True),
                self._make_role(admin_role_id, "Admin", ADMIN_ROLE_PERMISSIONS, 2),
            ],
            member_roles={
                self.bot_user["id"]: [bot_role_id],
                **{user["id"]: [] for user in self.users.values()},
                self.users["admin"]["id"]: [admin_role_id],
            },
            joined_at=_now_iso(),
            admin_role_id=admin_role_id,
            bot_role_id=bot_role_id,
        )
        for position, channel_name in enumerate(channels):
            self._add_text_channel(channel_name, position, guild_id=guild_id)
        session = self._session_for(guild_id)
        if session is not None and session.intents & INTENT_GUILDS:
            await self._dispatch_on(
                session, "GUILD_CREATE", self._guild_payload(session.intents, guild_id)
            )
        return guild_id

    async def remove_guild(self, guild_id: str) -> None:
        """The bot is removed from the guild (kicked, or the guild deleted): GUILD_DELETE
        without `unavailable`. `restore_guild` invites it back."""
        session = self._session_for(guild_id)
        self._removed_guilds[guild_id] = self.guilds.pop(guild_id)
        self._notify()
        if session is not None and session.intents & INTENT_GUILDS:
            await self._dispatch_on(session, "GUILD_DELETE", {"id": guild_id})

    async def restore_guild(self, guild_id: str) -> None:
        """The bot is invited back to a guild it was removed from: GUILD_CREATE."""
        self.guilds[guild_id] = self._removed_guilds.pop(guild_id)
        session = self._session_for(guild_id)
        if session is not None and session.intents & INTENT_GUILDS:
            await self._dispatch_on(
                session, "GUILD_CREATE", self._guild_payload(session.intents, guild_id)
            )

    def guild_channel_ids(self, guild_id: str) -> list[str]:
        """The text channels of a guild, in position order."""
        return [
            c["id"]
            for c in self.channels.values()
            if c.get("guild_id") == guild_id and c["type"] == GUILD_TEXT
        ]

    def _guild_of(self, channel_id: str) -> FakeGuild | None:
        guild_id = self.channels[channel_id].get("guild_id")
        return self.guilds[guild_id] if guild_id else None

    def _add_text_channel(self, name: str, position: int, *, guild_id: str | None = None) -> str:
        channel_id = self._ids.next()
        self.channels[channel_id] = {
            "id": channel_id,
            "type": GUILD_TEXT,
            "guild_id": guild_id or self.guild_id,
            "name": name,
            "position": position,
            "parent_id": None,
            "topic": None,
            "nsfw": False,
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "permission_overwrites": [],
            "flags": 0,
        }
        return channel_id

    def add_text_channel(self, name: str) -> str:
        """Another text channel in the guild; add it before the bot connects (it is announced in
        GUILD_CREATE, not with CHANNEL_CREATE)."""
        channel_id = self._add_text_channel(name, len(self.channel_ids))
        self.channel_ids.append(channel_id)
        return channel_id

    def add_member(self, name: str) -> dict[str, Any]:
        """Another person in the guild, without special permissions (usable as ``user=name``)."""
        user = self._make_user(name)
        self.users[name] = user
        self._member_roles[user["id"]] = []
        return user

    def make_admin(self, user: str, guild_id: str | None = None) -> None:
        """Give ``user`` the guild's Admin role (Manage Server and more): for instance someone
        who invited the bot to a server of their own. Takes effect on their next interaction."""
        guild = self.guilds[guild_id or self.guild_id]
        roles = guild.member_roles.setdefault(self._user(user)["id"], [])
        if guild.admin_role_id not in roles:
            roles.append(guild.admin_role_id)

    async def delete_user_message(self, message_id: str) -> None:
        """The message's author deletes it: gone from REST, MESSAGE_DELETE is dispatched."""
        message = self.messages[message_id]
        message.deleted = True
        self._notify()
        await self._announce_delete(message)

    async def bulk_delete(self, channel_id: str, message_ids: list[str]) -> None:
        """A moderator deletes several messages at once: MESSAGE_DELETE_BULK."""
        for message_id in message_ids:
            if message_id in self.messages:  # ids of messages long gone are passed on too
                self.messages[message_id].deleted = True
        self._notify()
        data: dict[str, Any] = {"ids": list(message_ids), "channel_id": channel_id}
        guild_id = self.channels[channel_id].get("guild_id")
        if guild_id:
            data["guild_id"] = guild_id
        intent = INTENT_GUILD_MESSAGES if guild_id else INTENT_DIRECT_MESSAGES
        await self._emit("MESSAGE_DELETE_BULK", data, intent=intent)

    async def archive_thread(self, thread_id: str, *, locked: bool = False) -> None:
        """A moderator archives (and with ``locked``, locks) a thread: THREAD_UPDATE with the
        metadata; the bot's sends and edits there are then refused (50083)."""
        thread = self._channel(thread_id)
        if thread["type"] not in THREAD_TYPES:
            raise ValueError(f"{thread_id} is not a thread")
        thread["thread_metadata"]["archived"] = True
        thread["thread_metadata"]["locked"] = locked or thread["thread_metadata"]["locked"]
        thread["thread_metadata"]["archive_timestamp"] = _now_iso()
        self._notify()
        await self._emit("THREAD_UPDATE", _clone(thread), intent=INTENT_GUILDS)

    async def delete_thread(self, thread_id: str) -> None:
        """A moderator deletes a thread: it is gone from REST and THREAD_DELETE is dispatched."""
        thread = self.channels.pop(thread_id)
        if thread["type"] not in THREAD_TYPES:
            self.channels[thread_id] = thread
            raise ValueError(f"{thread_id} is not a thread")
        self._notify()
        data = {key: thread[key] for key in ("id", "guild_id", "parent_id", "type")}
        await self._emit("THREAD_DELETE", data, intent=INTENT_GUILDS)

    def add_dm_channel(self, user: str) -> str:
        """The DM channel (type 1) between the bot and ``user`` (created once)."""
        return self._dm_channel_for(self.users[user]["id"])

    def _dm_channel_for(self, user_id: str) -> str:
        for channel in self.channels.values():
            if channel["type"] == DM and channel["recipients"][0]["id"] == user_id:
                return str(channel["id"])
        channel_id = self._ids.next()
        self.channels[channel_id] = {
            "id": channel_id,
            "type": DM,
            "last_message_id": None,
            "flags": 0,
            "recipients": [self._user_by_id(user_id)],
        }
        return channel_id

    def _user_by_id(self, user_id: str) -> dict[str, Any]:
        if user_id == self.bot_user["id"]:
            return self.bot_user
        # Every payload names users: remember where each was found (checked still there).
        seen = self._user_names.get(user_id)
        if seen is not None and self.users.get(seen[0]) is seen[1]:
            return seen[1]
        for name, user in self.users.items():
            if user["id"] == user_id:
                self._user_names[user_id] = (name, user)
                return user
        if user_id in self._webhook_users:
            return self._webhook_users[user_id]
        raise KeyError(user_id)

    def _is_guild_channel(self, channel_id: str) -> bool:
        return bool(self.channels[channel_id].get("guild_id"))

    def permissions_of(self, user_id: str, guild_id: str | None = None) -> int:
        """Guild-level permission bits of a member (all bits for an administrator)."""
        guild = self.guilds[guild_id or self.guild_id]
        bits = EVERYONE_PERMISSIONS
        for role in guild.roles:
            if role["id"] in guild.member_roles.get(user_id, []):
                bits |= int(role["permissions"])
        return ALL_PERMISSIONS if bits & ADMINISTRATOR else bits

    def channel_permissions(self, user_id: str, channel_id: str) -> int:
        """A member's permission bits in one channel, computed the way Discord does: the guild
        permissions of @everyone and the member's roles (an administrator has every bit), then
        the channel's @everyone overwrite, the union of its role overwrites, the member's own
        overwrite; without View Channel nothing is left. A thread takes its parent's overwrites;
        a DM channel allows what @everyone may do."""
        channel = self._channel(channel_id)
        guild_id = channel.get("guild_id")
        if not guild_id:
            return EVERYONE_PERMISSIONS
        guild = self.guilds[guild_id]
        bits = self.permissions_of(user_id, guild_id)
        if bits & ADMINISTRATOR:
            return ALL_PERMISSIONS
        source = channel
        if channel["type"] in THREAD_TYPES:
            source = self.channels.get(str(channel.get("parent_id")), channel)
        overwrites = {str(o["id"]): o for o in source.get("permission_overwrites") or []}

        def apply(bits: int, allow: int, deny: int) -> int:
            return (bits & ~deny) | allow

        everyone = overwrites.get(guild_id)
        if everyone is not None:
            bits = apply(bits, int(everyone["allow"]), int(everyone["deny"]))
        allow = deny = 0
        for role_id in guild.member_roles.get(user_id, []):
            overwrite = overwrites.get(role_id)
            if overwrite is not None and overwrite["type"] == 0:
                allow |= int(overwrite["allow"])
                deny |= int(overwrite["deny"])
        bits = apply(bits, allow, deny)
        own = overwrites.get(user_id)
        if own is not None and own["type"] == 1:
            bits = apply(bits, int(own["allow"]), int(own["deny"]))
        return bits if bits & VIEW_CHANNEL else 0

    async def set_overwrite(
        self,
        channel_id: str,
        target_id: str,
        *,
        allow: int = 0,
        deny: int = 0,
        member: bool = True,
    ) -> None:
        """Set a permission overwrite on a guild channel (not a thread: threads use their
        parent's) for a member (``member=True``) or a role (``member=False``; the guild id is
        @everyone), replacing that target's previous one. A connected bot gets CHANNEL_UPDATE."""
        channel = self._channel(channel_id)
        if not channel.get("guild_id") or channel["type"] in THREAD_TYPES:
            raise ValueError(f"{channel_id} is not a guild channel with overwrites of its own")
        overwrite = {
            "id": str(target_id),
            "type": 1 if member else 0,
            "allow": str(allow),
            "deny": str(deny),
        }
        kept = [o for o in channel["permission_overwrites"] if o["id"] != str(target_id)]
        channel["permission_overwrites"] = [*kept, overwrite]
        self._notify()
        await self._emit("CHANNEL_UPDATE", _clone(channel), intent=INTENT_GUILDS)

    def _require(self, channel_id: str, needed: int) -> None:
        """Refuse like Discord when the bot lacks permission bits in a channel: 403 50001 when
        it cannot even see the channel, else 403 50013."""
        if not self._is_guild_channel(channel_id):
            return
        bits = self.channel_permissions(self.bot_user["id"], channel_id)
        if not bits & VIEW_CHANNEL:
            raise ApiError(403, 50001, "Missing Access")
        if needed & ~bits:
            raise ApiError(403, 50013, "Missing Permissions")

    def _refuse_archived_thread(self, channel_id: str) -> None:
        """Interaction messages too: an archived thread takes no new message or edit from a
        follow-up either (ephemeral ones are not channel messages and still work)."""
        if channel_id in self.channels:
            self._refuse_archived(channel_id)

    def _refuse_archived(self, channel_id: str) -> None:
        """Archived threads take no new messages or edits (a moderator must unarchive them)."""
        metadata = self.channels[channel_id].get("thread_metadata") or {}
        if metadata.get("archived"):
            raise ApiError(400, 50083, "Thread is archived")

    def _send_permission(self, channel_id: str) -> int:
        """The bit that lets a member post in this channel (Send Messages in Threads in one)."""
        in_thread = self.channels[channel_id]["type"] in THREAD_TYPES
        return SEND_MESSAGES_IN_THREADS if in_thread else SEND_MESSAGES

    def _member(
        self, user_id: str, *, with_user: bool = True, guild_id: str | None = None
    ) -> dict[str, Any]:
        guild = self.guilds[guild_id or self.guild_id]
        member: dict[str, Any] = {
            "roles": list(guild.member_roles.get(user_id, [])),
            "joined_at": guild.joined_at,
            "premium_since": None,
            "nick": None,
            "avatar": None,
            "banner": None,
            "deaf": False,
            "mute": False,
            "pending": False,
            "flags": 0,
            "communication_disabled_until": None,
        }
        if with_user:
            member["user"] = self._user_by_id(user_id)
        return member

    def _guild_payload(self, intents: int, guild_id: str | None = None) -> dict[str, Any]:
        """The GUILD_CREATE payload of a guild (the default one unless named)."""
        guild = self.guilds[guild_id or self.guild_id]
        member_ids = (
            list(guild.member_roles) if intents & INTENT_GUILD_MEMBERS else [self.bot_user["id"]]
        )
        channels = [
            c
            for c in self.channels.values()
            if c.get("guild_id") == guild.id and c["type"] not in THREAD_TYPES
        ]
        threads = [
            c
            for c in self.channels.values()
            if c.get("guild_id") == guild.id and c["type"] in THREAD_TYPES
        ]
        return {
            "id": guild.id,
            "name": guild.name,
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "description": None,
            "owner_id": self.users["admin"]["id"],
            "region": "deprecated",
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 1,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "premium_progress_bar_enabled": False,
            "preferred_locale": "en-US",
            "features": [],
            "roles": _clone(guild.roles),
            "emojis": [],
            "stickers": [],
            "system_channel_id": channels[0]["id"] if channels else None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "safety_alerts_channel_id": None,
            "max_members": 500000,
            "max_video_channel_users": 25,
            "vanity_url_code": None,
            "application_id": None,
            "joined_at": guild.joined_at,
            "large": False,
            "unavailable": False,
            "member_count": len(guild.member_roles),
            "members": [self._member(uid, guild_id=guild.id) for uid in member_ids],
            "channels": _clone(channels),
            "threads": _clone(threads),
            "presences": [],
            "voice_states": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "embedded_activities": [],
            "lazy": True,
        }

    def _schema_errors(self, validator: Draft202012Validator | None, body: Any) -> dict[str, Any]:
        return _schema_errors(validator, body) if self.validate_schemas else {}
