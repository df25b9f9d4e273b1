"""Rate limits counted like Discord's: each route's bucket, the channel message bucket (creates
and edits), the interaction webhook bucket and the bot's global limit, with X-RateLimit headers
and real 429 answers."""

from __future__ import annotations

import functools
import hashlib
import math
import time

from aiohttp import web

from tests.doubles.discord.helpers import _json_response
from tests.doubles.discord.records import RateLimitedError
from tests.doubles.discord.routes import _Route

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


class LimitsMixin:
    """Rate limit buckets (state: `_route_windows` and the budgets set in `__init__`)."""

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


@functools.cache
def _bucket_hash(key: str) -> str:
    """A stable, opaque bucket id like Discord's X-RateLimit-Bucket."""
    return hashlib.sha1(key.encode()).hexdigest()[:32]
