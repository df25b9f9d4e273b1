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

Where it lives (tests/doubles/discord/, one concern a module; tests/README.md explains how they
fit): `double` (FakeDiscord: the state tests read, start/close, waiting), `world` (guilds,
channels, members, roles, permissions), `actions` (what users do: slash commands, buttons,
modals, messages), `gateway` (websocket sessions, heartbeats, zlib-stream, dispatch, shards),
`routes` (the REST route table `ROUTES` and request plumbing), `rest` and `webhooks` (the route
handlers), `messages` (message payloads and effects), `limits` (rate limit buckets),
`validation` (Discord's limits on bodies, components, commands), `schemas` (OpenAPI checks),
`records` (what is recorded), `constants` and `helpers`. This module only re-exports them.
"""

from __future__ import annotations

from tests.doubles.discord.constants import (  # noqa: F401
    ADD_REACTIONS,
    ADMIN_ROLE_PERMISSIONS,
    ADMINISTRATOR,
    ALL_PERMISSIONS,
    ALLOWED_CALLBACKS,
    API_PREFIX,
    APPLICATION_COMMAND,
    ATTACH_FILES,
    ATTACHMENT_SIZE_LIMIT,
    AUTOCOMPLETE,
    BOT_ROLE_PERMISSIONS,
    CALLBACK_SCHEMAS,
    CHANGE_NICKNAME,
    CONNECT,
    CREATE_INSTANT_INVITE,
    CREATE_PRIVATE_THREADS,
    CREATE_PUBLIC_THREADS,
    DISCORD_EPOCH_MS,
    DM,
    EMBED_LINKS,
    EVERYONE_PERMISSIONS,
    FLAG_COMPONENTS_V2,
    FLAG_EPHEMERAL,
    FLAG_LOADING,
    FLAG_SUPPRESS_EMBEDS,
    FLAG_SUPPRESS_NOTIFICATIONS,
    GUILD_TEXT,
    INTENT_DIRECT_MESSAGES,
    INTENT_GUILD_MEMBERS,
    INTENT_GUILD_MESSAGES,
    INTENT_GUILD_PRESENCES,
    INTENT_GUILDS,
    INTENT_MESSAGE_CONTENT,
    MANAGE_CHANNELS,
    MANAGE_GUILD,
    MANAGE_MESSAGES,
    MENTION_EVERYONE,
    MESSAGE_COMPONENT,
    MODAL_SUBMIT,
    PING,
    PRIVATE_THREAD,
    PRIVILEGED_INTENTS,
    PUBLIC_THREAD,
    READ_MESSAGE_HISTORY,
    SEND_MESSAGES,
    SEND_MESSAGES_IN_THREADS,
    SPEAK,
    THREAD_TYPES,
    USE_APPLICATION_COMMANDS,
    USE_EXTERNAL_EMOJIS,
    VIEW_CHANNEL,
)
from tests.doubles.discord.double import FakeDiscord
from tests.doubles.discord.gateway import _connected, _Connection, _Session  # noqa: F401
from tests.doubles.discord.helpers import (  # noqa: F401
    _IMMUTABLE,
    _clone,
    _iso,
    _json_response,
    _now_iso,
    _numbered,
    _option_type,
    _shard_field,
    _snowflake_iso,
    _Snowflakes,
    _truthy,
    _walk_components,
    shard_of,
    snowflake_time,
)
from tests.doubles.discord.limits import (  # noqa: F401
    CHANNEL_MESSAGE_BUDGET,
    CHANNEL_MESSAGE_ROUTES,
    GLOBAL_BUDGET,
    INTERACTION_WEBHOOK_BUDGET,
    INTERACTION_WEBHOOK_ROUTES,
    RATE_LIMITED_BODY_MESSAGE,
    _bucket_hash,
)
from tests.doubles.discord.records import (  # noqa: F401
    ApiError,
    FakeGuild,
    FakeInteraction,
    FakeMessage,
    RateLimitedError,
    RecordedRequest,
    _add_error,
    _errors_at,
    _form_error,
)
from tests.doubles.discord.routes import _Request, _Route  # noqa: F401
from tests.doubles.discord.schemas import (  # noqa: F401
    OPENAPI_PATH,
    _describe_error,
    _leaf_errors,
    _merge_errors,
    _openapi,
    _request_validator,
    _response_mismatch,
    _response_validator,
    _schema_errors,
    _schema_validator,
    _spec_path_of,
    _spec_paths,
)
from tests.doubles.discord.validation import (  # noqa: F401
    BUTTON,
    COMMAND_SIZE_LIMIT,
    ROW_WIDTH,
    SELECT_TYPES,
    STRING_SELECT,
    SUBCOMMAND,
    SUBCOMMAND_GROUP,
    _command_errors,
    _command_size,
    _component_errors,
    _embed_length,
    _message_limit_errors,
    _options_errors,
    _select_errors,
    _valid_command_name,
)

__all__ = [
    "ApiError",
    "FakeDiscord",
    "FakeGuild",
    "FakeInteraction",
    "FakeMessage",
    "RecordedRequest",
]
