"""Messages: payloads as Discord sends them (REST and Gateway, content blanked without the
MESSAGE_CONTENT intent), creating, editing and validating them, and announcing the changes."""

from __future__ import annotations

import re
from typing import Any

from jsonschema import Draft202012Validator

from tests.doubles.discord.constants import (
    APPLICATION_COMMAND,
    ATTACHMENT_SIZE_LIMIT,
    FLAG_COMPONENTS_V2,
    FLAG_EPHEMERAL,
    FLAG_LOADING,
    FLAG_SUPPRESS_EMBEDS,
    FLAG_SUPPRESS_NOTIFICATIONS,
    INTENT_DIRECT_MESSAGES,
    INTENT_GUILD_MESSAGES,
    INTENT_MESSAGE_CONTENT,
    MODAL_SUBMIT,
    THREAD_TYPES,
    VIEW_CHANNEL,
)
from tests.doubles.discord.helpers import _clone, _now_iso, _numbered, _snowflake_iso
from tests.doubles.discord.records import ApiError, FakeInteraction, FakeMessage, _errors_at
from tests.doubles.discord.schemas import _merge_errors
from tests.doubles.discord.validation import _message_limit_errors


class MessagesMixin:
    """Message payloads and their effects (state: `messages`, `_files`)."""

    # ------------------------------------------------------------------ payloads

    def _attachment_payload(
        self,
        channel_id: str,
        filename: str,
        data: bytes,
        content_type: str,
        *,
        ephemeral: bool = False,
    ) -> dict[str, Any]:
        attachment_id = self._ids.next()
        self._files[attachment_id] = (filename, data, content_type)
        url = f"{self.base_url}/attachments/{channel_id}/{attachment_id}/{filename}"
        payload: dict[str, Any] = {
            "id": attachment_id,
            "filename": filename,
            "size": len(data),
            "url": url,
            "proxy_url": url,
            "content_type": content_type,
            "content_scan_version": 0,
        }
        if ephemeral:
            payload["ephemeral"] = True
        return payload

    def message_payload(
        self, message: FakeMessage, *, exempt: bool = False, nested: bool = False
    ) -> dict[str, Any]:
        """The message object as Discord shows it to the bot.

        Content, attachments, embeds and components are blanked like Discord does for a bot
        without the MESSAGE_CONTENT intent, unless ``exempt`` (messages inside interactions).
        """
        blank = not exempt and self._blanked_for_bot(message)
        author = _clone(self._user_by_id(message.author_id))
        payload: dict[str, Any] = {
            "type": message.type,
            "content": "" if blank else message.content,
            "mentions": [_clone(self._user_by_id(uid)) for uid in message.mentions],
            "mention_roles": [],
            "attachments": [] if blank else _clone(message.attachment_payloads),
            "embeds": [] if blank else _clone(message.embeds),
            "timestamp": _snowflake_iso(message.id),
            "edited_timestamp": message.edited_timestamp,
            "flags": message.flags,
            "components": [] if blank else _clone(message.components),
            "id": message.id,
            "channel_id": message.channel_id,
            "author": author,
            "pinned": False,
            "mention_everyone": message.mention_everyone,
            "tts": False,
        }
        if message.webhook_id:
            payload["webhook_id"] = message.webhook_id
            if message.webhook_id == self.application_id:  # the application's own webhook
                payload["application_id"] = self.application_id
        if message.interaction_id:
            interaction = self.interactions.get(message.interaction_id)
            if interaction is not None:
                user = _clone(self._user_by_id(interaction.user_id or ""))
                name = str((interaction.payload.get("data") or {}).get("name", ""))
                payload["interaction_metadata"] = {
                    "id": interaction.id,
                    "type": interaction.type,
                    "user": user,
                    "authorizing_integration_owners": interaction.payload.get(
                        "authorizing_integration_owners", {}
                    ),
                }
                if interaction.type == APPLICATION_COMMAND:
                    payload["interaction_metadata"]["name"] = name
                    payload["interaction"] = {
                        "id": interaction.id,
                        "type": interaction.type,
                        "name": name,
                        "user": user,
                    }
                if interaction.message_id:
                    payload["interaction_metadata"]["interacted_message_id"] = (
                        interaction.message_id
                    )
                if interaction.type == MODAL_SUBMIT:  # and the interaction that opened it
                    payload["interaction_metadata"]["triggering_interaction_metadata"] = (
                        self._opener_metadata(interaction)
                    )
        if message.message_reference:
            payload["message_reference"] = dict(message.message_reference)
        if message.message_reference and not nested:  # Discord resolves one level only
            referenced = self.messages.get(str(message.message_reference.get("message_id")))
            if referenced is None or referenced.deleted:
                payload["referenced_message"] = None
            else:
                payload["referenced_message"] = self.message_payload(
                    referenced, exempt=exempt, nested=True
                )
        thread = self.channels.get(message.id)
        if thread is not None and thread["type"] in THREAD_TYPES:
            payload["thread"] = _clone(thread)
        return payload

    def _opener_metadata(self, submitted: FakeInteraction) -> dict[str, Any]:
        """The metadata of the interaction that opened a submitted modal (a command's or a
        component's; itself for a modal a test submitted without opening it)."""
        opener = self.interactions.get(submitted.opened_by or "", submitted)
        user = _clone(self._user_by_id(opener.user_id or ""))
        metadata: dict[str, Any] = {
            "id": opener.id,
            "type": opener.type if opener.type != MODAL_SUBMIT else APPLICATION_COMMAND,
            "user": user,
            "authorizing_integration_owners": opener.payload.get(
                "authorizing_integration_owners", {}
            ),
        }
        if metadata["type"] == APPLICATION_COMMAND:
            metadata["name"] = str((opener.payload.get("data") or {}).get("name", ""))
        if opener.message_id:
            metadata["interacted_message_id"] = opener.message_id
        return metadata

    def _blanked_for_bot(self, message: FakeMessage) -> bool:
        """Whether Discord hides this message's content from the bot (no MESSAGE_CONTENT intent)."""
        if self._intents() & INTENT_MESSAGE_CONTENT:
            return False
        if message.author_id == self.bot_user["id"]:
            return False
        if message.guild_id is None:  # DMs are exempt
            return False
        return self.bot_user["id"] not in message.mentions

    def _gateway_message(self, message: FakeMessage) -> dict[str, Any]:
        """A MESSAGE_CREATE/UPDATE payload: guild_id and a partial member for guild messages."""
        payload = self.message_payload(message)
        if message.guild_id is not None:
            payload["guild_id"] = message.guild_id
            if message.webhook_id is None or message.interaction_id is not None:
                payload["member"] = self._member(
                    message.author_id, with_user=False, guild_id=message.guild_id
                )
            for user in payload["mentions"]:
                if user["id"] in self.guilds[message.guild_id].member_roles:
                    user["member"] = self._member(
                        user["id"], with_user=False, guild_id=message.guild_id
                    )
        return payload

    def _channel_payload(self, channel_id: str) -> dict[str, Any]:
        return _clone(self.channels[channel_id])

    # ------------------------------------------------------------------ messages

    def _new_message(
        self,
        *,
        channel_id: str,
        author_id: str,
        content: str = "",
        body: dict[str, Any] | None = None,
        files: list[tuple[str, bytes, str]] | None = None,
        flags: int = 0,
        message_type: int = 0,
        interaction_id: str | None = None,
        webhook_id: str | None = None,
        message_reference: dict[str, Any] | None = None,
    ) -> FakeMessage:
        """Store a new message; ``body`` (a create body) sets content, files and mentions."""
        message = FakeMessage(
            id=self._ids.next(),
            channel_id=channel_id,
            author_id=author_id,
            content=content,
            flags=flags,
            interaction_id=interaction_id,
            webhook_id=webhook_id,
            created_at=self.clock(),
            guild_id=self.channels[channel_id].get("guild_id"),
            type=message_type,
            message_reference=message_reference,
        )
        if body is not None:
            self._apply_body(message, body, files or [], creating=True)
            message.history.append(_clone(body))
            message.allowed_mentions = _clone(body.get("allowed_mentions"))
        self.messages[message.id] = message
        self.channels[channel_id]["last_message_id"] = message.id
        self._notify()
        return message

    def _apply_body(
        self,
        message: FakeMessage,
        body: dict[str, Any],
        files: list[tuple[str, bytes, str]],
        *,
        creating: bool,
    ) -> None:
        """Apply a create/edit body (content, embeds, components, attachments, mentions)."""
        if "content" in body:
            message.content = body["content"] or ""
        if "embeds" in body:
            message.embeds = [{"type": "rich", **e} for e in body["embeds"] or []]
        if "components" in body:
            message.components = _numbered(_clone(body["components"] or []))
        if creating and body.get("flags"):
            message.flags |= int(body["flags"]) & (
                FLAG_SUPPRESS_EMBEDS
                | FLAG_EPHEMERAL
                | FLAG_SUPPRESS_NOTIFICATIONS
                | FLAG_COMPONENTS_V2
            )
        elif not creating and body.get("flags") is not None:
            keep = message.flags & ~FLAG_SUPPRESS_EMBEDS
            message.flags = keep | (int(body["flags"]) & FLAG_SUPPRESS_EMBEDS)
        self._apply_attachments(message, body, files)
        if "content" in body or creating:
            message.mentions, message.mention_everyone = self._resolve_mentions(
                message, body.get("allowed_mentions")
            )

    def _apply_attachments(
        self, message: FakeMessage, body: dict[str, Any], files: list[tuple[str, bytes, str]]
    ) -> None:
        kept_payloads: list[dict[str, Any]] = []
        kept_files: list[tuple[str, bytes]] = []
        listed = body.get("attachments")
        if listed is None:  # keep every existing attachment, append the new files
            kept_payloads = list(message.attachment_payloads)
            kept_files = list(message.attachments)
            new = list(range(len(files)))
        else:
            existing = {
                p["id"]: (p, f)
                for p, f in zip(message.attachment_payloads, message.attachments, strict=True)
            }
            new = []
            for item in listed:
                key = str(item.get("id"))
                if key in existing:
                    kept_payloads.append(existing[key][0])
                    kept_files.append(existing[key][1])
                elif key.isdigit() and int(key) < len(files):
                    new.append(int(key))
            listed_indexes = set(new)
            new += [i for i in range(len(files)) if i not in listed_indexes]
        for index in new:
            filename, data, content_type = files[index]
            payload = self._attachment_payload(
                message.channel_id, filename, data, content_type, ephemeral=message.is_ephemeral
            )
            for item in listed or []:
                if str(item.get("id")) == str(index) and item.get("description"):
                    payload["description"] = item["description"]
            kept_payloads.append(payload)
            kept_files.append((filename, data))
        message.attachment_payloads = kept_payloads
        message.attachments = kept_files

    def _resolve_mentions(
        self, message: FakeMessage, allowed: dict[str, Any] | None
    ) -> tuple[list[str], bool]:
        """Who a bot message pings, applying ``allowed_mentions`` like Discord."""
        content = message.content
        in_content = [
            uid for uid in re.findall(r"<@!?(\d+)>", content) if uid in self._member_roles
        ]
        everyone = "@everyone" in content or "@here" in content
        replied: str | None = None
        if message.message_reference:
            referenced = self.messages.get(str(message.message_reference.get("message_id")))
            if referenced is not None:
                replied = referenced.author_id
        if allowed is None:
            users, ping_everyone, ping_replied = in_content, everyone, True
        else:
            parse = allowed.get("parse") or []
            listed = {str(u) for u in allowed.get("users") or []}
            users = [u for u in in_content if "users" in parse or u in listed]
            ping_everyone = everyone and "everyone" in parse
            ping_replied = bool(allowed.get("replied_user", False))
        mentions = list(dict.fromkeys(users))
        if replied is not None and ping_replied and replied not in (message.author_id, *mentions):
            mentions.append(replied)
        return mentions, ping_everyone

    def _validate_message(
        self,
        body: Any,
        validator: Draft202012Validator | None,
        files: list[tuple[str, bytes, str]],
        *,
        existing: FakeMessage | None = None,
    ) -> dict[str, Any]:
        """Validate a create/edit body; raise ApiError like Discord. Returns the body."""
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise ApiError(
                400,
                50035,
                "Invalid Form Body",
                _errors_at(
                    [], "MODEL_TYPE_CONVERT", "Only dictionaries may be used in a ModelType"
                ),
            )
        errors = _message_limit_errors(body)
        _merge_errors(errors, self._schema_errors(validator, body))
        if errors:
            raise ApiError(400, 50035, "Invalid Form Body", errors)
        if sum(len(data) for _, data, _ in files) > ATTACHMENT_SIZE_LIMIT:
            raise ApiError(413, 40005, "Request entity too large")
        if not self._would_have_content(body, files, existing):
            raise ApiError(400, 50006, "Cannot send an empty message")
        return body

    @staticmethod
    def _would_have_content(
        body: dict[str, Any], files: list[tuple[str, bytes, str]], existing: FakeMessage | None
    ) -> bool:
        def pick(key: str, current: Any) -> Any:
            return body.get(key, current)

        content = pick("content", existing.content if existing else "")
        embeds = pick("embeds", existing.embeds if existing else [])
        components = pick("components", existing.components if existing else [])
        attachments = pick("attachments", existing.attachment_payloads if existing else [])
        return bool(
            (content or "").strip()  # whitespace only is as empty as nothing, to Discord
            or embeds
            or components
            or attachments
            or files
            or body.get("poll")
            or body.get("sticker_ids")
        )

    def _record_edit(
        self, message: FakeMessage, body: dict[str, Any], *, budgeted: bool = True
    ) -> None:
        """Record an applied edit (``budgeted`` is kept for callers; rate limits are counted per
        bucket when a request arrives)."""
        now = self.clock()
        message.edits.append((now, message.content))
        message.history.append(_clone(body))
        if "allowed_mentions" in body:
            message.allowed_mentions = _clone(body["allowed_mentions"])
        message.edited_timestamp = _now_iso()
        message.flags &= ~FLAG_LOADING
        self._notify()

    async def _announce(self, message: FakeMessage, event: str) -> None:
        """MESSAGE_CREATE/UPDATE to the bot (never for ephemeral messages)."""
        if message.is_ephemeral:
            return
        if message.guild_id and not (
            self.channel_permissions(self.bot_user["id"], message.channel_id) & VIEW_CHANNEL
        ):
            return  # Discord sends no events of channels the bot cannot see
        intent = INTENT_GUILD_MESSAGES if message.guild_id else INTENT_DIRECT_MESSAGES
        await self._emit(event, self._gateway_message(message), intent=intent)

    async def _announce_delete(self, message: FakeMessage) -> None:
        if message.is_ephemeral:
            return
        data: dict[str, Any] = {"id": message.id, "channel_id": message.channel_id}
        if message.guild_id:
            data["guild_id"] = message.guild_id
        intent = INTENT_GUILD_MESSAGES if message.guild_id else INTENT_DIRECT_MESSAGES
        await self._emit("MESSAGE_DELETE", data, intent=intent)
