"""A test double of Discord (REST API v10 + Gateway) that a real discord.py bot talks to.

`FakeDiscord` is an aiohttp server on 127.0.0.1 (ephemeral port). It serves the REST API under
``/api/v10``, the Gateway websocket at ``/`` and attachment downloads under ``/attachments/``.
Point a real bot at it by patching two public class attributes (pytest ``monkeypatch``)::

    monkeypatch.setattr(discord.http.Route, "BASE", fake.api_base)
    gateway = yarl.URL(fake.gateway_url)
    monkeypatch.setattr(discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY", gateway)

It behaves like the real service where a bot can tell: status codes and error bodies, message
limits (request bodies are also validated against Discord's own OpenAPI request schemas in
``tests/data/discord-openapi.json``, and every JSON answer against its response schemas: an
answer that breaks them is a bug of the double, kept in `server_errors`), the interaction 3 s
acknowledgement window (counted from when the double sent the interaction) and the 15 min token
lifetime, and the MESSAGE_CONTENT privileged intent (content of guild messages is blanked for a
bot without it unless the message mentions the bot). Tests drive users' actions
(`slash_command`, `user_message`, `click_button`, ...) and assert on what the bot did through
`requests`, `messages` and `interactions`.

As strict as Discord: rate limits counted per bucket with X-RateLimit headers and real 429s
(kept in `rate_limited`): message creates and edits share each channel's bucket
(`edit_budget`, alias `channel_budget`, 5 per 5 s), interaction follow-ups and their edits the
webhook-and-token bucket (`webhook_budget`, 5 per 2 s), and the bot's global 50 requests a second
(`global_budget`; interaction endpoints exempt) answers ``"global": true`` 429s. Channel
permission overwrites (`set_overwrite`, computed like Discord in `channel_permissions`, which
also feeds interactions' ``member.permissions`` and ``app_permissions``) refuse sends, replies,
edits, typing and thread creation with 403 50013 (50001 without View Channel). Whitespace-only
content is empty (50006); a reply to a deleted message is 50035 "Unknown message"; archived
threads refuse sends and edits (50083); ``allowed_mentions`` may not both parse and list users or
roles; components follow Discord's rules (unique custom ids, lengths, row width, select values);
application commands are validated as a whole (names, descriptions, options, order,
autocomplete, duplicates, 8,000 characters). The Gateway requires heartbeats
(`heartbeat_interval`; a silent connection is closed with 4009) and compresses with zlib-stream
when asked; `gateway_latency` and `rest_latency` delay the wire.

Also like Discord: the bot gets MESSAGE_CREATE/UPDATE/DELETE for its own (non-ephemeral)
messages, the first followup after a deferred answer fills the 'thinking' message, REST history
is blanked like the Gateway, RESUME replays missed events, and a clean close (1000) ends the
session. Sharding works like Discord's: IDENTIFY may carry ``shard: [shard_id, num_shards]``
(echoed in READY), each session gets READY and GUILD_CREATE for the guilds of its shard only
(``(guild_id >> 22) % num_shards == shard_id``; see `shard_of`), a guild's events go to the newest
session of its shard and DMs to shard 0's, and ``GET /gateway/bot`` recommends
`recommended_shards`. `add_guild` adds guilds (``shard=`` picks an id on a given shard). A bug in
the double itself is answered with HTTP 418 (so discord.py fails fast instead
of retrying a 5xx) and kept in `server_errors`; fixtures should assert that list is empty.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import hashlib
import inspect
import json
import math
import mimetypes
import re
import secrets
import time
import traceback
import zlib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import BodyPartReader, WSMsgType, web
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

OPENAPI_PATH = Path(__file__).resolve().parent.parent / "data" / "discord-openapi.json"
API_PREFIX = "/api/v10"
DISCORD_EPOCH_MS = 1_420_070_400_000
ATTACHMENT_SIZE_LIMIT = 10 * 1024 * 1024  # non-boosted guild upload limit (10 MiB)

# Permission bits (https://discord.com/developers/docs/topics/permissions).
CREATE_INSTANT_INVITE = 1 << 0
ADMINISTRATOR = 1 << 3
MANAGE_CHANNELS = 1 << 4
MANAGE_GUILD = 1 << 5
ADD_REACTIONS = 1 << 6
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
MANAGE_MESSAGES = 1 << 13
EMBED_LINKS = 1 << 14
ATTACH_FILES = 1 << 15
READ_MESSAGE_HISTORY = 1 << 16
MENTION_EVERYONE = 1 << 17
USE_EXTERNAL_EMOJIS = 1 << 18
CONNECT = 1 << 20
SPEAK = 1 << 21
CHANGE_NICKNAME = 1 << 26
USE_APPLICATION_COMMANDS = 1 << 31
CREATE_PUBLIC_THREADS = 1 << 35
CREATE_PRIVATE_THREADS = 1 << 36
SEND_MESSAGES_IN_THREADS = 1 << 38
ALL_PERMISSIONS = (1 << 53) - 1  # what Discord reports for an administrator

EVERYONE_PERMISSIONS = (
    CREATE_INSTANT_INVITE
    | ADD_REACTIONS
    | VIEW_CHANNEL
    | SEND_MESSAGES
    | EMBED_LINKS
    | ATTACH_FILES
    | READ_MESSAGE_HISTORY
    | USE_EXTERNAL_EMOJIS
    | CONNECT
    | SPEAK
    | CHANGE_NICKNAME
    | USE_APPLICATION_COMMANDS
    | CREATE_PUBLIC_THREADS
    | CREATE_PRIVATE_THREADS
    | SEND_MESSAGES_IN_THREADS
)
ADMIN_ROLE_PERMISSIONS = ADMINISTRATOR | MANAGE_GUILD | MANAGE_MESSAGES | MANAGE_CHANNELS
BOT_ROLE_PERMISSIONS = EVERYONE_PERMISSIONS  # a typical invite: no moderation rights

# Gateway intents.
INTENT_GUILDS = 1 << 0
INTENT_GUILD_MEMBERS = 1 << 1
INTENT_GUILD_PRESENCES = 1 << 8
INTENT_GUILD_MESSAGES = 1 << 9
INTENT_DIRECT_MESSAGES = 1 << 12
INTENT_MESSAGE_CONTENT = 1 << 15
PRIVILEGED_INTENTS = INTENT_GUILD_MEMBERS | INTENT_GUILD_PRESENCES | INTENT_MESSAGE_CONTENT

# Message flags.
FLAG_SUPPRESS_EMBEDS = 1 << 2
FLAG_EPHEMERAL = 1 << 6
FLAG_LOADING = 1 << 7
FLAG_SUPPRESS_NOTIFICATIONS = 1 << 12
FLAG_COMPONENTS_V2 = 1 << 15

# Channel types.
GUILD_TEXT = 0
DM = 1
PUBLIC_THREAD = 11
PRIVATE_THREAD = 12
THREAD_TYPES = (10, PUBLIC_THREAD, PRIVATE_THREAD)

# Interaction types and the callback types Discord accepts for each.
PING, APPLICATION_COMMAND, MESSAGE_COMPONENT, AUTOCOMPLETE, MODAL_SUBMIT = 1, 2, 3, 4, 5
ALLOWED_CALLBACKS: dict[int, set[int]] = {
    APPLICATION_COMMAND: {4, 5, 9},
    MESSAGE_COMPONENT: {4, 5, 6, 7, 9},
    AUTOCOMPLETE: {8},
    MODAL_SUBMIT: {4, 5, 6, 7},
}
CALLBACK_SCHEMAS = {
    4: "CreateMessageInteractionCallbackRequest",
    5: "CreateMessageInteractionCallbackRequest",
    6: "UpdateMessageInteractionCallbackRequest",
    7: "UpdateMessageInteractionCallbackRequest",
    8: "ApplicationCommandAutocompleteCallbackRequest",
    9: "ModalInteractionCallbackRequest",
}

RATE_LIMITED_BODY_MESSAGE = "You are being rate limited."

# Rate limits as Discord counts them (https://discord.com/developers/docs/topics/rate-limits):
# message creates and edits in a channel share that channel's bucket (5 per 5 s, the figure
# Discord's headers show for it); interaction follow-ups and their edits (@original included)
# share the webhook-and-token bucket (5 per 2 s, like any webhook); on top, a bot makes at most
# 50 requests a second in all, interaction endpoints exempt ("global": true 429s).
CHANNEL_MESSAGE_BUDGET = (5, 5.0)
INTERACTION_WEBHOOK_BUDGET = (5, 2.0)
GLOBAL_BUDGET = (50, 1.0)
CHANNEL_MESSAGE_ROUTES = frozenset(
    {
        ("POST", "/channels/{channel_id}/messages"),
        ("PATCH", "/channels/{channel_id}/messages/{message_id}"),
    }
)
INTERACTION_WEBHOOK_ROUTES = frozenset(
    {
        ("POST", "/webhooks/{app_id}/{token}"),
        ("PATCH", "/webhooks/{app_id}/{token}/messages/{message_id}"),
        ("DELETE", "/webhooks/{app_id}/{token}/messages/{message_id}"),
    }
)


# --------------------------------------------------------------------------- records


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


# --------------------------------------------------------------------------- OpenAPI validation


@functools.cache
def _openapi() -> dict[str, Any]:
    """Discord's OpenAPI document, loaded once per process.

    Snowflakes are accepted as integers too (the real API does, and discord.py sends
    ``attachments[].id`` and ``message_reference.message_id`` as integers).
    """
    spec: dict[str, Any] = json.loads(OPENAPI_PATH.read_text(encoding="utf-8"))
    spec["components"]["schemas"]["SnowflakeType"] = {
        "anyOf": [
            {"type": "string", "pattern": "^(0|[1-9][0-9]*)$"},
            {"type": "integer", "minimum": 0},
        ]
    }
    return spec


@functools.cache
def _request_validator(path: str, method: str) -> Draft202012Validator | None:
    """A validator for the JSON request body of one OpenAPI operation (None without one)."""
    spec = _openapi()
    operation = spec["paths"].get(path, {}).get(method.lower(), {})
    content = operation.get("requestBody", {}).get("content", {})
    schema = content.get("application/json", {}).get("schema")
    if schema is None:
        return None
    return Draft202012Validator({**schema, "components": spec["components"]})


@functools.cache
def _spec_paths() -> list[tuple[re.Pattern[str], str]]:
    """Each OpenAPI path as a regex over real paths, literal segments (``@me``, ``@original``)
    tried before parameters."""
    table: list[tuple[int, re.Pattern[str], str]] = []
    for spec_path in _openapi()["paths"]:
        segments = spec_path.strip("/").split("/")
        regex = "/" + "/".join(
            "[^/]+" if seg.startswith("{") else re.escape(seg) for seg in segments
        )
        literal = sum(1 for seg in segments if not seg.startswith("{"))
        table.append((-literal, re.compile(regex), spec_path))
    table.sort(key=lambda row: row[0])
    return [(pattern, spec_path) for _, pattern, spec_path in table]


@functools.cache
def _spec_path_of(path: str) -> str | None:
    for pattern, spec_path in _spec_paths():
        if pattern.fullmatch(path):
            return spec_path
    return None


@functools.cache
def _response_validator(spec_path: str, method: str, status: int) -> Draft202012Validator | None:
    """A validator for the JSON answer of one OpenAPI operation and status (None: no schema)."""
    spec = _openapi()
    operation = spec["paths"].get(spec_path, {}).get(method.lower())
    if operation is None:
        return None
    responses = operation.get("responses", {})
    answer = responses.get(str(status)) or responses.get(f"{str(status)[0]}XX")
    if answer is None:
        return None
    if "$ref" in answer:
        answer = spec["components"]["responses"][answer["$ref"].rsplit("/", 1)[1]]
    schema = (answer.get("content") or {}).get("application/json", {}).get("schema")
    if schema is None:
        return None
    return Draft202012Validator({**schema, "components": spec["components"]})


def _response_mismatch(method: str, path: str, status: int, raw: bytes) -> str | None:
    """Why a JSON answer breaks Discord's OpenAPI response schema (None when it fits)."""
    if not raw:
        return None
    spec_path = _spec_path_of(re.sub(r"/\d+", "/0", path))
    if spec_path is None:
        if status in (404, 405):  # Discord's own answer to a route it does not have
            return None
        return f"{method} {path}: no such route in Discord's OpenAPI document"
    validator = _response_validator(spec_path, method, status)
    if validator is None:
        return f"{method} {path}: Discord's OpenAPI document has no JSON answer with {status}"
    body = json.loads(raw)
    if status >= 400 and isinstance(body, dict):
        # The document types the codes under `errors` as integers; Discord's docs (and its
        # answers) use strings such as "BASE_TYPE_REQUIRED" there, so only the envelope counts.
        body = {key: value for key, value in body.items() if key != "errors"}
    first = next(iter(validator.iter_errors(body)), None)
    if first is None:
        return None
    error = _leaf_errors(first)[0]
    where = "/".join(str(part) for part in error.absolute_path)
    return (
        f"{method} {path} -> {status}: answer breaks {spec_path}'s schema at {where!r}: "
        + (error.message[:300])
    )


