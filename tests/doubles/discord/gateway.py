"""The Gateway: websocket sessions, HELLO/IDENTIFY/RESUME, heartbeats (4009 for a silent
connection), zlib-stream compression, intents (4014 for privileged ones the portal refuses),
event dispatch to the session that owns a guild, and shards."""

from __future__ import annotations

import asyncio
import json
import secrets
import traceback
import zlib
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from tests.doubles.discord.constants import INTENT_GUILDS, PRIVILEGED_INTENTS
from tests.doubles.discord.helpers import _shard_field, shard_of


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


def _connected(session: _Session | None) -> bool:
    conn = session.conn if session is not None else None
    return conn is not None and conn.live and conn.ready


class GatewayMixin:
    """The Gateway websocket: sessions, heartbeats, dispatch (state: `_sessions`, `_connections`,
    `gateway_sent`, `gateway_received`, `identify`)."""

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
