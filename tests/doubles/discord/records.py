"""What the double records for tests to read (requests, messages, interactions, guilds) and the
errors its handlers raise (answered with Discord's status codes and error bodies)."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tests.doubles.discord.constants import FLAG_EPHEMERAL, FLAG_LOADING


@dataclass
class RecordedRequest:
    """One REST request the double answered."""

    method: str
    path: str  # without the /api/v10 prefix, e.g. "/channels/1/messages"
    query: dict[str, str]
    json: Any  # the JSON body (payload_json of a multipart body), None without a body
    files: list[tuple[str, bytes]]
    status: int
    t: float  # clock() when the request arrived
    raw_response: bytes = field(default=b"", repr=False)  # the body answered, as sent
    headers: dict[str, str] = field(default_factory=dict, repr=False)  # the answer's headers

    @functools.cached_property
    def response(self) -> Any:
        """The JSON body answered (None for 204), decoded when first read."""
        return json.loads(self.raw_response) if self.raw_response else None


@dataclass
class FakeMessage:
    """A message that exists in the double (a user's or the bot's)."""

    id: str
    channel_id: str
    author_id: str
    content: str
    embeds: list[dict[str, Any]] = field(default_factory=list)
    components: list[dict[str, Any]] = field(default_factory=list)
    attachments: list[tuple[str, bytes]] = field(default_factory=list)
    allowed_mentions: dict[str, Any] | None = None
    message_reference: dict[str, Any] | None = None
    flags: int = 0
    interaction_id: str | None = None
    webhook_id: str | None = None
    deleted: bool = False
    created_at: float = 0.0
    edits: list[tuple[float, str]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    # Extras beyond the brief.
    guild_id: str | None = None
    type: int = 0
    mentions: list[str] = field(default_factory=list)  # ids of users the message mentions/pings
    mention_everyone: bool = False
    reactions: list[str] = field(default_factory=list)  # emoji the bot added
    edited_timestamp: str | None = None
    attachment_payloads: list[dict[str, Any]] = field(default_factory=list, repr=False)

    @property
    def is_ephemeral(self) -> bool:
        """Whether the EPHEMERAL flag (64) is set."""
        return bool(self.flags & FLAG_EPHEMERAL)

    @property
    def is_loading(self) -> bool:
        """Whether this is a deferred ('thinking') response not yet filled (flag 128)."""
        return bool(self.flags & FLAG_LOADING)


@dataclass
class FakeInteraction:
    """An interaction the double sent to the bot, and how the bot answered it."""

    id: str
    token: str
    type: int
    created_at: float
    callback_type: int | None = None
    callback_at: float | None = None
    callback_body: dict[str, Any] | None = None
    original_message_id: str | None = None
    followup_ids: list[str] = field(default_factory=list)
    choices: list[dict[str, Any]] | None = None
    modal: dict[str, Any] | None = None
    # Extras beyond the brief.
    deferred: bool = False  # answered with type 5 (a 'thinking' original message)
    channel_id: str | None = None
    user_id: str | None = None
    message_id: str | None = None  # the message a component interaction came from
    opened_by: str | None = None  # a modal submit: the interaction that opened the modal
    payload: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass
class FakeGuild:
    """A guild the bot is in: its roles and which roles each member has."""

    id: str
    name: str
    roles: list[dict[str, Any]]
    member_roles: dict[str, list[str]]  # user id -> role ids (every member, the bot included)
    joined_at: str
    admin_role_id: str
    bot_role_id: str


class ApiError(Exception):
    """An error answer in Discord's shape: {"code", "message", "errors"?}."""

    def __init__(
        self, status: int, code: int, message: str, errors: dict[str, Any] | None = None
    ) -> None:
        super().__init__(f"{status} {code} {message}")
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors

    def body(self) -> dict[str, Any]:
        """The JSON body Discord answers with."""
        body: dict[str, Any] = {"message": self.message, "code": self.code}
        if self.errors:
            body["errors"] = self.errors
        return body


class RateLimitedError(Exception):
    """A 429 answer for an exhausted bucket."""

    def __init__(self, retry_after: float, limit: int, bucket: str, scope: str = "user") -> None:
        super().__init__(f"rate limited for {retry_after:.3f}s")
        self.retry_after = retry_after
        self.limit = limit
        self.bucket = bucket
        self.scope = scope  # "user" (a bucket of this bot) or "global" (the 50 a second)


def _form_error(path: Iterable[str | int], code: str, message: str) -> ApiError:
    """A 400 50035 Invalid Form Body with one field error."""
    return ApiError(400, 50035, "Invalid Form Body", _errors_at(path, code, message))


def _errors_at(path: Iterable[str | int], code: str, message: str) -> dict[str, Any]:
    errors: dict[str, Any] = {}
    _add_error(errors, path, code, message)
    return errors


def _add_error(errors: dict[str, Any], path: Iterable[str | int], code: str, message: str) -> None:
    node = errors
    for key in path:
        node = node.setdefault(str(key), {})
    node.setdefault("_errors", []).append({"code": code, "message": message})
