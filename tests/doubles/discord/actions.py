"""What tests do as users: slash commands, autocomplete, message commands, buttons, modals and
plain messages.

Each action builds the payload Discord would send (an INTERACTION_CREATE or a MESSAGE_CREATE),
records it (`FakeDiscord.interactions`, `FakeDiscord.messages`) and dispatches it on the Gateway
session that owns the guild (`gateway`). A new kind of user action belongs here.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

from tests.doubles.discord.constants import (
    APPLICATION_COMMAND,
    ATTACHMENT_SIZE_LIMIT,
    AUTOCOMPLETE,
    EVERYONE_PERMISSIONS,
    MESSAGE_COMPONENT,
    MODAL_SUBMIT,
)
from tests.doubles.discord.helpers import _clone, _option_type, _walk_components
from tests.doubles.discord.records import FakeInteraction, FakeMessage


class ActionsMixin:
    """User actions that send the bot interactions and messages."""

    # ------------------------------------------------------------------ driving the bot

    def _user(self, user: str) -> dict[str, Any]:
        try:
            return self.users[user]
        except KeyError:
            raise KeyError(f"unknown user {user!r}; known: {sorted(self.users)}") from None

    def _new_interaction_payload(
        self, interaction_type: int, data: dict[str, Any], user: str, channel_id: str | None
    ) -> tuple[FakeInteraction, dict[str, Any]]:
        channel_id = channel_id or self.channel_ids[0]
        channel = self._channel(channel_id)
        user_obj = self._user(user)
        interaction_id = self._ids.next()
        token = "aW50ZXJhY3Rpb246" + secrets.token_urlsafe(96)
        payload: dict[str, Any] = {
            "id": interaction_id,
            "application_id": self.application_id,
            "type": interaction_type,
            "token": token,
            "version": 1,
            "data": data,
            "channel_id": channel_id,
            "locale": "en-US",
            "entitlements": [],
            "entitlement_sku_ids": [],
            "attachment_size_limit": ATTACHMENT_SIZE_LIMIT,
        }
        if channel.get("guild_id"):
            guild_id = channel["guild_id"]
            # Channel-specific, as Discord sends them (overwrites applied).
            permissions = self.channel_permissions(user_obj["id"], channel_id)
            payload.update(
                {
                    "guild_id": guild_id,
                    "guild": {"id": guild_id, "locale": "en-US", "features": []},
                    "guild_locale": "en-US",
                    "channel": {
                        **self._channel_payload(channel_id),
                        "permissions": str(permissions),
                    },
                    "member": {
                        **self._member(user_obj["id"], guild_id=guild_id),
                        "permissions": str(permissions),
                    },
                    "app_permissions": str(
                        self.channel_permissions(self.bot_user["id"], channel_id)
                    ),
                    "authorizing_integration_owners": {"0": guild_id},
                    "context": 0,
                }
            )
        else:
            payload.update(
                {
                    "channel": {
                        **self._channel_payload(channel_id),
                        "permissions": str(EVERYONE_PERMISSIONS),
                    },
                    "user": _clone(user_obj),
                    "app_permissions": str(EVERYONE_PERMISSIONS),
                    "authorizing_integration_owners": {"0": "0"},
                    "context": 1,
                }
            )
        interaction = FakeInteraction(
            id=interaction_id,
            token=token,
            type=interaction_type,
            created_at=self.clock(),
            channel_id=channel_id,
            user_id=user_obj["id"],
            payload=payload,
        )
        return interaction, payload

    async def _send_interaction(self, interaction: FakeInteraction) -> FakeInteraction:
        await self._wait_ready_for(interaction.payload.get("guild_id"))
        self.interactions[interaction.id] = interaction
        self._by_token[interaction.token] = interaction
        interaction.created_at = self.clock()
        await self._emit("INTERACTION_CREATE", interaction.payload)
        return interaction

    def _command_id(self, name: str, command_type: int) -> tuple[str, str | None]:
        for guild_id, commands in [(None, self.commands), *self.guild_commands.items()]:
            for command in commands:
                if command["name"] == name and int(command.get("type", 1)) == command_type:
                    return str(command["id"]), guild_id
        key = f"unsynced:{command_type}:{name}"
        return self._command_ids.setdefault(key, self._ids.next()), None

    def _build_options(
        self,
        options: dict[str, Any] | None,
        attachments: dict[str, tuple[str, bytes, str]] | None,
        channel_id: str,
        focused: str | None = None,
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        built: list[dict[str, Any]] = []
        resolved: dict[str, Any] = {}
        guild_id = self.channels[channel_id].get("guild_id")
        for name, value in (options or {}).items():
            if isinstance(value, dict) and "type" in value:
                option = {"name": name, **value}
                if option["type"] == 6 and option["value"] in self.users:  # a user by short name
                    user = self.users[option["value"]]
                    option["value"] = user["id"]
                    resolved.setdefault("users", {})[user["id"]] = _clone(user)
                    resolved.setdefault("members", {})[user["id"]] = {
                        **self._member(user["id"], with_user=False, guild_id=guild_id),
                        "permissions": str(
                            self.channel_permissions(user["id"], channel_id)
                            if guild_id
                            else EVERYONE_PERMISSIONS
                        ),
                    }
            else:
                option = {"name": name, "type": _option_type(value), "value": value}
            if name == focused:
                option["focused"] = True
            built.append(option)
        for name, (filename, data, content_type) in (attachments or {}).items():
            payload = self._attachment_payload(
                channel_id, filename, data, content_type, ephemeral=True
            )
            resolved.setdefault("attachments", {})[payload["id"]] = payload
            built.append({"name": name, "type": 11, "value": payload["id"]})
        return built, resolved

    def _command_data(
        self,
        name: str,
        options: dict[str, Any] | None,
        *,
        channel_id: str,
        subcommand: str | None,
        attachments: dict[str, tuple[str, bytes, str]] | None = None,
        focused: str | None = None,
    ) -> dict[str, Any]:
        built, resolved = self._build_options(options, attachments, channel_id, focused)
        if subcommand:
            parts = subcommand.split()
            if len(parts) == 2:  # "group sub"
                built = [
                    {
                        "type": 2,
                        "name": parts[0],
                        "options": [{"type": 1, "name": parts[1], "options": built}],
                    }
                ]
            else:
                built = [{"type": 1, "name": parts[0], "options": built}]
        command_id, guild_id = self._command_id(name, 1)
        data: dict[str, Any] = {"id": command_id, "name": name, "type": 1}
        if built:
            data["options"] = built
        if resolved:
            data["resolved"] = resolved
        if guild_id:
            data["guild_id"] = guild_id
        return data

    async def slash_command(
        self,
        name: str,
        options: dict[str, Any] | None = None,
        *,
        user: str = "alice",
        channel_id: str | None = None,
        subcommand: str | None = None,
        attachments: dict[str, tuple[str, bytes, str]] | None = None,
    ) -> FakeInteraction:
        """Run a slash command as ``user``: sends INTERACTION_CREATE (type 2, data.type 1)."""
        channel_id = channel_id or self.channel_ids[0]
        data = self._command_data(
            name, options, channel_id=channel_id, subcommand=subcommand, attachments=attachments
        )
        interaction, _ = self._new_interaction_payload(APPLICATION_COMMAND, data, user, channel_id)
        return await self._send_interaction(interaction)

    async def autocomplete(
        self,
        name: str,
        options: dict[str, Any],
        focused: str,
        *,
        user: str = "alice",
        channel_id: str | None = None,
        subcommand: str | None = None,
    ) -> FakeInteraction:
        """Type into option ``focused`` of a slash command: an autocomplete interaction (type 4)."""
        if focused not in options:
            raise ValueError(f"focused option {focused!r} must be one of options {sorted(options)}")
        channel_id = channel_id or self.channel_ids[0]
        data = self._command_data(
            name, options, channel_id=channel_id, subcommand=subcommand, focused=focused
        )
        interaction, _ = self._new_interaction_payload(AUTOCOMPLETE, data, user, channel_id)
        return await self._send_interaction(interaction)

    async def message_command(
        self, name: str, target_message_id: str, *, user: str = "alice"
    ) -> FakeInteraction:
        """Run a message context-menu command on a message (type 2, data.type 3)."""
        target = self.messages.get(target_message_id)
        if target is None or target.deleted:
            raise KeyError(f"no message {target_message_id}")
        command_id, guild_id = self._command_id(name, 3)
        data: dict[str, Any] = {
            "id": command_id,
            "name": name,
            "type": 3,
            "target_id": target.id,
            "resolved": {"messages": {target.id: self.message_payload(target, exempt=True)}},
        }
        if guild_id:
            data["guild_id"] = guild_id
        interaction, _ = self._new_interaction_payload(
            APPLICATION_COMMAND, data, user, target.channel_id
        )
        return await self._send_interaction(interaction)

    async def click_button(
        self,
        message_id: str,
        custom_id: str,
        *,
        user: str = "alice",
        values: list[str] | None = None,
    ) -> FakeInteraction:
        """Click a button (or pick ``values`` in a select) on a bot message: type 3 interaction."""
        message = self.messages.get(message_id)
        if message is None or message.deleted:
            raise KeyError(f"no message {message_id}")
        component = next(
            (c for c in _walk_components(message.components) if c.get("custom_id") == custom_id),
            None,
        )
        if component is None:
            ids = [
                c.get("custom_id")
                for c in _walk_components(message.components)
                if c.get("custom_id")
            ]
            raise ValueError(f"message {message_id} has no component {custom_id!r}; it has {ids}")
        if component.get("disabled"):
            raise ValueError(
                f"component {custom_id!r} is disabled; Discord clients cannot click it"
            )
        data: dict[str, Any] = {"custom_id": custom_id, "component_type": int(component["type"])}
        if component.get("id") is not None:
            data["id"] = component["id"]
        if component["type"] != 2:
            data["values"] = list(values or [])
        interaction, payload = self._new_interaction_payload(
            MESSAGE_COMPONENT, data, user, message.channel_id
        )
        payload["message"] = self.message_payload(message, exempt=True)
        interaction.message_id = message.id
        return await self._send_interaction(interaction)

    async def submit_modal(
        self,
        custom_id: str,
        values: dict[str, str],
        *,
        user: str = "alice",
        channel_id: str | None = None,
    ) -> FakeInteraction:
        """Submit a modal the bot opened (type 5): ``values`` maps text input custom_id -> text."""
        opener = next(
            (
                i
                for i in reversed(list(self.interactions.values()))
                if i.modal and i.modal.get("custom_id") == custom_id
            ),
            None,
        )
        modal = opener.modal if opener is not None else None
        components: list[dict[str, Any]] = []
        if modal is None:
            components = [
                {"type": 1, "components": [{"type": 4, "custom_id": key, "value": value}]}
                for key, value in values.items()
            ]
        else:
            known = [
                c.get("custom_id")
                for c in _walk_components(modal.get("components") or [])
                if c.get("custom_id")
            ]
            unknown = set(values) - set(known)
            if unknown:
                raise ValueError(
                    f"modal {custom_id!r} has no inputs {sorted(unknown)}; it has {known}"
                )
            for top in modal.get("components") or []:
                components.append(self._submitted_component(top, values))
        data = {"custom_id": custom_id, "components": components}
        interaction, _ = self._new_interaction_payload(MODAL_SUBMIT, data, user, channel_id)
        interaction.opened_by = opener.id if opener is not None else None
        return await self._send_interaction(interaction)

    def _submitted_component(
        self, component: dict[str, Any], values: dict[str, str]
    ) -> dict[str, Any]:
        submitted: dict[str, Any] = {"type": component["type"]}
        if component.get("id") is not None:
            submitted["id"] = component["id"]
        if component["type"] == 1:
            submitted["components"] = [
                self._submitted_component(c, values) for c in component.get("components", [])
            ]
        elif component["type"] == 18:
            submitted["component"] = self._submitted_component(component["component"], values)
        elif component.get("custom_id"):
            submitted["custom_id"] = component["custom_id"]
            if component["type"] == 4:
                submitted["value"] = values.get(
                    component["custom_id"], component.get("value") or ""
                )
            else:
                submitted["values"] = (
                    [values[component["custom_id"]]] if component["custom_id"] in values else []
                )
        return submitted

    async def user_message(
        self,
        content: str,
        *,
        user: str = "alice",
        channel_id: str | None = None,
        mention_bot: bool = False,
        reply_to: str | None = None,
        reply_ping: bool = True,
        mention_everyone: bool = False,
        attachments: list[tuple[str, bytes, str]] | None = None,
        webhook: bool = False,
    ) -> FakeMessage:
        """``user`` posts a message; MESSAGE_CREATE is dispatched (content blanked like Discord).

        With ``webhook=True`` the message comes from a channel webhook named after ``user``: its
        author is the webhook (id = webhook id, no member), and it carries ``webhook_id``."""
        channel_id = channel_id or self.channel_ids[0]
        await self._wait_ready_for(self._channel(channel_id).get("guild_id"))
        if webhook:
            hook_id = self._ids.next()
            author = {
                "id": hook_id,
                "username": f"{user} (webhook)",
                "discriminator": "0000",
                "avatar": None,
                "global_name": None,
                "bot": True,
            }
            self._webhook_users[hook_id] = author
        else:
            author = self._user(user)
        if mention_everyone and "@everyone" not in content:
            content = f"@everyone {content}"
        if mention_bot:
            content = f"<@{self.bot_user['id']}> {content}"
        mentions = [uid for uid in re.findall(r"<@!?(\d+)>", content) if uid in self._member_roles]
        reference: dict[str, Any] | None = None
        if reply_to is not None:
            referenced = self.messages.get(reply_to)
            if referenced is None or referenced.deleted:
                raise KeyError(f"no message {reply_to} to reply to")
            reference = {
                "type": 0,
                "channel_id": referenced.channel_id,
                "message_id": referenced.id,
                **({"guild_id": referenced.guild_id} if referenced.guild_id else {}),
            }
            if reply_ping and referenced.author_id != author["id"]:
                mentions.append(referenced.author_id)
        message = self._new_message(
            channel_id=channel_id,
            author_id=author["id"],
            content=content,
            message_type=19 if reference else 0,
            message_reference=reference,
            webhook_id=author["id"] if webhook else None,
        )
        message.mention_everyone = mention_everyone
        message.mentions = list(dict.fromkeys(mentions))
        for filename, data, content_type in attachments or []:
            message.attachment_payloads.append(
                self._attachment_payload(channel_id, filename, data, content_type)
            )
            message.attachments.append((filename, data))
        self._notify()
        await self._announce(message, "MESSAGE_CREATE")
        return message
