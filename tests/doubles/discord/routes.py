"""REST plumbing: the route table (`ROUTES`, one named `RouteSpec` a route), reading request
bodies (JSON or multipart with files), matching a route, counting it in its rate limit bucket,
calling its handler, recording the exchange and checking the answer against Discord's schema."""

from __future__ import annotations

import asyncio
import json
import mimetypes
import re
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import BodyPartReader, web

from tests.doubles.discord.constants import API_PREFIX
from tests.doubles.discord.helpers import _json_response
from tests.doubles.discord.records import ApiError, RateLimitedError, RecordedRequest
from tests.doubles.discord.schemas import _response_mismatch


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


@dataclass(frozen=True)
class RouteSpec:
    """One REST route of the double, as written in `ROUTES`.

    ``path`` is Discord's path template (``{name}`` parameters are snowflakes, except ``token``,
    ``emoji`` and a webhook's ``message_id``, which may be ``@original``); it also names the
    route's rate limit bucket. ``handler`` is the FakeDiscord method (``async (self, _Request) ->
    web.Response``) that answers it.
    """

    method: str
    path: str
    handler: str
    auth: bool = True  # needs "Authorization: Bot <token>"
    major: str | None = None  # the path parameter that keys the rate limit bucket


# Every REST route the double answers (an unknown path is 404, a known path with another method
# 405, as on Discord). Adding a route: a line here and a handler method (tests/README.md).
ROUTES: tuple[RouteSpec, ...] = (
    RouteSpec("GET", "/users/@me", "_get_me"),
    RouteSpec("GET", "/users/{user_id}", "_get_user"),
    RouteSpec("POST", "/users/@me/channels", "_create_dm"),
    RouteSpec("GET", "/oauth2/applications/@me", "_get_application"),
    RouteSpec("GET", "/applications/@me", "_get_application"),
    RouteSpec("GET", "/gateway", "_get_gateway", auth=False),
    RouteSpec("GET", "/gateway/bot", "_get_gateway_bot"),
    RouteSpec("GET", "/applications/{app_id}/commands", "_get_commands", major="app_id"),
    RouteSpec("PUT", "/applications/{app_id}/commands", "_put_commands", major="app_id"),
    RouteSpec("POST", "/applications/{app_id}/commands", "_post_command", major="app_id"),
    RouteSpec(
        "GET",
        "/applications/{app_id}/guilds/{guild_id}/commands",
        "_get_commands",
        major="guild_id",
    ),
    RouteSpec(
        "PUT",
        "/applications/{app_id}/guilds/{guild_id}/commands",
        "_put_commands",
        major="guild_id",
    ),
    RouteSpec(
        "POST",
        "/applications/{app_id}/guilds/{guild_id}/commands",
        "_post_command",
        major="guild_id",
    ),
    RouteSpec(
        "POST",
        "/interactions/{interaction_id}/{token}/callback",
        "_callback",
        auth=False,
        major="interaction_id",
    ),
    RouteSpec("POST", "/webhooks/{app_id}/{token}", "_followup", auth=False, major="token"),
    RouteSpec(
        "GET",
        "/webhooks/{app_id}/{token}/messages/{message_id}",
        "_get_webhook_message",
        auth=False,
        major="token",
    ),
    RouteSpec(
        "PATCH",
        "/webhooks/{app_id}/{token}/messages/{message_id}",
        "_edit_webhook_message",
        auth=False,
        major="token",
    ),
    RouteSpec(
        "DELETE",
        "/webhooks/{app_id}/{token}/messages/{message_id}",
        "_delete_webhook_message",
        auth=False,
        major="token",
    ),
    RouteSpec("GET", "/guilds/{guild_id}", "_get_guild", major="guild_id"),
    RouteSpec("GET", "/guilds/{guild_id}/channels", "_get_guild_channels", major="guild_id"),
    RouteSpec("GET", "/guilds/{guild_id}/roles", "_get_guild_roles", major="guild_id"),
    RouteSpec("GET", "/guilds/{guild_id}/members/{user_id}", "_get_guild_member", major="guild_id"),
    RouteSpec("GET", "/channels/{channel_id}", "_get_channel", major="channel_id"),
    RouteSpec("GET", "/channels/{channel_id}/messages", "_get_history", major="channel_id"),
    RouteSpec("POST", "/channels/{channel_id}/messages", "_create_message", major="channel_id"),
    RouteSpec(
        "GET", "/channels/{channel_id}/messages/{message_id}", "_get_message", major="channel_id"
    ),
    RouteSpec(
        "PATCH", "/channels/{channel_id}/messages/{message_id}", "_edit_message", major="channel_id"
    ),
    RouteSpec(
        "DELETE",
        "/channels/{channel_id}/messages/{message_id}",
        "_delete_message",
        major="channel_id",
    ),
    RouteSpec(
        "PUT",
        "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me",
        "_add_reaction",
        major="channel_id",
    ),
    RouteSpec("POST", "/channels/{channel_id}/typing", "_typing", major="channel_id"),
    RouteSpec("POST", "/channels/{channel_id}/threads", "_create_thread", major="channel_id"),
    RouteSpec(
        "POST",
        "/channels/{channel_id}/messages/{message_id}/threads",
        "_create_thread",
        major="channel_id",
    ),
    RouteSpec(
        "PUT",
        "/channels/{channel_id}/thread-members/{user_id}",
        "_add_thread_member",
        major="channel_id",
    ),
)


class RoutingMixin:
    """Serving HTTP: the Gateway upgrade, attachments and the REST API (state: `requests`,
    `rate_limited`, `cdn_requests`, `server_errors`)."""

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

    def _build_routes(self) -> list[_Route]:
        """`ROUTES` compiled: each template as a regex, each handler bound to this double."""
        snow = r"(?P<{}>\d+)"
        routes: list[_Route] = []
        for spec in ROUTES:
            template = spec.path
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
            handler = getattr(self, spec.handler)
            routes.append(
                _Route(spec.method, re.compile(regex), handler, spec.auth, template, spec.major)
            )
        return routes
