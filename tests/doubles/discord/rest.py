"""REST handlers for users, the application, commands, guilds, channels, messages and threads.

Each is a `FakeDiscord` method named in `routes.ROUTES`; it takes a parsed `_Request` and returns
the answer Discord would give, or raises `ApiError` with Discord's code and message.
"""

from __future__ import annotations

import secrets
from typing import Any

from aiohttp import web

from tests.doubles.discord.constants import (
    ATTACH_FILES,
    CREATE_PRIVATE_THREADS,
    CREATE_PUBLIC_THREADS,
    FLAG_EPHEMERAL,
    GUILD_TEXT,
    INTENT_GUILDS,
    MANAGE_MESSAGES,
    PRIVATE_THREAD,
    PUBLIC_THREAD,
    READ_MESSAGE_HISTORY,
    THREAD_TYPES,
    VIEW_CHANNEL,
)
from tests.doubles.discord.helpers import _clone, _json_response, _now_iso
from tests.doubles.discord.records import ApiError, FakeGuild, FakeMessage, _form_error
from tests.doubles.discord.routes import _Request
from tests.doubles.discord.schemas import _merge_errors, _request_validator, _schema_validator
from tests.doubles.discord.validation import _command_errors


class RestMixin:
    """REST route handlers for everything but interactions."""

    # ------------------------------------------------------------------ REST: users, app, gateway

    async def _get_me(self, req: _Request) -> web.Response:
        return _json_response(
            {
                **self.bot_user,
                "verified": True,
                "mfa_enabled": False,
                "email": None,
                "locale": "en-US",
            }
        )

    async def _get_user(self, req: _Request) -> web.Response:
        try:
            return _json_response(self._user_by_id(req.params["user_id"]))
        except KeyError:
            raise ApiError(404, 10013, "Unknown User") from None

    async def _create_dm(self, req: _Request) -> web.Response:
        errors = self._schema_errors(
            _request_validator("/users/@me/channels", "post"), req.body or {}
        )
        if errors:
            raise ApiError(400, 50035, "Invalid Form Body", errors)
        recipient = str((req.body or {}).get("recipient_id"))
        try:
            self._user_by_id(recipient)
        except KeyError:
            raise ApiError(400, 50007, "Cannot send messages to this user") from None
        return _json_response(self._channel_payload(self._dm_channel_for(recipient)))

    async def _get_application(self, req: _Request) -> web.Response:
        return _json_response(
            {
                "id": self.application_id,
                "name": "Ollama",
                "icon": None,
                "description": "",
                "summary": "",
                "type": None,
                "flags_new": str(self._application_flags()),
                "role_connections_verification_url": None,
                "approximate_user_install_count": 0,
                "approximate_user_authorization_count": 0,
                "explicit_content_filter": 0,
                "eligible_oauth2_scopes": ["bot", "applications.commands"],
                "hook": True,
                "bot_public": True,
                "bot_require_code_grant": False,
                "verify_key": secrets.token_hex(32),
                "flags": self._application_flags(),
                **self._application_owner(),
                "bot": self.bot_user,
                "interactions_endpoint_url": None,
                "redirect_uris": [],
                "rpc_origins": [],
                "approximate_guild_count": len(self.guilds),
                "integration_types_config": {"0": {}},
                "install_params": {"scopes": ["bot", "applications.commands"], "permissions": "0"},
            }
        )

    def set_application_team(self, members: dict[str, str]) -> None:
        """Give the application to a team: ``members`` maps user names to team roles (`admin`,
        `developer`, `read_only`). As on Discord, the application's owner is then the team's
        pseudo-user, and the team's owner is its first member."""
        for name, role in members.items():
            self._user(name)
            if role not in ("admin", "developer", "read_only"):
                raise ValueError(f"unknown team role {role!r}")
        self.application_team = dict(members)

    def _application_owner(self) -> dict[str, Any]:
        """The `owner` and `team` fields of the application object."""
        if self.application_team is None:
            return {"owner": self.users["admin"], "team": None}
        team_id = self._command_ids.setdefault("team", self._ids.next())
        names = list(self.application_team)
        team_user = {
            **self._make_user(f"team{team_id}", user_id=team_id),
            "flags": 1024,  # TEAM_PSEUDO_USER
        }
        return {
            "owner": team_user,
            "team": {
                "id": team_id,
                "name": "The Team",
                "icon": None,
                "owner_user_id": self._user(names[0])["id"] if names else team_id,
                "members": [
                    {
                        "membership_state": 2,
                        "team_id": team_id,
                        "user": self._user(name),
                        "role": role,
                        "permissions": ["*"],
                    }
                    for name, role in self.application_team.items()
                ],
            },
        }

    async def _get_gateway(self, req: _Request) -> web.Response:
        return _json_response({"url": self.gateway_url})

    async def _get_gateway_bot(self, req: _Request) -> web.Response:
        return _json_response(
            {
                "url": self.gateway_url,
                "shards": self.recommended_shards,
                "session_start_limit": {
                    "total": 1000,
                    "remaining": 999,
                    "reset_after": 14_400_000,
                    "max_concurrency": 1,
                },
            }
        )

    # ------------------------------------------------------------------ REST: commands

    def _check_app(self, req: _Request) -> None:
        if req.params.get("app_id") != self.application_id:
            raise ApiError(404, 10002, "Unknown Application")
        guild_id = req.params.get("guild_id")
        if guild_id is not None and guild_id not in self.guilds:
            raise ApiError(403, 50001, "Missing Access")

    def _command_object(self, command: dict[str, Any], guild_id: str | None) -> dict[str, Any]:
        command_type = int(command.get("type") or 1)
        key = f"{guild_id}:{command_type}:{command['name']}"
        command_id = self._command_ids.setdefault(key, self._ids.next())
        result: dict[str, Any] = {
            "id": command_id,
            "application_id": self.application_id,
            "version": self._ids.next(),
            "default_member_permissions": (
                str(command["default_member_permissions"])
                if command.get("default_member_permissions") is not None
                else None
            ),
            "type": command_type,
            "name": command["name"],
            "name_localizations": command.get("name_localizations"),
            "description": command.get("description") or "",
            "description_localizations": command.get("description_localizations"),
            "dm_permission": command.get("dm_permission", True),
            "contexts": command.get("contexts"),
            "integration_types": command.get("integration_types") or [0],
            "nsfw": bool(command.get("nsfw", False)),
        }
        if command.get("options"):
            result["options"] = _clone(command["options"])
        if guild_id is not None:
            result["guild_id"] = guild_id
        return result

    def _command_errors(self, commands: list[dict[str, Any]]) -> dict[str, Any]:
        return _command_errors(commands)

    async def _get_commands(self, req: _Request) -> web.Response:
        self._check_app(req)
        guild_id = req.params.get("guild_id")
        stored = self.guild_commands.get(guild_id, []) if guild_id else self.commands
        return _json_response(stored)

    async def _put_commands(self, req: _Request) -> web.Response:
        self._check_app(req)
        guild_id = req.params.get("guild_id")
        spec_path = (
            "/applications/{application_id}/guilds/{guild_id}/commands"
            if guild_id
            else "/applications/{application_id}/commands"
        )
        body = req.body if req.body is not None else []
        errors = self._schema_errors(_request_validator(spec_path, "put"), body)
        if isinstance(body, list):
            _merge_errors(errors, self._command_errors(body))
        if errors:
            raise ApiError(400, 50035, "Invalid Form Body", errors)
        result = [self._command_object(c, guild_id) for c in body]
        if guild_id:
            self.guild_commands[guild_id] = result
        else:
            self.commands = result
        return _json_response(result)

    async def _post_command(self, req: _Request) -> web.Response:
        self._check_app(req)
        guild_id = req.params.get("guild_id")
        body = req.body or {}
        errors = self._schema_errors(_schema_validator("ApplicationCommandCreateRequest"), body)
        _merge_errors(errors, self._command_errors([body]).get("0", {}))
        if errors:
            raise ApiError(400, 50035, "Invalid Form Body", errors)
        command = self._command_object(body, guild_id)
        stored = self.guild_commands.setdefault(guild_id, []) if guild_id else self.commands
        stored[:] = [c for c in stored if c["id"] != command["id"]] + [command]
        return _json_response(command, 201)

    # ------------------------------------------------------------------ REST: guild, channels

    def _check_guild(self, req: _Request) -> FakeGuild:
        guild = self.guilds.get(req.params["guild_id"])
        if guild is None:
            raise ApiError(404, 10004, "Unknown Guild")
        return guild

    async def _get_guild(self, req: _Request) -> web.Response:
        guild = self._guild_payload(0, self._check_guild(req).id)
        for key in (
            "members",
            "channels",
            "threads",
            "presences",
            "voice_states",
            "joined_at",
            "large",
            "member_count",
            "lazy",
            "unavailable",
        ):
            guild.pop(key, None)
        guild.update(  # fields only the REST guild object carries
            {
                "home_header": None,
                "widget_enabled": False,
                "widget_channel_id": None,
                "max_presences": None,
                "max_stage_video_channel_users": 50,
                "nsfw": False,
                "incidents_data": None,
            }
        )
        return _json_response(guild)

    async def _get_guild_channels(self, req: _Request) -> web.Response:
        guild = self._check_guild(req)
        channels = [
            c
            for c in self.channels.values()
            if c.get("guild_id") == guild.id and c["type"] not in THREAD_TYPES
        ]
        return _json_response(_clone(channels))

    async def _get_guild_roles(self, req: _Request) -> web.Response:
        return _json_response(_clone(self._check_guild(req).roles))

    async def _get_guild_member(self, req: _Request) -> web.Response:
        guild = self._check_guild(req)
        user_id = req.params["user_id"]
        if user_id not in guild.member_roles:
            raise ApiError(404, 10007, "Unknown Member")
        return _json_response(self._member(user_id, guild_id=guild.id))

    def _channel(self, channel_id: str) -> dict[str, Any]:
        channel = self.channels.get(channel_id)
        if channel is None:
            raise ApiError(404, 10003, "Unknown Channel")
        return channel

    def _channel_message(self, channel_id: str, message_id: str) -> FakeMessage:
        self._channel(channel_id)
        message = self.messages.get(message_id)
        if (
            message is None
            or message.deleted
            or message.channel_id != channel_id
            or message.is_ephemeral
        ):
            raise ApiError(404, 10008, "Unknown Message")
        return message

    async def _get_channel(self, req: _Request) -> web.Response:
        return _json_response(self._channel_payload(self._channel(req.params["channel_id"])["id"]))

    async def _get_history(self, req: _Request) -> web.Response:
        channel_id = self._channel(req.params["channel_id"])["id"]
        try:
            limit = int(req.query.get("limit", "50"))
        except ValueError:
            raise _form_error(
                ["limit"], "NUMBER_TYPE_COERCE", f'Value "{req.query["limit"]}" is not int.'
            ) from None
        if not 1 <= limit <= 100:
            raise _form_error(
                ["limit"],
                "NUMBER_TYPE_MAX" if limit > 100 else "NUMBER_TYPE_MIN",
                "int value should be between 1 and 100.",
            )
        self._require(channel_id, VIEW_CHANNEL)
        visible = [m for m in self.channel_messages(channel_id) if not m.is_ephemeral]
        if self._is_guild_channel(channel_id) and not (
            self.channel_permissions(self.bot_user["id"], channel_id) & READ_MESSAGE_HISTORY
        ):
            visible = []  # Discord returns no messages without Read Message History
        before, after, around = (req.query.get(k) for k in ("before", "after", "around"))
        if before:
            visible = [m for m in visible if int(m.id) < int(before)]
            chosen = visible[-limit:]
        elif after:
            visible = [m for m in visible if int(m.id) > int(after)]
            chosen = visible[:limit]
        elif around:
            older = [m for m in visible if int(m.id) <= int(around)]
            newer = [m for m in visible if int(m.id) > int(around)]
            half = limit // 2
            chosen = older[-(limit - half) :] + newer[:half]
        else:
            chosen = visible[-limit:]
        chosen.sort(key=lambda m: int(m.id), reverse=True)
        return _json_response([self.message_payload(m) for m in chosen])

    async def _get_message(self, req: _Request) -> web.Response:
        self._require(
            self._channel(req.params["channel_id"])["id"], VIEW_CHANNEL | READ_MESSAGE_HISTORY
        )
        message = self._channel_message(req.params["channel_id"], req.params["message_id"])
        return _json_response(self.message_payload(message))

    async def _create_message(self, req: _Request) -> web.Response:
        channel_id = self._channel(req.params["channel_id"])["id"]
        needed = VIEW_CHANNEL | self._send_permission(channel_id)
        if isinstance(req.body, dict) and req.body.get("message_reference"):
            needed |= READ_MESSAGE_HISTORY
        if req.files:
            needed |= ATTACH_FILES
        self._require(channel_id, needed)
        self._refuse_archived(channel_id)
        body = self._validate_message(
            req.body, _request_validator("/channels/{channel_id}/messages", "post"), req.files
        )
        reference = body.get("message_reference")
        stored_reference: dict[str, Any] | None = None
        if reference:
            ref_id = str(reference.get("message_id"))
            ref_channel = str(reference.get("channel_id") or channel_id)
            referenced = self.messages.get(ref_id)
            if referenced is None or referenced.deleted or referenced.channel_id != ref_channel:
                if reference.get("fail_if_not_exists", True):
                    raise _form_error(
                        ["message_reference"],
                        "MESSAGE_REFERENCE_UNKNOWN_MESSAGE",
                        "Unknown message",
                    )
            else:
                stored_reference = {
                    "type": int(reference.get("type") or 0),
                    "channel_id": referenced.channel_id,
                    "message_id": referenced.id,
                }
                if referenced.guild_id:
                    stored_reference["guild_id"] = referenced.guild_id
        if int(body.get("flags") or 0) & FLAG_EPHEMERAL:  # only interaction messages can be
            raise _form_error(["flags"], "MESSAGE_FLAGS_INVALID", "Invalid flags")
        message = self._new_message(
            channel_id=channel_id,
            author_id=self.bot_user["id"],
            body=body,
            files=req.files,
            message_type=19 if stored_reference else 0,
            message_reference=stored_reference,
        )
        await self._announce(message, "MESSAGE_CREATE")
        return _json_response(self.message_payload(message))

    async def _edit_message(self, req: _Request) -> web.Response:
        message = self._channel_message(req.params["channel_id"], req.params["message_id"])
        body = req.body if isinstance(req.body, dict) else {}
        if message.author_id != self.bot_user["id"] and (set(body) - {"flags"} or req.files):
            raise ApiError(403, 50005, "Cannot edit a message authored by another user")
        self._require(
            message.channel_id,
            VIEW_CHANNEL
            | self._send_permission(message.channel_id)
            | (ATTACH_FILES if req.files else 0),
        )
        self._refuse_archived(message.channel_id)
        body = self._validate_message(
            req.body,
            _request_validator("/channels/{channel_id}/messages/{message_id}", "patch"),
            req.files,
            existing=message,
        )
        self._apply_body(message, body, req.files, creating=False)
        self._record_edit(message, body)
        await self._announce(message, "MESSAGE_UPDATE")
        return _json_response(self.message_payload(message))

    async def _delete_message(self, req: _Request) -> web.Response:
        message = self._channel_message(req.params["channel_id"], req.params["message_id"])
        if (
            message.author_id != self.bot_user["id"]
            and not self.permissions_of(self.bot_user["id"], message.guild_id) & MANAGE_MESSAGES
        ):
            raise ApiError(403, 50013, "Missing Permissions")
        message.deleted = True
        self._notify()
        await self._announce_delete(message)
        return web.Response(status=204)

    async def _add_reaction(self, req: _Request) -> web.Response:
        message = self._channel_message(req.params["channel_id"], req.params["message_id"])
        message.reactions.append(req.params["emoji"])
        self._notify()
        return web.Response(status=204)

    async def _typing(self, req: _Request) -> web.Response:
        channel_id = self._channel(req.params["channel_id"])["id"]
        self._require(channel_id, VIEW_CHANNEL | self._send_permission(channel_id))
        return web.Response(status=204)

    async def _create_thread(self, req: _Request) -> web.Response:
        parent = self._channel(req.params["channel_id"])
        if parent["type"] != GUILD_TEXT:
            raise ApiError(400, 50024, "Cannot execute action on this channel type")
        message_id = req.params.get("message_id")
        body = req.body if isinstance(req.body, dict) else {}
        if message_id:
            self._require(parent["id"], VIEW_CHANNEL | CREATE_PUBLIC_THREADS | READ_MESSAGE_HISTORY)
            message = self._channel_message(parent["id"], message_id)
            validator = _request_validator(
                "/channels/{channel_id}/messages/{message_id}/threads", "post"
            )
            if message.id in self.channels:
                raise ApiError(400, 160004, "A thread has already been created for this message")
            thread_id, thread_type = message.id, PUBLIC_THREAD
        else:
            validator = _schema_validator("CreateTextThreadWithoutMessageRequest")
            thread_id, thread_type = self._ids.next(), int(body.get("type") or PRIVATE_THREAD)
            create = (
                CREATE_PRIVATE_THREADS if thread_type == PRIVATE_THREAD else CREATE_PUBLIC_THREADS
            )
            self._require(parent["id"], VIEW_CHANNEL | create)
        errors = self._schema_errors(validator, body)
        if errors:
            raise ApiError(400, 50035, "Invalid Form Body", errors)
        now = _now_iso()
        thread: dict[str, Any] = {
            "id": thread_id,
            "type": thread_type,
            "guild_id": parent["guild_id"],
            "parent_id": parent["id"],
            "owner_id": self.bot_user["id"],
            "name": body["name"],
            "last_message_id": None,
            "rate_limit_per_user": int(body.get("rate_limit_per_user") or 0),
            "flags": 0,
            "message_count": 0,
            "member_count": 1,
            "total_message_sent": 0,
            "thread_metadata": {
                "archived": False,
                "auto_archive_duration": int(body.get("auto_archive_duration") or 4320),
                "archive_timestamp": now,
                "locked": False,
                "create_timestamp": now,
                **(
                    {"invitable": bool(body.get("invitable", True))}
                    if thread_type == PRIVATE_THREAD
                    else {}
                ),
            },
            "member": {
                "id": thread_id,
                "user_id": self.bot_user["id"],
                "join_timestamp": now,
                "flags": 1,
            },
        }
        self.channels[thread_id] = thread
        self._notify()
        await self._emit(
            "THREAD_CREATE", {**_clone(thread), "newly_created": True}, intent=INTENT_GUILDS
        )
        return _json_response(_clone(thread), 201)

    async def _add_thread_member(self, req: _Request) -> web.Response:
        thread = self._channel(req.params["channel_id"])
        if thread["type"] not in THREAD_TYPES:
            raise ApiError(400, 50024, "Cannot execute action on this channel type")
        user_id = req.params["user_id"]
        if user_id not in self._member_roles:
            raise ApiError(404, 10013, "Unknown User")
        members = self.thread_members.setdefault(thread["id"], [])
        if user_id not in members:
            members.append(user_id)
            thread["member_count"] = len(members) + 1  # and the bot, which created it
        self._notify()
        return web.Response(status=204)