@functools.cache
def _schema_validator(name: str) -> Draft202012Validator:
    """A validator for one named schema of ``components.schemas``."""
    spec = _openapi()
    return Draft202012Validator(
        {"$ref": f"#/components/schemas/{name}", "components": spec["components"]}
    )


def _leaf_errors(error: ValidationError) -> list[ValidationError]:
    """The errors that matter under a oneOf/anyOf failure.

    The union branches are grouped; a branch that fails on the value's JSON type or on a
    ``type`` discriminator (``{"type": 1}`` vs ``enum: [18]``) is not what the sender meant, so
    the errors come from the closest remaining branch.
    """
    if not error.context:
        return [error]
    if all(e.validator in ("const", "enum") and not e.relative_path for e in error.context):
        return [error]  # a union of constants: one 'choices' error
    branches: dict[Any, list[ValidationError]] = {}
    for sub in error.context:
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)

    def mismatched(errors: list[ValidationError]) -> bool:
        return any(
            (e.validator == "type" and not e.relative_path)
            or (e.validator in ("enum", "const") and list(e.relative_path) == ["type"])
            for e in errors
        )

    candidates = [b for b in branches.values() if not mismatched(b)]
    if not candidates:
        return [best_match(error.context)]
    closest = min(candidates, key=lambda b: (len(b), -max(len(e.absolute_path) for e in b)))
    return [leaf for sub in closest for leaf in _leaf_errors(sub)]


def _describe_error(error: ValidationError) -> tuple[list[str | int], str, str]:
    """(path, Discord error code, message) for one jsonschema error."""
    path: list[str | int] = list(error.absolute_path)
    schema = error.schema if isinstance(error.schema, dict) else {}
    value = error.instance
    match error.validator:
        case "maxLength" | "maxItems":
            return (
                path,
                "BASE_TYPE_MAX_LENGTH",
                f"Must be {error.validator_value} or fewer in length.",
            )
        case "minLength" | "minItems":
            high = schema.get("maxLength", schema.get("maxItems"))
            low = error.validator_value
            if high is not None:
                return path, "BASE_TYPE_BAD_LENGTH", f"Must be between {low} and {high} in length."
            return path, "BASE_TYPE_MIN_LENGTH", f"Must be {low} or more in length."
        case "required":
            match = re.match(r"'(.+)' is a required property", error.message)
            if match:
                path.append(match.group(1))
            return path, "BASE_TYPE_REQUIRED", "This field is required"
        case "enum" | "const" | "oneOf" | "anyOf":
            choices = error.validator_value
            if error.validator in ("oneOf", "anyOf"):
                choices = [c.get("const", c.get("enum")) for c in choices if isinstance(c, dict)]
            choices = choices if isinstance(choices, list) else [choices]
            shown = ", ".join(repr(c) for c in choices)
            return path, "BASE_TYPE_CHOICES", f"Value must be one of {{{shown}}}."
        case "maximum":
            return (
                path,
                "NUMBER_TYPE_MAX",
                f"int value should be less than or equal to {error.validator_value}.",
            )
        case "minimum":
            return (
                path,
                "NUMBER_TYPE_MIN",
                f"int value should be greater than or equal to {error.validator_value}.",
            )
        case "pattern":
            return path, "STRING_TYPE_REGEX", "String value did not match validation regex."
        case "type":
            wanted = error.validator_value
            wanted = wanted if isinstance(wanted, list) else [wanted]
            if "integer" in wanted or "number" in wanted:
                return path, "NUMBER_TYPE_COERCE", f'Value "{value}" is not int.'
            if "boolean" in wanted:
                return path, "BASE_TYPE_BOOLEAN", "Must be either true or false."
            if "string" in wanted:
                return path, "BASE_TYPE_STRING", f'Could not interpret "{value}" as string.'
            if "array" in wanted:
                return path, "BASE_TYPE_LIST", "Must be a list."
            return path, "MODEL_TYPE_CONVERT", "Only dictionaries may be used in a ModelType"
        case _:
            return path, "BASE_TYPE_INVALID", error.message[:200]


def _schema_errors(validator: Draft202012Validator | None, body: Any) -> dict[str, Any]:
    """Discord-shaped ``errors`` for a body that breaks the schema ({} when it fits)."""
    errors: dict[str, Any] = {}
    if validator is None:
        return errors
    for error in validator.iter_errors(body):
        for leaf in _leaf_errors(error):
            _add_error(errors, *_describe_error(leaf))
    return errors


