"""Sharding in `FakeDiscord`: each shard's connection gets its own guilds, as on Discord."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import discord
import pytest
import yarl

from tests.doubles.fake_discord import (
    INTENT_DIRECT_MESSAGES,
    INTENT_GUILD_MESSAGES,
    INTENT_GUILDS,
    FakeDiscord,
    shard_of,
)

INTENTS = INTENT_GUILDS | INTENT_GUILD_MESSAGES | INTENT_DIRECT_MESSAGES


class RawShard:
    """A bare Gateway connection: IDENTIFY with a shard, then collect dispatches."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []
        self.closed_with: int | None = None
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self.ws:
            if message.type is aiohttp.WSMsgType.TEXT:
                frame = json.loads(message.data)
                if frame.get("op") == 0:
                    self.events.append(frame)
        self.closed_with = self.ws.close_code

    def seen(self, event: str) -> list[dict[str, Any]]:
        return [frame["d"] for frame in self.events if frame["t"] == event]

    async def close(self) -> None:
        await self.ws.close()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as double:
        yield double


@contextlib.asynccontextmanager
async def shard(fake: FakeDiscord, shard: list[int] | None) -> AsyncIterator[RawShard]:
    async with aiohttp.ClientSession() as http, http.ws_connect(fake.gateway_url) as ws:
        hello = await ws.receive_json()
        assert hello["op"] == 10
        identify: dict[str, Any] = {"token": fake.token, "intents": INTENTS, "properties": {}}
        if shard is not None:
            identify["shard"] = shard
        await ws.send_json({"op": 2, "d": identify})
        raw = RawShard(ws)
        try:
            yield raw
        finally:
            await raw.close()


async def test_each_shard_gets_ready_and_the_guilds_discord_routes_to_it(
    fake: FakeDiscord,
) -> None:
    zero = await fake.add_guild("Zero", shard=(0, 2))
    one = await fake.add_guild("One", ["lobby", "chat"], shard=(1, 2))
    assert (shard_of(zero, 2), shard_of(one, 2)) == (0, 1)
    by_shard: dict[int, set[str]] = {0: set(), 1: set()}
    for guild_id in fake.guilds:
        by_shard[shard_of(guild_id, 2)].add(guild_id)
    async with shard(fake, [0, 2]) as first, shard(fake, [1, 2]) as second:
        await fake.wait_ready(shard=0)
        await fake.wait_ready(shard=1)
        assert fake.shards == [(0, 2), (1, 2)]
        for raw, shard_id in ((first, 0), (second, 1)):
            ready = raw.seen("READY")[0]
            assert ready["shard"] == [shard_id, 2]
            assert {g["id"] for g in ready["guilds"]} == by_shard[shard_id]
            created = raw.seen("GUILD_CREATE")
            assert {g["id"] for g in created} == by_shard[shard_id]
        lobby = next(g for g in second.seen("GUILD_CREATE") if g["id"] == one)
        assert [c["name"] for c in lobby["channels"]] == ["lobby", "chat"]
        assert {m["user"]["id"] for m in lobby["members"]} == {fake.bot_user["id"]}


async def test_events_go_to_the_shard_of_their_guild_and_dms_to_shard_zero(
    fake: FakeDiscord,
) -> None:
    one = await fake.add_guild("One", shard=(1, 2))
    zero = await fake.add_guild("Zero", shard=(0, 2))
    async with shard(fake, [0, 2]) as first, shard(fake, [1, 2]) as second:
        await fake.wait_ready(shard=0)
        await fake.wait_ready(shard=1)
        in_one = await fake.user_message("hi one", channel_id=fake.guild_channel_ids(one)[0])
        in_zero = await fake.user_message("hi zero", channel_id=fake.guild_channel_ids(zero)[0])
        dm = await fake.user_message("hi dm", channel_id=fake.add_dm_channel("bob"))
        command = await fake.slash_command("chat", {"message": "x"}, channel_id=in_one.channel_id)

        def ids(raw: RawShard, event: str) -> set[str]:
            return {d["id"] for d in raw.seen(event)}

        await fake.wait_until(lambda: command.id in ids(second, "INTERACTION_CREATE"))
        await fake.wait_until(lambda: dm.id in ids(first, "MESSAGE_CREATE"))
        assert in_one.id in ids(second, "MESSAGE_CREATE")
        assert in_zero.id in ids(first, "MESSAGE_CREATE")
        assert not ids(first, "MESSAGE_CREATE") & {in_one.id}
        assert not ids(second, "MESSAGE_CREATE") & {in_zero.id, dm.id}
        assert not ids(first, "INTERACTION_CREATE")

        late = await fake.add_guild("Late", shard=(1, 2))  # invited while connected
        await fake.wait_until(lambda: late in ids(second, "GUILD_CREATE"))
        assert late not in ids(first, "GUILD_CREATE")


async def test_an_invalid_shard_is_refused_with_4010(fake: FakeDiscord) -> None:
    async with shard(fake, [2, 2]) as raw:
        await fake.wait_until(lambda: raw.closed_with is not None)
        assert raw.closed_with == 4010
        assert not raw.events


async def test_gateway_bot_recommends_the_shard_count(fake: FakeDiscord) -> None:
    fake.recommended_shards = 3
    headers = {"Authorization": f"Bot {fake.token}"}
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{fake.api_base}/gateway/bot", headers=headers) as response,
    ):
        body = await response.json()
    assert body["shards"] == 3
    assert body["url"] == fake.gateway_url


async def test_an_auto_sharded_discord_py_client_runs_every_recommended_shard(
    fake: FakeDiscord, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only Route.BASE is patched: the client learns the Gateway's URL from /gateway/bot."""
    monkeypatch.setattr(discord.http.Route, "BASE", fake.api_base)
    monkeypatch.setattr(
        discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL("ws://127.0.0.1:9/")
    )
    fake.recommended_shards = 2
    one = await fake.add_guild("One", shard=(1, 2))
    client = discord.AutoShardedClient(
        intents=discord.Intents.default(), guild_ready_timeout=0.05, chunk_guilds_at_startup=False
    )

    async def no_wait(shard_id: int | None, *, initial: bool = False) -> None:
        """discord.py waits 5 s between IDENTIFYs of its shards; the double has no limit."""

    client.before_identify_hook = no_wait  # type: ignore[method-assign]
    task = asyncio.create_task(client.start(fake.token))
    try:
        await asyncio.wait_for(client.wait_until_ready(), 10)
        assert client.shard_count == 2
        assert sorted(client.shards) == [0, 1]
        assert {str(g.id) for g in client.guilds} == set(fake.guilds)
        guild = client.get_guild(int(one))
        assert guild is not None and guild.shard_id == 1
    finally:
        await client.close()
        await asyncio.wait_for(task, 5)
