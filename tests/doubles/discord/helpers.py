"""Small helpers the double's modules share: snowflakes, shard numbers, timestamps, JSON answers,
cheap copies of JSON data and component trees."""

from __future__ import annotations

import copy
import functools
import json
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from tests.doubles.discord.constants import DISCORD_EPOCH_MS


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