def _merge_errors(into: dict[str, Any], other: dict[str, Any]) -> None:
    """Add ``other``'s errors to ``into``; a field that already has errors keeps those only
    (Discord names one error a field; the hand-written checks and the schema may both catch one)."""
    for key, value in other.items():
        if key == "_errors":
            if "_errors" not in into:
                into["_errors"] = list(value)
        else:
            _merge_errors(into.setdefault(key, {}), value)


# --------------------------------------------------------------------------- message checks


def _embed_length(embed: dict[str, Any]) -> int:
    """Characters that count toward the 6,000 per message embed limit."""
    total = len(embed.get("title") or "") + len(embed.get("description") or "")
    total += len((embed.get("footer") or {}).get("text") or "")
    total += len((embed.get("author") or {}).get("name") or "")
    for item in embed.get("fields") or []:
        total += len(item.get("name") or "") + len(item.get("value") or "")
    return total


def _message_limit_errors(body: dict[str, Any]) -> dict[str, Any]:
    """Hand-written limits the OpenAPI schemas do not state for bots."""
    errors: dict[str, Any] = {}
    content = body.get("content")
    if isinstance(content, str) and len(content) > 2000:
        _add_error(errors, ["content"], "BASE_TYPE_MAX_LENGTH", "Must be 2000 or fewer in length.")
    embeds = body.get("embeds")
    if (
        isinstance(embeds, list)
        and all(isinstance(e, dict) for e in embeds)
        and sum(_embed_length(e) for e in embeds) > 6000
    ):
        _add_error(
            errors, ["embeds"], "MAX_EMBED_SIZE_EXCEEDED", "Embed size exceeds maximum size of 6000"
        )
    components = body.get("components")
    flags = body.get("flags") or 0
    v2 = isinstance(flags, int) and flags & FLAG_COMPONENTS_V2
    if isinstance(components, list) and not v2 and len(components) > 5:
        _add_error(errors, ["components"], "BASE_TYPE_MAX_LENGTH", "Must be 5 or fewer in length.")
    if isinstance(components, list):
        _component_errors(components, errors, v2=bool(v2))
    allowed = body.get("allowed_mentions")
    if isinstance(allowed, dict):
        parse = allowed.get("parse") or []
        for kind in ("users", "roles"):
            if isinstance(parse, list) and kind in parse and allowed.get(kind):
                _add_error(
                    errors,
                    ["allowed_mentions"],
                    "MESSAGE_ALLOWED_MENTIONS_PARSE_EXCLUSIVE",
                    f'parse:["{kind}"] and {kind}: [ids...] are mutually exclusive.',
                )
    return errors


# Component limits (https://discord.com/developers/docs/components/reference).
BUTTON, STRING_SELECT = 2, 3
SELECT_TYPES = (3, 5, 6, 7, 8)
ROW_WIDTH = 5  # a button takes 1 of a row's 5 places, a select all 5


def _component_errors(components: list[Any], errors: dict[str, Any], *, v2: bool) -> None:
    """Discord's component rules: custom ids unique within the message and at most 100
    characters, button labels at most 80, at most 5 buttons (or one select) a row, select
    options and values within their limits."""
    seen: set[str] = set()

    def walk(component: Any, path: list[str | int]) -> None:
        if not isinstance(component, dict):
            return
        kind = component.get("type")
        custom_id = component.get("custom_id")
        if isinstance(custom_id, str):
            if len(custom_id) > 100:
                _add_error(
                    errors,
                    [*path, "custom_id"],
                    "BASE_TYPE_MAX_LENGTH",
                    "Must be 100 or fewer in length.",
                )
            elif custom_id in seen:
                _add_error(
                    errors,
                    [*path, "custom_id"],
                    "COMPONENT_CUSTOM_ID_DUPLICATED",
                    "Component custom id cannot be duplicated",
                )
            seen.add(custom_id)
        label = component.get("label")
        if kind == BUTTON and isinstance(label, str) and len(label) > 80:
            _add_error(
                errors, [*path, "label"], "BASE_TYPE_MAX_LENGTH", "Must be 80 or fewer in length."
            )
        if kind in SELECT_TYPES:
            _select_errors(component, path, errors)
        children = component.get("components")
        if kind == 1 and isinstance(children, list):
            width = sum(
                ROW_WIDTH if isinstance(c, dict) and c.get("type") in SELECT_TYPES else 1
                for c in children
            )
            if width > ROW_WIDTH:
                _add_error(
                    errors,
                    [*path, "components"],
                    "COMPONENT_LAYOUT_WIDTH_EXCEEDED",
                    "The specified component exceeds the maximum width",
                )
        if isinstance(children, list):
            for index, child in enumerate(children):
                walk(child, [*path, "components", index])
        for key in ("component", "accessory"):
            if isinstance(component.get(key), dict):
                walk(component[key], [*path, key])

    for index, component in enumerate(components):
        walk(component, ["components", index])


def _select_errors(
    component: dict[str, Any], path: list[str | int], errors: dict[str, Any]
) -> None:
    """A select's values: 0-25 minimum, 1-25 maximum, minimum not above maximum; a string
    select has 1-25 options with distinct values and a maximum no larger than its options."""
    low, high = component.get("min_values"), component.get("max_values")
    if isinstance(low, int) and not 0 <= low <= 25:
        code = "NUMBER_TYPE_MAX" if low > 25 else "NUMBER_TYPE_MIN"
        _add_error(errors, [*path, "min_values"], code, "int value should be between 0 and 25.")
    if isinstance(high, int) and not 1 <= high <= 25:
        code = "NUMBER_TYPE_MAX" if high > 25 else "NUMBER_TYPE_MIN"
        _add_error(errors, [*path, "max_values"], code, "int value should be between 1 and 25.")
    if isinstance(low, int) and isinstance(high, int) and low > high:
        _add_error(
            errors,
            [*path, "min_values"],
            "SELECT_COMPONENT_MIN_VALUES_ABOVE_MAX",
            "min_values must be less than or equal to max_values",
        )
    if component.get("type") != STRING_SELECT:
        return
    options = component.get("options")
    if not isinstance(options, list):
        return
    if not 1 <= len(options) <= 25:
        _add_error(
            errors,
            [*path, "options"],
            "BASE_TYPE_BAD_LENGTH",
            "Must be between 1 and 25 in length.",
        )
    values: set[Any] = set()
    for index, option in enumerate(options):
        if not isinstance(option, dict):
            continue
        for key in ("label", "value", "description"):
            text = option.get(key)
            if isinstance(text, str) and len(text) > 100:
                _add_error(
                    errors,
                    [*path, "options", index, key],
                    "BASE_TYPE_MAX_LENGTH",
                    "Must be 100 or fewer in length.",
                )
        if option.get("value") in values:
            _add_error(
                errors,
                [*path, "options", index, "value"],
                "SELECT_COMPONENT_OPTION_VALUE_DUPLICATED",
                "Select component option values must be unique",
            )
        values.add(option.get("value"))
    if isinstance(high, int) and high > len(options):
        _add_error(
            errors,
            [*path, "max_values"],
            "SELECT_COMPONENT_MAX_VALUES_ABOVE_OPTIONS",
            "max_values must be less than or equal to the number of options",
        )


# --------------------------------------------------------------------------- commands

COMMAND_SIZE_LIMIT = 8000
SUBCOMMAND, SUBCOMMAND_GROUP = 1, 2


def _valid_command_name(name: str) -> bool:
    """Discord's ``^[-_'\\p{L}\\p{N}\\p{sc=Deva}\\p{sc=Thai}]{1,32}$``: letters and numbers of
    any script, Devanagari and Thai (their marks included), '-', '_' and "'"."""
    return 1 <= len(name) <= 32 and all(
        ch.isalnum() or ch in "-_'" or "\u0900" <= ch <= "\u097f" or "\u0e00" <= ch <= "\u0e7f"
        for ch in name
    )


def _command_size(command: dict[str, Any]) -> int:
    """Characters counted towards the 8,000 per command: names, descriptions and choice values
    (and names) of the command, its subcommands, groups and options."""
    total = len(str(command.get("name") or "")) + len(str(command.get("description") or ""))
    for option in command.get("options") or []:
        if isinstance(option, dict):
            total += _command_size(option)
            for choice in option.get("choices") or []:
                if isinstance(choice, dict):
                    total += len(str(choice.get("name") or "")) + len(str(choice.get("value", "")))
    return total


