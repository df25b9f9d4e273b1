"""REST handlers for interactions: the callback (3 s to acknowledge), follow-ups and the
@original response, all under the interaction token (15 min lifetime)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tests.doubles.discord.constants import (
    ALLOWED_CALLBACKS,
    APPLICATION_COMMAND,
    ATTACHMENT_SIZE_LIMIT,
    CALLBACK_SCHEMAS,
    FLAG_EPHEMERAL,
    FLAG_LOADING,
)
from tests.doubles.discord.helpers import _clone, _json_response, _truthy
from tests.doubles.discord.records import ApiError, FakeInteraction, FakeMessage, _form_error
from tests.doubles.discord.routes import _Request
from tests.doubles.discord.schemas import _merge_errors, _request_validator, _schema_validator
from tests.doubles.discord.validation import _message_limit_errors


class WebhooksMixin:
    """REST route handlers under an interaction token (state: `interactions`, `_by_token`)."""

    # ------------------------------------------------------------------ REST: interactions

    async def _callback(self, req: _Request) -> web.Response:
        interaction = self.interactions.get(req.params["interaction_id"])
        if interaction is None or interaction.token != req.params["token"]:
            raise ApiError(404, 10062, "Unknown interaction")
        if interaction.callback_type is not None:
            raise ApiError(400, 40060, "Interaction has already been acknowledged.")
        if self.clock() - interaction.created_at > self.ack_timeout:
            raise ApiError(404, 10062, "Unknown interaction")
        body = req.body
        if not isinstance(body, dict) or not isinstance(body.get("type"), int):
            raise _form_error(["type"], "BASE_TYPE_REQUIRED", "This field is required")
        callback_type = body["type"]
        schema = CALLBACK_SCHEMAS.get(callback_type)
        if schema is None or callback_type not in ALLOWED_CALLBACKS[interaction.type]:
            raise _form_error(
                ["type"], "INTERACTION_RESPONSE_TYPE_INVALID", "Invalid interaction response type"
            )
        errors = self._schema_errors(_schema_validator(schema), body)
        data = body.get("data") or {}
        if callback_type in (4, 7):
            _merge_errors(errors, {"data": e} if (e := _message_limit_errors(data)) else {})
        if errors:
            raise ApiError(400, 50035, "Invalid Form Body", errors)
        if (
            callback_type in (4, 7)
            and req.files
            and sum(len(d) for _, d, _ in req.files) > ATTACHMENT_SIZE_LIMIT
        ):
            raise ApiError(413, 40005, "Request entity too large")

        message: FakeMessage | None = None
        if callback_type == 4:
            if not self._would_have_content(data, req.files, None):
                raise ApiError(400, 50006, "Cannot send an empty message")
            message = self._new_message(
                channel_id=interaction.channel_id or "",
                author_id=self.bot_user["id"],
                content="",
                body=data,
                files=req.files,
                message_type=self._response_message_type(interaction),
                interaction_id=interaction.id,
                webhook_id=self.application_id,
            )
            interaction.original_message_id = message.id
            await self._announce(message, "MESSAGE_CREATE")
        elif callback_type == 5:
            flags = FLAG_LOADING | (int(data.get("flags") or 0) & FLAG_EPHEMERAL)
            message = self._new_message(
                channel_id=interaction.channel_id or "",
                author_id=self.bot_user["id"],
                content="",
                flags=flags,
                message_type=self._response_message_type(interaction),
                interaction_id=interaction.id,
                webhook_id=self.application_id,
            )
            interaction.original_message_id = message.id
            interaction.deferred = True
            await self._announce(message, "MESSAGE_CREATE")
        elif callback_type in (6, 7):
            if interaction.message_id is None:
                raise _form_error(
                    ["type"],
                    "INTERACTION_RESPONSE_TYPE_INVALID",
                    "Invalid interaction response type",
                )
            message = self.messages[interaction.message_id]
            if callback_type == 7 and not self._would_have_content(data, req.files, message):
                raise ApiError(400, 50006, "Cannot send an empty message")
            interaction.original_message_id = message.id
            if callback_type == 7:
                self._apply_body(message, data, req.files, creating=False)
                self._record_edit(message, data, budgeted=False)
                await self._announce(message, "MESSAGE_UPDATE")
        elif callback_type == 8:
            interaction.choices = _clone(data.get("choices") or [])
        elif callback_type == 9:
            interaction.modal = _clone(data)

        interaction.callback_type = callback_type
        interaction.callback_at = self.clock()
        interaction.callback_body = _clone(body)
        self._notify()
        if not _truthy(req.query.get("with_response")):
            return web.Response(status=204)
        answer: dict[str, Any] = {"interaction": {"id": interaction.id, "type": interaction.type}}
        if message is not None:
            answer["interaction"].update(
                {
                    "response_message_id": message.id,
                    "response_message_loading": message.is_loading,
                    "response_message_ephemeral": message.is_ephemeral,
                }
            )
            if callback_type in (4, 7):  # a deferral's answer carries no resource
                answer["resource"] = {
                    "type": callback_type,
                    "message": self.message_payload(message),
                }
        return _json_response(answer)

    @staticmethod
    def _response_message_type(interaction: FakeInteraction) -> int:
        if interaction.type == APPLICATION_COMMAND:
            command_type = int((interaction.payload.get("data") or {}).get("type", 1))
            return 20 if command_type == 1 else 23
        return 19

    def _webhook_interaction(self, req: _Request) -> FakeInteraction:
        """The interaction behind /webhooks/{app}/{token}, with Discord's errors."""
        if req.params["app_id"] != self.application_id:
            raise ApiError(404, 10015, "Unknown Webhook")
        interaction = self._interaction_by_token(req.params["token"])
        if (
            interaction is None
            or self.clock() - interaction.created_at > self.interaction_token_ttl
        ):
            raise ApiError(401, 50027, "Invalid Webhook Token")
        if interaction.callback_type is None:
            raise ApiError(404, 10015, "Unknown Webhook")
        return interaction

    def _interaction_by_token(self, token: str) -> FakeInteraction | None:
        """The interaction in `interactions` with this token: by index (a scan of thousands of
        interactions per request cost the bench more than anything else), by scan for those a
        test put into `interactions` itself."""
        found = self._by_token.get(token)
        if found is None or self.interactions.get(found.id) is not found:
            found = next((i for i in self.interactions.values() if i.token == token), None)
            if found is not None:
                self._by_token[token] = found
        return found

    def _webhook_message(self, interaction: FakeInteraction, message_id: str) -> FakeMessage:
        if message_id == "@original":
            if interaction.original_message_id is None:
                raise ApiError(404, 10008, "Unknown Message")
            message_id = interaction.original_message_id
        message = self.messages.get(message_id)
        ours = message is not None and (
            message.interaction_id == interaction.id
            or message.id == interaction.original_message_id
        )
        if message is None or message.deleted or not ours:
            raise ApiError(404, 10008, "Unknown Message")
        return message

    async def _followup(self, req: _Request) -> web.Response:
        interaction = self._webhook_interaction(req)
        body = self._validate_message(
            req.body,
            _request_validator("/webhooks/{webhook_id}/{webhook_token}", "post"),
            req.files,
        )
        if not int(body.get("flags") or 0) & FLAG_EPHEMERAL:
            self._refuse_archived_thread(interaction.channel_id or "")
        original = self.messages.get(interaction.original_message_id or "")
        filling = original is not None and original.is_loading and not original.deleted
        if filling and interaction.callback_type == 5:
            # The first followup after a deferred (type 5) answer fills the 'thinking' message,
            # unless that was deleted: then the followup is a message of its own.
            assert original is not None
            self.deprecated_uses.append(
                "a follow-up filled the deferred response (edit @original instead)"
            )
            message = original
            self._apply_body(message, body, req.files, creating=False)
            self._record_edit(message, body, budgeted=False)
            interaction.followup_ids.append(message.id)
            await self._announce(message, "MESSAGE_UPDATE")
        else:
            message = self._new_message(
                channel_id=interaction.channel_id or "",
                author_id=self.bot_user["id"],
                content="",
                body=body,
                files=req.files,
                message_type=0,
                interaction_id=interaction.id,
                webhook_id=self.application_id,
            )
            interaction.followup_ids.append(message.id)
            await self._announce(message, "MESSAGE_CREATE")
        self._notify()
        if not _truthy(req.query.get("wait")):
            return web.Response(status=204)
        return _json_response(self.message_payload(message))

    async def _get_webhook_message(self, req: _Request) -> web.Response:
        interaction = self._webhook_interaction(req)
        message = self._webhook_message(interaction, req.params["message_id"])
        return _json_response(self.message_payload(message))

    async def _edit_webhook_message(self, req: _Request) -> web.Response:
        interaction = self._webhook_interaction(req)
        message = self._webhook_message(interaction, req.params["message_id"])
        spec_path = "/webhooks/{webhook_id}/{webhook_token}/messages/{message_id}"
        body = self._validate_message(
            req.body, _request_validator(spec_path, "patch"), req.files, existing=message
        )
        if not message.is_ephemeral:
            self._refuse_archived_thread(message.channel_id)
        self._apply_body(message, body, req.files, creating=False)
        self._record_edit(message, body)
        await self._announce(message, "MESSAGE_UPDATE")
        return _json_response(self.message_payload(message))

    async def _delete_webhook_message(self, req: _Request) -> web.Response:
        interaction = self._webhook_interaction(req)
        message = self._webhook_message(interaction, req.params["message_id"])
        message.deleted = True
        self._notify()
        await self._announce_delete(message)
        return web.Response(status=204)
