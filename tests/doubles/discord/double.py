"""`FakeDiscord`: the state tests read, start and close, and waiting on what the bot does.

The behaviour lives in mixins, one concern a module (`world`, `actions`, `gateway`, `routes`,
`rest`, `webhooks`, `messages`, `limits`); they share the state `FakeDiscord.__init__` builds.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import secrets
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from tests.doubles.discord.actions import ActionsMixin
from tests.doubles.discord.constants import (
    ADMIN_ROLE_PERMISSIONS,
    API_PREFIX,
    BOT_ROLE_PERMISSIONS,
    EVERYONE_PERMISSIONS,
    INTENT_MESSAGE_CONTENT,
    PRIVILEGED_INTENTS,
)
from tests.doubles.discord.gateway import GatewayMixin, _connected, _Connection, _Session
from tests.doubles.discord.helpers import _now_iso, _Snowflakes
from tests.doubles.discord.limits import (
    CHANNEL_MESSAGE_BUDGET,
    GLOBAL_BUDGET,
    INTERACTION_WEBHOOK_BUDGET,
    LimitsMixin,
)
from tests.doubles.discord.messages import MessagesMixin
from tests.doubles.discord.records import FakeGuild, FakeInteraction, FakeMessage, RecordedRequest
from tests.doubles.discord.rest import RestMixin
from tests.doubles.discord.routes import RoutingMixin, _Route
from tests.doubles.discord.schemas import _openapi
from tests.doubles.discord.webhooks import WebhooksMixin
from tests.doubles.discord.world import WorldMixin


class FakeDiscord(
    ActionsMixin,
    WorldMixin,
    MessagesMixin,
    GatewayMixin,
    RoutingMixin,
    RestMixin,
    WebhooksMixin,
    LimitsMixin,
):
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