def _options_errors(options: Any, path: list[str | int], errors: dict[str, Any]) -> None:
    """Rules of one level of options: at most 25, names valid, lower case and unique,
    descriptions 1-100, required ones first, never autocomplete with choices."""
    if not isinstance(options, list):
        return
    if len(options) > 25:
        _add_error(errors, path, "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
    names: set[str] = set()
    optional_seen = False
    for index, option in enumerate(options):
        if not isinstance(option, dict):
            continue
        here = [*path, index]
        name = str(option.get("name") or "")
        if not _valid_command_name(name) or name != name.lower():
            _add_error(
                errors,
                [*here, "name"],
                "APPLICATION_COMMAND_INVALID_NAME",
                "Command name is invalid",
            )
        elif name in names:
            _add_error(
                errors,
                [*here, "name"],
                "APPLICATION_COMMAND_OPTIONS_NAME_ALREADY_EXISTS",
                "Option names must be unique",
            )
        names.add(name)
        if not 1 <= len(option.get("description") or "") <= 100:
            _add_error(
                errors,
                [*here, "description"],
                "BASE_TYPE_BAD_LENGTH",
                "Must be between 1 and 100 in length.",
            )
        kind = option.get("type")
        if kind in (SUBCOMMAND, SUBCOMMAND_GROUP):
            _options_errors(option.get("options"), [*here, "options"], errors)
            continue
        if option.get("required"):
            if optional_seen:
                _add_error(
                    errors,
                    here,
                    "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                    "Required options must be placed before non-required options",
                )
        else:
            optional_seen = True
        if option.get("autocomplete") and option.get("choices"):
            _add_error(
                errors,
                [*here, "autocomplete"],
                "APPLICATION_COMMAND_OPTION_AUTOCOMPLETE_CHOICES",
                "Autocomplete cannot be enabled on an option with choices",
            )


def _command_errors(commands: list[Any]) -> dict[str, Any]:
    """Discord's validation of application commands (bulk overwrite: every command at once)."""
    errors: dict[str, Any] = {}
    names: set[tuple[int, str]] = set()
    for index, command in enumerate(commands):
        if not isinstance(command, dict):
            continue
        name = str(command.get("name", ""))
        command_type = int(command.get("type") or 1)
        if command_type == 1:
            if not _valid_command_name(name) or name != name.lower():
                _add_error(
                    errors,
                    [index, "name"],
                    "APPLICATION_COMMAND_INVALID_NAME",
                    "Command name is invalid",
                )
            if not 1 <= len(command.get("description") or "") <= 100:
                _add_error(
                    errors,
                    [index, "description"],
                    "BASE_TYPE_BAD_LENGTH",
                    "Must be between 1 and 100 in length.",
                )
            _options_errors(command.get("options"), [index, "options"], errors)
        else:  # user and message context menus: free names, no description, no options
            if not 1 <= len(name) <= 32:
                _add_error(
                    errors,
                    [index, "name"],
                    "BASE_TYPE_BAD_LENGTH",
                    "Must be between 1 and 32 in length.",
                )
            if command.get("description"):
                _add_error(
                    errors,
                    [index, "description"],
                    "APPLICATION_COMMAND_CONTEXT_MENU_DESCRIPTION",
                    "Context menu commands cannot have description",
                )
            if command.get("options"):
                _add_error(
                    errors,
                    [index, "options"],
                    "APPLICATION_COMMAND_CONTEXT_MENU_OPTIONS",
                    "Context menu commands cannot have options",
                )
        if (command_type, name) in names:
            _add_error(
                errors,
                [index, "name"],
                "APPLICATION_COMMANDS_DUPLICATE_NAME",
                "Application command names must be unique",
            )
        names.add((command_type, name))
        if _command_size(command) > COMMAND_SIZE_LIMIT:
            _add_error(
                errors,
                [index],
                "APPLICATION_COMMAND_TOO_LARGE",
                f"Command exceeds maximum size ({COMMAND_SIZE_LIMIT})",
            )
    return errors


# --------------------------------------------------------------------------- helpers


class _Snowflakes:
    """Time-based, strictly increasing snowflake ids (as strings)."""

    def __init__(self) -> None:
        self._last = 0

    def next(self, shard: tuple[int, int] | None = None) -> str:
        """The next id; with ``shard`` (id, count), one that Discord's formula
        ``(id >> 22) % count`` puts on that shard (its time moves on by a few ms at most)."""
        value = (int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22
        value = max(value, self._last + 1)
        if shard is not None:
            shard_id, count = shard
            stamp = value >> 22
            while stamp % count != shard_id:
                stamp += 1
            if stamp != value >> 22:
                value = stamp << 22
        self._last = value
        return str(value)


def _shard_field(value: Any) -> tuple[int, int] | None:
    """IDENTIFY's optional ``shard`` ([shard_id, num_shards]); None when it is invalid."""
    if value is None:
        return (0, 1)
    if (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        and 0 <= value[0] < value[1]
    ):
        return (value[0], value[1])
    return None


def _connected(session: _Session | None) -> bool:
    conn = session.conn if session is not None else None
    return conn is not None and conn.live and conn.ready


def shard_of(guild_id: str | int, shard_count: int) -> int:
    """The shard that Discord sends a guild's events to."""
    return (int(guild_id) >> 22) % shard_count


def snowflake_time(snowflake: str) -> datetime:
    """The creation time encoded in a snowflake."""
    return datetime.fromtimestamp(((int(snowflake) >> 22) + DISCORD_EPOCH_MS) / 1000, UTC)


@functools.lru_cache(maxsize=4096)
def _snowflake_iso(snowflake: str) -> str:
    """The creation time of a snowflake as Discord prints timestamps (each payload shows it)."""
    return _iso(snowflake_time(snowflake))


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds")


def _now_iso() -> str:
    return _iso(datetime.now(UTC))


def _json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """A JSON answer with Content-Type exactly ``application/json`` (as discord.py expects)."""
    all_headers = {"Content-Type": "application/json"}
    all_headers.update(headers or {})
    return web.Response(body=json.dumps(body).encode(), status=status, headers=all_headers)


_IMMUTABLE = frozenset({str, int, float, bool, type(None)})


def _clone(value: Any) -> Any:
    """A deep copy of JSON-like data (dicts, lists, scalars), several times cheaper than
    copy.deepcopy, which it uses for anything else."""
    kind = type(value)
    if kind is dict:
        return {key: _clone(item) for key, item in value.items()}
    if kind is list:
        return [_clone(item) for item in value]
    if kind in _IMMUTABLE:
        return value
    return copy.deepcopy(value)


def _truthy(value: str | None) -> bool:
    return value is not None and value.lower() in ("1", "true", "yes")


def _walk_components(components: Iterable[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    """Every component in a (nested) component tree."""
    for component in components:
        yield component
        yield from _walk_components(component.get("components") or [])
        if isinstance(component.get("component"), dict):
            yield from _walk_components([component["component"]])
        if isinstance(component.get("accessory"), dict):
            yield from _walk_components([component["accessory"]])


def _numbered(components: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Components as Discord stores them: each has a numeric ``id``, the sender's or the next
    free number in tree order; emoji without their null fields."""
    every = list(_walk_components(components))
    for component in every:
        emoji = component.get("emoji")
        if isinstance(emoji, dict):  # a unicode emoji comes back as its name only
            component["emoji"] = {k: v for k, v in emoji.items() if v is not None}
    used = {c["id"] for c in every if isinstance(c.get("id"), int)}
    number = 0
    for component in every:
        if not isinstance(component.get("id"), int):
            number += 1
            while number in used:
                number += 1
            component["id"] = number
            used.add(number)
    return components


def _option_type(value: Any) -> int:
    if isinstance(value, bool):
        return 5
    if isinstance(value, int):
        return 4
    if isinstance(value, float):
        return 10
    if isinstance(value, str):
        return 3
    raise TypeError(f"cannot infer an option type for {value!r}; pass {{'type':..,'value':..}}")


@dataclass
class _Request:
    """A parsed REST request handed to a route handler."""

    method: str
    path: str
    params: dict[str, str]
    query: dict[str, str]
    body: Any
    files: list[tuple[str, bytes, str]]  # (filename, data, content type), by files[n] index
    authorized: bool
    bucket: str  # the route's rate limit bucket key


@dataclass
class _Route:
    method: str
    pattern: re.Pattern[str]
    handler: Callable[[_Request], Awaitable[web.Response]]
    auth: bool  # needs "Authorization: Bot <token>"
    bucket: str  # route name for the (generous) route rate limit bucket
    major: str | None  # the path parameter that keys the bucket


@dataclass
class _Session:
    """A Gateway session created by IDENTIFY (resumable)."""

    id: str
    intents: int
    seq: int = 0
    sent: list[dict[str, Any]] = field(default_factory=list)
    conn: _Connection | None = None
    invalid: bool = False
    shard: tuple[int, int] = (0, 1)
    """[shard_id, num_shards] from IDENTIFY; (0, 1) when the bot does not shard."""

    def owns(self, guild_id: str | None) -> bool:
        """Whether Discord sends this guild's events here (DMs go to shard 0)."""
        shard_id, count = self.shard
        if guild_id is None:
            return shard_id == 0
        return shard_of(guild_id, count) == shard_id


@dataclass
class _Connection:
    """One Gateway websocket connection."""

    ws: web.WebSocketResponse
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    session: _Session | None = None
    ready: bool = False
    closed: bool = False
    deflate: Any = None  # zlib-stream: one compression context for the whole connection
    last_heartbeat: float = 0.0  # loop time of the last HEARTBEAT (or of the HELLO)
    outbox: asyncio.Queue[tuple[float, dict[str, Any]]] | None = None  # with gateway latency
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def live(self) -> bool:
        return not self.closed and not self.ws.closed

    async def send(self, payload: dict[str, Any]) -> None:
        async with self.lock:
            if self.live:
                text = json.dumps(payload)
                if self.deflate is None:
                    await self.ws.send_str(text)
                else:  # each message ends with Z_SYNC_FLUSH (00 00 ff ff), as Discord's do
                    data = self.deflate.compress(text.encode()) + self.deflate.flush(
                        zlib.Z_SYNC_FLUSH
                    )
                    await self.ws.send_bytes(data)

    def send_later(self, due: float, payload: dict[str, Any]) -> None:
        """Deliver ``payload`` at loop time ``due`` (in order: latency delays, never reorders)."""
        if self.outbox is None:
            self.outbox = asyncio.Queue()
            self.tasks.append(asyncio.create_task(self._deliver()))
        self.outbox.put_nowait((due, payload))

    async def _deliver(self) -> None:
        assert self.outbox is not None
        loop = asyncio.get_running_loop()
        while True:
            due, payload = await self.outbox.get()
            if due > loop.time():
                await asyncio.sleep(due - loop.time())
            await self.send(payload)

    def stop(self) -> None:
        for task in self.tasks:
            task.cancel()


# --------------------------------------------------------------------------- the double


class FakeDiscord:
    """A Discord double (REST + Gateway) on loopback for a real discord.py bot."""

    def __init__(
        self,
        *,
        edit_budget: tuple[int, float] = CHANNEL_MESSAGE_BUDGET,
        webhook_budget: tuple[int, float] = INTERACTION_WEBHOOK_BUDGET,
        global_budget: tuple[int, float] = GLOBAL_BUDGET,
        ack_timeout: float = 3.0,
        interaction_token_ttl: float = 15 * 60,
        clock: Callable[[], float] = time.monotonic,
        route_budget: tuple[int, float] = (50, 1.0),
        privileged_intents: int = PRIVILEGED_INTENTS,
        validate_schemas: bool = True,
        heartbeat_interval: float = 41.25,
        heartbeat_grace: float = 5.0,
        gateway_latency: float = 0.0,
        rest_latency: float = 0.0,
    ) -> None:
        """Build the world (one guild, three text channels, three users and the bot).

        `add_guild` adds more guilds (the same users are members of each, with the same roles).

        Rate limits are (requests, seconds) windows that open at a bucket's first request and
        reset whole, announced in X-RateLimit headers like Discord's: ``edit_budget`` is each
        channel's message bucket (creates and edits together, Discord's 5 per 5 s; also readable
        as `channel_budget`), ``webhook_budget`` each interaction token's follow-up bucket
        (follow-ups, their edits and deletions, @original included; 5 per 2 s),
        ``global_budget`` the bot's global limit (50 a second; interaction endpoints exempt) and
        ``route_budget`` the generous bucket of every other route. ``privileged_intents`` are the
        privileged intents the 'developer portal' allows (IDENTIFY asking for more is closed with
        4014 like Discord does). ``validate_schemas=False`` skips the OpenAPI checks of request
        bodies (Discord's own limits still apply): they cost the double milliseconds a request,
        which bench/ must not count as the bot's time.

        ``heartbeat_interval`` (seconds) is what HELLO asks for; a connection that sends no
        HEARTBEAT for ``heartbeat_interval + heartbeat_grace`` is closed with 4009 (a zombie,
        as Discord closes it; its session cannot be resumed). ``gateway_latency`` delays each
        frame sent to the bot, ``rest_latency`` each REST request on its way in and its answer
        on its way out (seconds, one way; both default 0). The interaction deadline runs from
        when the double sent the interaction, so both eat into it, as on Discord.
        """
        self.edit_budget = edit_budget
        self.webhook_budget = webhook_budget
        self.global_budget = global_budget
        self.ack_timeout = ack_timeout
        self.interaction_token_ttl = interaction_token_ttl
        self.clock = clock
        self.route_budget = route_budget
        self.privileged_intents = privileged_intents
        self.validate_schemas = validate_schemas
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat_grace = heartbeat_grace
        self.gateway_latency = gateway_latency
        self.rest_latency = rest_latency
        self.gateway_compression: list[str | None] = []
        """The ``compress`` query of each Gateway connection, in order (None: not asked)."""

        self._ids = _Snowflakes()
        self.application_id = self._ids.next()
        self.token = (
            f"{secrets.token_urlsafe(18)}.{secrets.token_urlsafe(5)}.{secrets.token_urlsafe(27)}"
        )
        self.bot_user: dict[str, Any] = self._make_user(
            "Ollama", bot=True, user_id=self.application_id
        )
        self.guild_id = self._ids.next()
        self.guild_name = "Test Guild"
        self.users: dict[str, dict[str, Any]] = {
            name: self._make_user(name) for name in ("alice", "bob", "admin")
        }
        # Another bot in the guild: its messages must never be answered.
        self.users["otherbot"] = self._make_user("otherbot", bot=True)
        self._user_names: dict[str, tuple[str, dict[str, Any]]] = {}  # id -> (name, user)
        # Webhook authors (by webhook id): messages posted through a channel webhook.
        self._webhook_users: dict[str, dict[str, Any]] = {}
        self.thread_members: dict[str, list[str]] = {}
        """Users added to each thread (PUT /channels/{thread}/thread-members/{user})."""
        self.admin_role_id = self._ids.next()
        self.bot_role_id = self._ids.next()
        self.roles: list[dict[str, Any]] = [
            self._make_role(self.guild_id, "@everyone", EVERYONE_PERMISSIONS, 0),
            self._make_role(self.bot_role_id, "Ollama", BOT_ROLE_PERMISSIONS, 1, managed=True),
            self._make_role(self.admin_role_id, "Admin", ADMIN_ROLE_PERMISSIONS, 2),
        ]
        self._member_roles: dict[str, list[str]] = {
            self.bot_user["id"]: [self.bot_role_id],
            self.users["alice"]["id"]: [],
            self.users["bob"]["id"]: [],
            self.users["admin"]["id"]: [self.admin_role_id],
            self.users["otherbot"]["id"]: [],
        }
        self._joined_at = _now_iso()
        self.guilds: dict[str, FakeGuild] = {
            self.guild_id: FakeGuild(
                id=self.guild_id,
                name=self.guild_name,
                roles=self.roles,
                member_roles=self._member_roles,
                joined_at=self._joined_at,
                admin_role_id=self.admin_role_id,
                bot_role_id=self.bot_role_id,
            )
        }
        self.channels: dict[str, dict[str, Any]] = {}
        self.channel_ids: list[str] = [
            self._add_text_channel(name, position)
            for position, name in enumerate(("general", "random", "other"))
        ]

        # State the tests read.
        self.requests: list[RecordedRequest] = []
        self.rate_limited: list[RecordedRequest] = []
        self.cdn_requests: list[RecordedRequest] = []
        self.messages: dict[str, FakeMessage] = {}
        self.interactions: dict[str, FakeInteraction] = {}
        self._by_token: dict[str, FakeInteraction] = {}  # the same interactions, by token
        self.commands: list[dict[str, Any]] = []
        self.guild_commands: dict[str, list[dict[str, Any]]] = {}
        self.identify: dict[str, Any] | None = None
        self.recommended_shards = 1
        """What GET /gateway/bot recommends as the number of shards."""
        self._removed_guilds: dict[str, FakeGuild] = {}  # by remove_guild, for restore_guild
        self.application_team: dict[str, str] | None = None
        """When set (by `set_application_team`): the application belongs to a team, its members
        by user name -> team role (`admin`, `developer`, `read_only`); else "admin" owns it."""
        self.gateway_sent: list[dict[str, Any]] = []  # every frame sent on any connection
        self.gateway_received: list[dict[str, Any]] = []  # every frame the bot sent
        self.server_errors: list[str] = []  # tracebacks of bugs in the double (answered 418)
        self.deprecated_uses: list[str] = []
        """Requests that lean on behaviour Discord's docs mark as deprecated (it still works,
        as on Discord); fixtures assert none, so the bot does not come to rely on it."""
        self.request_hooks: list[Callable[[RecordedRequest], None]] = []
        """Called with each REST request once it was answered and its effects recorded (for the
        bench, which waits on thousands of replies at once without polling); an exception in
        one is kept in `server_errors`."""

        self._files: dict[str, tuple[str, bytes, str]] = {}  # attachment id -> file
        self._route_windows: dict[str, tuple[float, int]] = {}
        self._command_ids: dict[str, str] = {}
        self._sessions: dict[str, _Session] = {}
        self._connections: list[_Connection] = []
        self._latest: _Connection | None = None
        self._change: asyncio.Event | None = None  # made by the first waiter
        self._runner: web.AppRunner | None = None
        self._port = 0
        self._routes = self._build_routes()
        # Routes by the path's first segment (each template starts with a literal one), so a
        # request tries a few patterns instead of all of them.
        self._routes_by_head: dict[str, list[_Route]] = {}
        for route in self._routes:
            self._routes_by_head.setdefault(route.bucket.split("/", 2)[1], []).append(route)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Bind 127.0.0.1 on an ephemeral port and start serving."""
        _openapi()  # load the spec before the first request
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = self._runner.addresses[0][1]

    async def close(self) -> None:
        """Close every Gateway connection and stop the server."""
        for conn in list(self._connections):
            conn.stop()
            if conn.live:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.ws.close(code=1001), 1.0)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeDiscord:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self._port}"

    @property
    def api_base(self) -> str:
        """What ``discord.http.Route.BASE`` must be set to."""
        return f"{self.base_url}{API_PREFIX}"

    @property
    def gateway_url(self) -> str:
        """What ``DiscordWebSocket.DEFAULT_GATEWAY`` must be set to (as a yarl.URL)."""
        return f"ws://127.0.0.1:{self._port}/"

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

    # ------------------------------------------------------------------ waiting

    def _notify(self) -> None:
        """Wake every waiter: something was recorded."""
        if self._change is not None:  # nobody waits most of the time (the bench)
            self._change.set()
            self._change = None

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Wait until ``predicate()`` is true.

        It is re-checked after each recorded request or Gateway frame, and every 10 ms (for
        predicates on the bot's own state). Raises TimeoutError with the recent traffic.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(self._timeout_message(predicate, timeout))
            change = self._change
            if change is None:
                change = self._change = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(change.wait(), min(remaining, 0.01))

    def _timeout_message(self, predicate: Callable[[], bool], timeout: float) -> str:
        try:
            source = inspect.getsource(predicate).strip()
        except (OSError, TypeError):
            source = repr(predicate)
        recent = "\n".join(
            f"  {r.method} {r.path} -> {r.status} {json.dumps(r.response)[:200]}"
            for r in self.requests[-8:]
        )
        events = ", ".join(str(f.get("t") or f.get("op")) for f in self.gateway_sent[-8:])
        errors = f"\ndouble errors:\n{self.server_errors[-1]}" if self.server_errors else ""
        return (
            f"condition not met within {timeout}s: {source}\n"
            f"last requests:\n{recent or '  (none)'}\n"
            f"last gateway frames sent: {events or '(none)'}{errors}"
        )

    async def wait_ready(self, timeout: float = 5.0, *, shard: int | None = None) -> None:
        """Wait until the latest Gateway connection got READY + GUILD_CREATE (or RESUMED); with
        ``shard``, until the latest session of that shard id is connected and ready."""

        def ready() -> bool:
            if shard is None:
                return self._latest is not None and self._latest.live and self._latest.ready
            session = next(
                (s for s in reversed(self._sessions.values()) if s.shard[0] == shard), None
            )
            return _connected(session)

        try:
            await self.wait_until(ready, timeout)
        except TimeoutError as exc:
            raise TimeoutError(
                f"no bot connection became ready within {timeout}s "
                f"(connections: {len(self._connections)}, "
                f"identified: {self.identify is not None})\n{exc}"
            ) from None

    async def _wait_ready_for(self, guild_id: str | None, timeout: float = 5.0) -> None:
        """Wait until the connection that gets this guild's events (DMs: shard 0's) is ready."""
        try:
            await self.wait_until(lambda: _connected(self._session_for(guild_id)), timeout)
        except TimeoutError as exc:
            raise TimeoutError(
                f"no bot connection for guild {guild_id} became ready within {timeout}s "
                f"(ready shards: {self.shards})\n{exc}"
            ) from None

    @property
    def shards(self) -> list[tuple[int, int]]:
        """[shard_id, num_shards] of each session that is connected and ready, in order."""
        return sorted(s.shard for s in self._sessions.values() if _connected(s))

    @property
    def message_content_intent(self) -> bool:
        """Whether the latest IDENTIFY asked for the privileged MESSAGE_CONTENT intent."""
        return bool(self._intents() & INTENT_MESSAGE_CONTENT)

    def _intents(self) -> int:
        if self.identify is None:
            return 0
        return int(self.identify.get("intents", 0))

    # ------------------------------------------------------------------ recording

    def channel_messages(self, channel_id: str) -> list[FakeMessage]:
        """Messages of a channel in creation order (deleted ones excluded, ephemeral ones kept)."""
        return [m for m in self.messages.values() if m.channel_id == channel_id and not m.deleted]

    def bot_messages(self, channel_id: str | None = None) -> list[FakeMessage]:
        """Messages authored by the bot (interaction responses included), deleted ones excluded."""
        return [
            m
            for m in self.messages.values()
            if m.author_id == self.bot_user["id"]
            and not m.deleted
            and (channel_id is None or m.channel_id == channel_id)
        ]

    # ------------------------------------------------------------------ gateway

    async def _gateway(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=16 * 1024 * 1024)
        await ws.prepare(request)
        conn = _Connection(ws=ws)
        compress = request.query.get("compress")
        self.gateway_compression.append(compress)
        if compress == "zlib-stream":
            conn.deflate = zlib.compressobj()
        self._connections.append(conn)
        self._latest = conn
        self._notify()
        conn.last_heartbeat = asyncio.get_running_loop().time()
        interval_ms = round(self.heartbeat_interval * 1000)
        await self._send(conn, {"op": 10, "d": {"heartbeat_interval": interval_ms}})
        conn.tasks.append(asyncio.create_task(self._watch_heartbeats(conn)))
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                payload = json.loads(msg.data)
                self.gateway_received.append(payload)
                self._notify()
                try:
                    await self._gateway_op(conn, payload)
                except Exception:  # a bug in the double; keep the connection
                    self.server_errors.append(traceback.format_exc())
        finally:
            conn.closed = True
            conn.stop()
            session = conn.session
            if session is not None and session.conn is conn:
                session.conn = None
                if ws.close_code in (1000, 1001):  # a clean close ends the session, as on Discord
                    session.invalid = True
            self._notify()
        return ws

    async def _send(self, conn: _Connection, payload: dict[str, Any]) -> None:
        self.gateway_sent.append(payload)
        if self.gateway_latency > 0:
            conn.send_later(asyncio.get_running_loop().time() + self.gateway_latency, payload)
        else:
            await conn.send(payload)
        self._notify()

    async def _watch_heartbeats(self, conn: _Connection) -> None:
        """Close a connection whose bot stopped heartbeating, as Discord does with zombies."""
        loop = asyncio.get_running_loop()
        while conn.live:
            late = conn.last_heartbeat + self.heartbeat_interval + self.heartbeat_grace
            if loop.time() >= late:
                if conn.session is not None and conn.session.conn is conn:
                    conn.session.invalid = True  # a timed-out session cannot be resumed
                # Shielded: the connection's end cancels this task while the close completes.
                await asyncio.shield(conn.ws.close(code=4009, message=b"Session timed out."))
                return
            await asyncio.sleep(late - loop.time())

    async def _gateway_op(self, conn: _Connection, payload: dict[str, Any]) -> None:
        op = payload.get("op")
        data = payload.get("d")
        if op == 1:  # HEARTBEAT
            conn.last_heartbeat = asyncio.get_running_loop().time()
            await self._send(conn, {"op": 11})
        elif op == 2:  # IDENTIFY
            await self._on_identify(conn, data or {})
        elif op == 6:  # RESUME
            await self._on_resume(conn, data or {})
        elif op == 8:  # REQUEST_GUILD_MEMBERS
            await self._on_request_members(conn, data or {})
        # op 3 (presence) and 4 (voice) are only recorded

    async def _on_identify(self, conn: _Connection, data: dict[str, Any]) -> None:
        if data.get("token") != self.token:
            await conn.ws.close(code=4004, message=b"Authentication failed.")
            return
        intents = int(data.get("intents", 0))
        if intents & PRIVILEGED_INTENTS & ~self.privileged_intents:
            await conn.ws.close(code=4014, message=b"Disallowed intent(s).")
            return
        shard = _shard_field(data.get("shard"))
        if shard is None:
            await conn.ws.close(code=4010, message=b"Invalid shard.")
            return
        self.identify = data
        session = _Session(id=secrets.token_hex(16), intents=intents, shard=shard)
        self._sessions[session.id] = session
        conn.session = session
        session.conn = conn
        ready: dict[str, Any] = {
            "v": 10,
            "user": {**self.bot_user, "verified": True, "mfa_enabled": False, "email": None},
            "user_settings": {},
            "session_type": "normal",
            "session_id": session.id,
            "resume_gateway_url": self.gateway_url,
            "relationships": [],
            "private_channels": [],
            "presences": [],
            "guilds": [
                {"id": guild_id, "unavailable": True}
                for guild_id in self.guilds
                if session.owns(guild_id)
            ],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": ["local"],
            "auth": {},
            "application": {"id": self.application_id, "flags": self._application_flags()},
            "_trace": ['["fake-discord-gateway",{"micros":1}]'],
        }
        if "shard" in data:
            ready["shard"] = data["shard"]
        await self._dispatch_on(session, "READY", ready)
        if intents & INTENT_GUILDS:
            for guild_id in [g for g in self.guilds if session.owns(g)]:
                await self._dispatch_on(
                    session, "GUILD_CREATE", self._guild_payload(intents, guild_id)
                )
        conn.ready = True
        self._notify()

    async def _on_resume(self, conn: _Connection, data: dict[str, Any]) -> None:
        session = self._sessions.get(str(data.get("session_id")))
        if session is None or session.invalid or data.get("token") != self.token:
            await self._send(conn, {"op": 9, "d": False})
            return
        seq = int(data.get("seq") or 0)
        if session.conn is not None and session.conn is not conn:
            session.conn.closed = True
        conn.session = session
        session.conn = conn
        for frame in session.sent:  # replay what the bot missed
            if frame["s"] > seq:
                await self._send(conn, frame)
        await self._dispatch_on(session, "RESUMED", {"_trace": ['["fake-discord-gateway"]']})
        conn.ready = True
        self._notify()

    async def _on_request_members(self, conn: _Connection, data: dict[str, Any]) -> None:
        session = conn.session
        if session is None:
            return
        guild = self.guilds.get(str(data.get("guild_id"))) or self.guilds[self.guild_id]
        members = [self._member(uid, guild_id=guild.id) for uid in guild.member_roles]
        chunk: dict[str, Any] = {
            "guild_id": guild.id,
            "members": members,
            "chunk_index": 0,
            "chunk_count": 1,
            "not_found": [],
        }
        if data.get("nonce") is not None:
            chunk["nonce"] = data["nonce"]
        await self._dispatch_on(session, "GUILD_MEMBERS_CHUNK", chunk)

    async def _dispatch_on(self, session: _Session, event: str, data: dict[str, Any]) -> None:
        """Send (or buffer for a resume) one dispatch on a session."""
        session.seq += 1
        frame = {"op": 0, "t": event, "s": session.seq, "d": data}
        session.sent.append(frame)
        conn = session.conn
        if conn is not None and conn.live:
            await self._send(conn, frame)
        else:
            self.gateway_sent.append(frame)
            self._notify()

    def _session_for(self, guild_id: str | None) -> _Session | None:
        """The session that gets a guild's events (DMs: shard 0's): the newest valid one whose
        shard owns the guild, as Discord routes by ``(guild_id >> 22) % num_shards``."""
        for session in reversed(self._sessions.values()):
            if not session.invalid and session.owns(guild_id):
                return session
        return None

    async def _emit(self, event: str, data: dict[str, Any], *, intent: int | None = None) -> bool:
        """Dispatch an event to the session of its guild's shard if its intents cover it."""
        session = self._session_for(data.get("guild_id"))
        if session is None:
            return False
        if intent is not None and not session.intents & intent:
            return False
        await self._dispatch_on(session, event, data)
        return True

    async def reconnect_gateway(self, timeout: float = 5.0) -> None:
        """Send op 7 RECONNECT; returns once the bot resumed on a new connection."""
        await self.wait_ready()
        old = self._latest
        assert old is not None
        await self._send(old, {"op": 7, "d": None})
        await self.wait_until(
            lambda: self._latest is not old and self._latest is not None and self._latest.ready,
            timeout,
        )

    def _application_flags(self) -> int:
        # GATEWAY_MESSAGE_CONTENT_LIMITED (1 << 19) + APPLICATION_COMMAND_BADGE (1 << 23)
        return (1 << 19) | (1 << 23)

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

    # ------------------------------------------------------------------ HTTP plumbing

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if path == "/" and request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._gateway(request)
        if path.startswith("/attachments/"):
            return self._serve_attachment(request)
        if path.startswith(API_PREFIX + "/"):
            return await self._handle_api(request, path[len(API_PREFIX) :])
        return _json_response({"message": "404: Not Found", "code": 0}, 404)

    def _serve_attachment(self, request: web.Request) -> web.Response:
        parts = request.path.split("/")
        found = self._files.get(parts[3]) if len(parts) >= 5 else None
        status = 200 if found else 404
        self.cdn_requests.append(
            RecordedRequest(
                request.method, request.path, dict(request.query), None, [], status, self.clock()
            )
        )
        self._notify()
        if found is None:
            return web.Response(status=404, text="This content is no longer available.")
        _, data, content_type = found
        return web.Response(body=data, headers={"Content-Type": content_type})

    async def _handle_api(self, request: web.Request, path: str) -> web.Response:
        if self.rest_latency > 0:  # the request's way to Discord
            await asyncio.sleep(self.rest_latency)
        started = self.clock()
        query = dict(request.query)
        body: Any = None
        files: list[tuple[str, bytes, str]] = []
        response: web.Response
        try:
            body, files = await self._read_body(request)
            response = await self._route(request, path, query, body, files)
        except ApiError as error:
            response = _json_response(error.body(), error.status)
        except RateLimitedError as limited:
            response = self._rate_limited_response(limited)
        except Exception as exc:  # a bug in the double: fail fast (a 5xx would be retried)
            self.server_errors.append(traceback.format_exc())
            text = f"FakeDiscord bug (see fake.server_errors): {exc!r}"
            response = _json_response({"message": text[:500], "code": 0}, 418)
        recorded = RecordedRequest(
            method=request.method,
            path=path,
            query=query,
            json=body,
            files=[(name, data) for name, data, _ in files],
            status=response.status,
            t=started,
            raw_response=response.body if isinstance(response.body, bytes) else b"",
            headers=dict(response.headers),
        )
        if self.validate_schemas and response.status != 418:
            mismatch = _response_mismatch(
                request.method, path, response.status, recorded.raw_response
            )
            if mismatch is not None:  # a bug in the double: it answered what Discord would not
                self.server_errors.append(f"OpenAPI response mismatch: {mismatch}")
        self.requests.append(recorded)
        if response.status == 429:
            self.rate_limited.append(recorded)
        self._notify()
        for hook in self.request_hooks:
            try:
                hook(recorded)
            except Exception:
                self.server_errors.append(traceback.format_exc())
        if self.rest_latency > 0:  # the answer's way back
            await asyncio.sleep(self.rest_latency)
        return response

    async def _read_body(self, request: web.Request) -> tuple[Any, list[tuple[str, bytes, str]]]:
        """JSON body, or payload_json + files[n] of a multipart body."""
        if not request.can_read_body:
            return None, []
        content_type = request.content_type
        if content_type.startswith("multipart/"):
            body: Any = None
            indexed: dict[int, tuple[str, bytes, str]] = {}
            reader = await request.multipart()
            while True:
                part = await reader.next()
                if part is None:
                    break
                if not isinstance(part, BodyPartReader):  # nested multipart: not used by Discord
                    continue
                name = part.name or ""
                data = await part.read(decode=False)
                if name == "payload_json":
                    body = self._parse_json(data)
                    continue
                match = re.fullmatch(r"files\[(\d+)\]", name) or re.fullmatch(r"file(\d*)", name)
                if match:
                    index = int(match.group(1) or 0)
                    part_type = part.headers.get("Content-Type", "application/octet-stream")
                    if part_type == "application/octet-stream":  # Discord sniffs the real type
                        part_type = mimetypes.guess_type(part.filename or "")[0] or part_type
                    indexed[index] = (part.filename or f"file{index}", bytes(data), part_type)
            return body, [indexed[i] for i in sorted(indexed)]
        raw = await request.read()
        if not raw:
            return None, []
        return self._parse_json(raw), []

    @staticmethod
    def _parse_json(raw: bytes | bytearray) -> Any:
        try:
            return json.loads(raw)
        except ValueError:
            raise ApiError(400, 50109, "The request body contains invalid JSON.") from None

    async def _route(
        self,
        request: web.Request,
        path: str,
        query: dict[str, str],
        body: Any,
        files: list[tuple[str, bytes, str]],
    ) -> web.Response:
        matched_path = False
        for route in self._routes_by_head.get(path.split("/", 2)[1] if "/" in path else "", ()):
            match = route.pattern.fullmatch(path)
            if match is None:
                continue
            matched_path = True
            if route.method != request.method:
                continue
            authorized = request.headers.get("Authorization") == f"Bot {self.token}"
            if route.auth and not authorized:
                raise ApiError(401, 0, "401: Unauthorized")
            params = match.groupdict()
            interaction_endpoint = route.bucket.startswith(("/interactions/", "/webhooks/"))
            if authorized and not interaction_endpoint:
                self._take_slot("global", "", self.global_budget, scope="global")
            name, major, budget = self._bucket_of(route, params)
            headers = self._take_slot(name, major, budget)
            parsed = _Request(
                request.method, path, params, query, body, files, authorized, f"{name}:{major}"
            )
            try:
                response = await route.handler(parsed)
            except ApiError as error:  # Discord counts failed requests and shows their bucket
                response = _json_response(error.body(), error.status)
            response.headers.update(headers)
            return response
        if matched_path:
            raise ApiError(405, 0, "405: Method Not Allowed")
        raise ApiError(404, 0, "404: Not Found")

    @property
    def channel_budget(self) -> tuple[int, float]:
        """Each channel's message bucket (creates and edits together): `edit_budget`."""
        return self.edit_budget

    @channel_budget.setter
    def channel_budget(self, value: tuple[int, float]) -> None:
        self.edit_budget = value

    def _bucket_of(
        self, route: _Route, params: dict[str, str]
    ) -> tuple[str, str, tuple[int, float]]:
        """(bucket name, top-level resource, budget) of a request, as Discord groups them."""
        key = (route.method, route.bucket)
        if key in CHANNEL_MESSAGE_ROUTES:
            return "channel-messages", params["channel_id"], self.edit_budget
        if key in INTERACTION_WEBHOOK_ROUTES:
            major = f"{params['app_id']}/{params['token']}"
            return "interaction-webhook", major, self.webhook_budget
        major = params.get(route.major or "", "")
        return f"{route.method} {route.bucket}", major, self.route_budget

    def _take_slot(
        self, name: str, major: str, budget: tuple[int, float], *, scope: str = "user"
    ) -> dict[str, str]:
        """Count a request in a bucket (a window opened by its first request, reset whole after
        ``per`` seconds, as Discord's Reset-After says); the X-RateLimit headers of an answer."""
        limit, per = budget
        key = f"{name}:{major}"
        now = self.clock()
        start, used = self._route_windows.get(key, (now, 0))
        if now - start >= per:
            start, used = now, 0
        # Rounded up to the millisecond: a client waiting that long lands in the next window.
        reset_after = max(math.ceil((start + per - now) * 1000) / 1000, 0.001)
        if used >= limit:
            raise RateLimitedError(reset_after, limit, name, scope)
        used += 1
        self._route_windows[key] = (start, used)
        return {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(limit - used),
            "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
            "X-RateLimit-Bucket": _bucket_hash(name),
        }

    def _rate_limited_response(self, limited: RateLimitedError) -> web.Response:
        retry_after = limited.retry_after
        headers = {"Via": "1.1 google", "Retry-After": str(math.ceil(retry_after))}
        if limited.scope == "global":  # no bucket: every route of the bot waits
            headers.update({"X-RateLimit-Global": "true", "X-RateLimit-Scope": "global"})
        else:
            headers.update(
                {
                    "X-RateLimit-Limit": str(limited.limit),
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset": f"{time.time() + retry_after:.3f}",
                    "X-RateLimit-Reset-After": f"{retry_after:.3f}",
                    "X-RateLimit-Bucket": _bucket_hash(limited.bucket),
                    "X-RateLimit-Scope": limited.scope,
                }
            )
        body = {
            "message": RATE_LIMITED_BODY_MESSAGE,
            "retry_after": retry_after,
            "global": limited.scope == "global",
            "code": 0,  # Discord's OpenAPI document requires it (0: no particular limit)
        }
        return _json_response(body, 429, headers)

    def _build_routes(self) -> list[_Route]:
        snow = r"(?P<{}>\d+)"
        table: list[
            tuple[str, str, Callable[[_Request], Awaitable[web.Response]], bool, str | None]
        ] = [
            ("GET", "/users/@me", self._get_me, True, None),
            ("GET", "/users/{user_id}", self._get_user, True, None),
            ("POST", "/users/@me/channels", self._create_dm, True, None),
            ("GET", "/oauth2/applications/@me", self._get_application, True, None),
            ("GET", "/applications/@me", self._get_application, True, None),
            ("GET", "/gateway", self._get_gateway, False, None),
            ("GET", "/gateway/bot", self._get_gateway_bot, True, None),
            ("GET", "/applications/{app_id}/commands", self._get_commands, True, "app_id"),
            ("PUT", "/applications/{app_id}/commands", self._put_commands, True, "app_id"),
            ("POST", "/applications/{app_id}/commands", self._post_command, True, "app_id"),
            (
                "GET",
                "/applications/{app_id}/guilds/{guild_id}/commands",
                self._get_commands,
                True,
                "guild_id",
            ),
            (
                "PUT",
                "/applications/{app_id}/guilds/{guild_id}/commands",
                self._put_commands,
                True,
                "guild_id",
            ),
            (
                "POST",
                "/applications/{app_id}/guilds/{guild_id}/commands",
                self._post_command,
                True,
                "guild_id",
            ),
            (
                "POST",
                "/interactions/{interaction_id}/{token}/callback",
                self._callback,
                False,
                "interaction_id",
            ),
            ("POST", "/webhooks/{app_id}/{token}", self._followup, False, "token"),
            (
                "GET",
                "/webhooks/{app_id}/{token}/messages/{message_id}",
                self._get_webhook_message,
                False,
                "token",
            ),
            (
                "PATCH",
                "/webhooks/{app_id}/{token}/messages/{message_id}",
                self._edit_webhook_message,
                False,
                "token",
            ),
            (
                "DELETE",
                "/webhooks/{app_id}/{token}/messages/{message_id}",
                self._delete_webhook_message,
                False,
                "token",
            ),
            ("GET", "/guilds/{guild_id}", self._get_guild, True, "guild_id"),
            ("GET", "/guilds/{guild_id}/channels", self._get_guild_channels, True, "guild_id"),
            ("GET", "/guilds/{guild_id}/roles", self._get_guild_roles, True, "guild_id"),
            (
                "GET",
                "/guilds/{guild_id}/members/{user_id}",
                self._get_guild_member,
                True,
                "guild_id",
            ),
            ("GET", "/channels/{channel_id}", self._get_channel, True, "channel_id"),
            ("GET", "/channels/{channel_id}/messages", self._get_history, True, "channel_id"),
            ("POST", "/channels/{channel_id}/messages", self._create_message, True, "channel_id"),
            (
                "GET",
                "/channels/{channel_id}/messages/{message_id}",
                self._get_message,
                True,
                "channel_id",
            ),
            (
                "PATCH",
                "/channels/{channel_id}/messages/{message_id}",
                self._edit_message,
                True,
                "channel_id",
            ),
            (
                "DELETE",
                "/channels/{channel_id}/messages/{message_id}",
                self._delete_message,
                True,
                "channel_id",
            ),
            (
                "PUT",
                "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me",
                self._add_reaction,
                True,
                "channel_id",
            ),
            ("POST", "/channels/{channel_id}/typing", self._typing, True, "channel_id"),
            ("POST", "/channels/{channel_id}/threads", self._create_thread, True, "channel_id"),
            (
                "POST",
                "/channels/{channel_id}/messages/{message_id}/threads",
                self._create_thread,
                True,
                "channel_id",
            ),
            (
                "PUT",
                "/channels/{channel_id}/thread-members/{user_id}",
                self._add_thread_member,
                True,
                "channel_id",
            ),
        ]
        routes: list[_Route] = []
        for method, template, handler, auth, major in table:
            regex = re.escape(template)
            for name in re.findall(r"\{(\w+)\}", template):
                escaped = re.escape("{" + name + "}")
                if name == "token" or name == "emoji":
                    group = rf"(?P<{name}>[^/]+)"
                elif name == "message_id" and template.startswith("/webhooks"):
                    group = rf"(?P<{name}>\d+|@original)"
                else:
                    group = snow.format(name)
                regex = regex.replace(escaped, group)
            routes.append(_Route(method, re.compile(regex), handler, auth, template, major))
        return routes

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


@functools.cache
def _bucket_hash(key: str) -> str:
    """A stable, opaque bucket id like Discord's X-RateLimit-Bucket."""
    return hashlib.sha1(key.encode()).hexdigest()[:32]


__all__ = [
    "ApiError",
    "FakeDiscord",
    "FakeGuild",
    "FakeInteraction",
    "FakeMessage",
    "RecordedRequest",
]
