"""HistoryStore: every channel's turns, written so that nothing is lost or half-written."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any, NamedTuple

from sqlalchemy import (
    and_,
    bindparam,
    delete,
    exists,
    func,
    insert,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from bot.storage.engine import Database
from bot.storage.models import Meta, Role, Turn, TurnImage, TurnStatus


class StoredTurn(NamedTuple):
    """A stored turn. A named tuple: a reply reads dozens of them, and a frozen dataclass cost
    five times as much to build (bench/README.md)."""

    id: int
    channel_id: int
    role: str
    author_id: int
    author_name: str
    content: str
    model: str | None
    status: str
    error: str | None
    reply_to_id: int | None
    prompt_tokens: int | None
    completion_tokens: int | None
    total_duration_ns: int | None
    eval_duration_ns: int | None
    created_at: datetime
    persona: str | None = None
    done_reason: str | None = None
    discord_message_id: int | None = None


@dataclass(frozen=True, slots=True)
class Author:
    id: int
    name: str


@dataclass(frozen=True, slots=True)
class ImageRecord:
    """An image of a user turn, in the bounded form it is stored (and sent) in."""

    mime: str
    width: int
    height: int
    data: bytes


@dataclass(frozen=True, slots=True)
class Recent:
    """A channel's newest turns, oldest first, and the stored images of some of them."""

    turns: list[StoredTurn]
    images: dict[int, list[ImageRecord]]
    """Turn id -> its images, in their order; only turns with images."""
    channel_has_images: bool | None = None
    """Whether the channel has any stored image; None when that was not looked up."""


@dataclass(frozen=True, slots=True)
class Summary:
    """A channel's summary turn: it stands for every turn up to `covers_until` in contexts."""

    id: int
    content: str
    covers_until: int
    covered: int
    """How many messages it folds in."""
    announced: bool
    """A reply's footer has said so already."""


@dataclass(frozen=True, slots=True)
class TurnResult:
    """How an assistant turn ended."""

    status: TurnStatus
    content: str
    error: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_duration_ns: int | None = None
    load_duration_ns: int | None = None
    prompt_duration_ns: int | None = None
    eval_duration_ns: int | None = None
    discord_message_id: int | None = None
    done_reason: str | None = None
    reasoning: str | None = None
    """The model's thinking (None: it did not think, or said nothing of it)."""


@dataclass(frozen=True, slots=True)
class Reasoning:
    """An assistant turn's thinking, for the Show reasoning button."""

    channel_id: int
    text: str


_STORED_COLUMNS = [getattr(Turn, name) for name in StoredTurn._fields]
# Built once: composing a statement costs more than running it on a small table.
# Summary turns stand in for older turns in contexts (`latest_summary`); they are never part
# of the conversation people see, nor of the turns a context is chosen from.
_CONVERSATION = Turn.role != Role.SUMMARY.value
_NEWEST = (
    select(*_STORED_COLUMNS)
    .where(Turn.channel_id == bindparam("channel_id"), _CONVERSATION)
    .order_by(Turn.id.desc())
    .limit(bindparam("limit"))
)
_NEWEST_BEFORE = _NEWEST.where(Turn.id < bindparam("before"))
_CHANNEL_HAS_IMAGES = select(
    exists().where(TurnImage.turn_id == Turn.id).where(Turn.channel_id == bindparam("channel_id"))
)
# Every reply writes its exchange with these: prebuilt Core statements skip the ORM's unit of
# work and its bookkeeping, which cost more than the SQL (bench/README.md).
_INSERT_TURN = insert(Turn).returning(Turn.id)
_FINISHED_FIELDS = (
    "status",
    "content",
    "error",
    "prompt_tokens",
    "completion_tokens",
    "total_duration_ns",
    "load_duration_ns",
    "prompt_duration_ns",
    "eval_duration_ns",
    "discord_message_id",
    "done_reason",
    "reasoning",
)
_FINISH_TURN = (
    update(Turn)
    .where(Turn.id == bindparam("turn"))
    .values({name: bindparam(f"new_{name}") for name in _FINISHED_FIELDS})
)
_INSERT_IMAGE = insert(TurnImage)
_IMAGES_OF = (
    select(TurnImage.turn_id, TurnImage.mime, TurnImage.width, TurnImage.height, TurnImage.data)
    .where(TurnImage.turn_id.in_(bindparam("turn_ids", expanding=True)))
    .order_by(TurnImage.turn_id, TurnImage.position)
)


_ALL = (
    select(*_STORED_COLUMNS)
    .where(Turn.channel_id == bindparam("channel_id"), _CONVERSATION)
    .order_by(Turn.id)
)
_COUNT = (
    select(func.count())
    .select_from(Turn)
    .where(Turn.channel_id == bindparam("channel_id"), _CONVERSATION)
)
_LATEST_SUMMARY = (
    select(Turn.id, Turn.content, Turn.covers_until, Turn.covered, Turn.announced)
    .where(Turn.channel_id == bindparam("channel_id"), Turn.role == Role.SUMMARY.value)
    .order_by(Turn.id.desc())
    .limit(1)
)
_META = select(Meta.value).where(Meta.key == bindparam("key"))


def _begin_exchange(
    conn: Connection,
    common: dict[str, Any],
    user: dict[str, Any],
    reply: dict[str, Any],
    images: Sequence[ImageRecord],
) -> tuple[int, int]:
    user_turn: int = conn.execute(_INSERT_TURN, {**common, **user}).scalar_one()
    if images:
        conn.execute(
            _INSERT_IMAGE,
            [
                {
                    "turn_id": user_turn,
                    "position": position,
                    "mime": image.mime,
                    "width": image.width,
                    "height": image.height,
                    "data": image.data,
                }
                for position, image in enumerate(images)
            ],
        )
    reply_turn: int = conn.execute(
        _INSERT_TURN, {**common, **reply, "reply_to_id": user_turn}
    ).scalar_one()
    return user_turn, reply_turn


def _newest(conn: Connection, channel_id: int, limit: int, before: int | None) -> list[StoredTurn]:
    statement = _NEWEST if before is None else _NEWEST_BEFORE
    rows = conn.execute(statement, {"channel_id": channel_id, "limit": limit, "before": before})
    return [StoredTurn(*row) for row in reversed(rows.all())]


def _recent(
    conn: Connection,
    channel_id: int,
    limit: int,
    images_of: Callable[[Sequence[StoredTurn]], Collection[int]] | None,
    look_up: bool,
) -> Recent:
    turns = _newest(conn, channel_id, limit, None)
    has_images = None
    if images_of is not None and look_up:
        has_images = bool(conn.execute(_CHANNEL_HAS_IMAGES, {"channel_id": channel_id}).scalar())
        if not has_images:
            images_of = None
    wanted = images_of(turns) if images_of is not None else ()
    return Recent(turns, _images_for(conn, wanted) if wanted else {}, has_images)


def _images_for(conn: Connection, turn_ids: Collection[int]) -> dict[int, list[ImageRecord]]:
    found: dict[int, list[ImageRecord]] = {}
    for turn, mime, width, height, data in conn.execute(_IMAGES_OF, {"turn_ids": list(turn_ids)}):
        found.setdefault(turn, []).append(ImageRecord(mime, width, height, data))
    return found


def _delete_turns(conn: Connection, turn_ids: Collection[int]) -> None:
    ids = list(turn_ids)
    for start in range(0, len(ids), 500):  # bounded statements on huge histories
        chunk = ids[start : start + 500]
        conn.execute(delete(TurnImage).where(TurnImage.turn_id.in_(chunk)))
        conn.execute(delete(Turn).where(Turn.id.in_(chunk)))


def _clear(conn: Connection, channel_id: int) -> int:
    # The foreign key cascades too; deleting the images first does not depend on it (SQLite
    # enforces foreign keys only when a connection asks for it).
    channel_turns = select(Turn.id).where(Turn.channel_id == channel_id)
    conn.execute(delete(TurnImage).where(TurnImage.turn_id.in_(channel_turns)))
    result = conn.execute(delete(Turn).where(Turn.channel_id == channel_id))
    return int(result.rowcount or 0)


_COPIED_FIELDS = (
    "role",
    "author_id",
    "author_name",
    "content",
    "model",
    "persona",
    "status",
    "error",
    "prompt_tokens",
    "completion_tokens",
    "total_duration_ns",
    "load_duration_ns",
    "prompt_duration_ns",
    "eval_duration_ns",
    "done_reason",
    "created_at",
)


def _set_meta(conn: Connection, key: str, value: str) -> None:
    if conn.execute(_META, {"key": key}).first() is None:
        conn.execute(insert(Meta).values(key=key, value=value))
    else:
        conn.execute(update(Meta).where(Meta.key == key).values(value=value))


IMAGE_FLAGS_KEPT = 100_000
"""Channels whose "has any image" flag is kept in memory (a few MB at most)."""


class HistoryStore:
    """Reads and writes turns, each call one unit of work on the Database (one transaction)."""

    def __init__(self, database: Database) -> None:
        self._db = database
        # Channel -> whether it has any stored image. Most channels never see one, and then a
        # reply need not look for earlier images (a query of its own on every reply). This
        # process writes every image of its channels (a channel belongs to one shard).
        self._with_images: dict[int, bool] = {}
        # Channels known to have no summary: most never get one, and a reply need not ask
        # (this process writes every summary of its channels, as it writes their images).
        self._without_summary: set[int] = set()
        self._summary_writes = 0  # a read that saw none counts only if no summary came meanwhile

    async def begin_exchange(
        self,
        *,
        channel_id: int,
        guild_id: int | None,
        user: Author,
        text: str,
        assistant: Author,
        model: str,
        request_id: str,
        persona: str | None = None,
        images: Sequence[ImageRecord] = (),
        source_message_id: int | None = None,
    ) -> tuple[int, int]:
        """Store the user's turn (with its images) and a `streaming` assistant turn in one
        transaction. `source_message_id`: the Discord message the question came from, if any
        (a mention, a reply, an auto-reply channel): when its author deletes it, the turn goes.

        Returns (user turn id, assistant turn id). If the bot dies before `finish_turn`, the
        assistant turn is found at the next start and marked incomplete. If the caller is
        cancelled meanwhile, nothing stays stored."""
        work = partial(
            _begin_exchange,
            common={"channel_id": channel_id, "guild_id": guild_id, "request_id": request_id},
            user={
                "role": Role.USER,
                "author_id": user.id,
                "author_name": user.name,
                "content": text,
                "status": TurnStatus.COMPLETE,
                "discord_message_id": source_message_id,
            },
            reply={
                "role": Role.ASSISTANT,
                "author_id": assistant.id,
                "author_name": assistant.name,
                "content": "",
                "model": model,
                "persona": persona,
                "status": TurnStatus.STREAMING,
            },
            images=images,
        )
        turns = await self._db.write(work, undo=_delete_turns)
        if images:
            self._remember_images(channel_id, True)
        return turns

    def _remember_images(self, channel_id: int, has_images: bool) -> None:
        if channel_id not in self._with_images and len(self._with_images) >= IMAGE_FLAGS_KEPT:
            self._with_images.pop(next(iter(self._with_images)))  # the oldest entry
        self._with_images[channel_id] = has_images

    async def finish_turn(self, turn_id: int, result: TurnResult) -> None:
        """Write the assistant turn's final text, metrics and status in one statement."""
        values = {"turn": turn_id, **{f"new_{n}": getattr(result, n) for n in _FINISHED_FIELDS}}

        def work(conn: Connection) -> None:
            conn.execute(_FINISH_TURN, values)

        await self._db.write(work)

    async def newest(
        self, channel_id: int, limit: int, *, before: int | None = None
    ) -> list[StoredTurn]:
        """The channel's newest `limit` turns (older than turn `before`, if given), oldest
        first. Read as plain rows: every reply reads its context this way, and ORM objects
        cost several times more to build than the rows themselves."""
        return await self._db.read(
            partial(_newest, channel_id=channel_id, limit=limit, before=before)
        )

    async def recent(
        self,
        channel_id: int,
        limit: int,
        *,
        images_of: Callable[[Sequence[StoredTurn]], Collection[int]] | None = None,
    ) -> Recent:
        """The channel's newest `limit` turns, oldest first, with the images of those of them
        that `images_of` picks, in one read: a reply needs both before it is stored (the
        images decide which model answers), and each read has a fixed cost well above its
        rows'. `images_of` runs on the database's thread: a plain function of the turns."""
        known = self._with_images.get(channel_id)
        if known is False:
            images_of = None
        recent = await self._db.read(
            partial(
                _recent,
                channel_id=channel_id,
                limit=limit,
                images_of=images_of,
                look_up=known is None,
            )
        )
        if recent.channel_has_images is not None and channel_id not in self._with_images:
            self._remember_images(channel_id, recent.channel_has_images)
        return recent

    async def images_for(self, turn_ids: Collection[int]) -> dict[int, list[ImageRecord]]:
        """The images of these turns, in their order; turns without images are left out."""
        if not turn_ids:
            return {}
        return await self._db.read(partial(_images_for, turn_ids=list(turn_ids)))

    async def all(self, channel_id: int) -> list[StoredTurn]:
        def work(conn: Connection) -> list[StoredTurn]:
            return [StoredTurn(*row) for row in conn.execute(_ALL, {"channel_id": channel_id})]

        return await self._db.read(work)

    async def reasoning_of(self, turn_id: int) -> Reasoning | None:
        """An assistant turn's thinking; None when the turn is gone or did not think. Read on
        its own: reasoning can be long, and the context a reply reads never needs it."""
        statement = select(Turn.channel_id, Turn.reasoning).where(
            Turn.id == turn_id, Turn.role == Role.ASSISTANT
        )

        def work(conn: Connection) -> Reasoning | None:
            row = conn.execute(statement).first()
            if row is None or not row[1]:
                return None
            return Reasoning(int(row[0]), str(row[1]))

        return await self._db.read(work)

    async def reasonings(self, channel_id: int) -> dict[int, str]:
        """Turn id -> thinking, for the channel's turns that thought (`/history export`)."""
        statement = select(Turn.id, Turn.reasoning).where(
            Turn.channel_id == channel_id, Turn.reasoning.is_not(None), Turn.reasoning != ""
        )

        def work(conn: Connection) -> dict[int, str]:
            return {int(i): str(text) for i, text in conn.execute(statement)}

        return await self._db.read(work)

    async def set_tool_calls(self, turn_id: int, calls: list[dict[str, Any]]) -> None:
        """Store the tool calls of an assistant turn so far (written after each call, so that
        a reply stopped during a tool keeps the calls made before)."""

        def work(conn: Connection) -> None:
            conn.execute(update(Turn).where(Turn.id == turn_id).values(tool_calls=calls))

        await self._db.write(work)

    async def tool_calls_of(self, channel_id: int) -> dict[int, list[dict[str, Any]]]:
        """The channel's assistant turns that called tools: turn id -> its calls (exports)."""

        def work(conn: Connection) -> dict[int, list[dict[str, Any]]]:
            rows = conn.execute(
                select(Turn.id, Turn.tool_calls).where(
                    Turn.channel_id == channel_id, Turn.tool_calls.is_not(None)
                )
            )
            return {int(turn_id): list(calls) for turn_id, calls in rows if calls}

        return await self._db.read(work)

    async def count(self, channel_id: int) -> int:
        def work(conn: Connection) -> int:
            return int(conn.execute(_COUNT, {"channel_id": channel_id}).scalar_one())

        return await self._db.read(work)

    async def delete_turns(self, turn_ids: list[int]) -> None:
        await self._db.write(partial(_delete_turns, turn_ids=turn_ids))

    async def forget_messages(self, channel_id: int, message_ids: Collection[int]) -> int:
        """Members deleted these Discord messages: delete the questions stored from them, with
        their images, and the answers to them (which quote or build on the question), so that
        neither `/history` nor a later context shows them. Returns how many turns went."""
        ids = list(message_ids)
        if not ids:
            return 0

        def work(conn: Connection) -> int:
            questions: list[int] = []
            for start in range(0, len(ids), 500):
                questions += conn.scalars(
                    select(Turn.id).where(
                        Turn.discord_message_id.in_(ids[start : start + 500]),
                        Turn.channel_id == channel_id,
                        Turn.role == Role.USER,
                    )
                ).all()
            if not questions:
                return 0
            answers = conn.scalars(select(Turn.id).where(Turn.reply_to_id.in_(questions))).all()
            doomed = [*questions, *answers]
            _delete_turns(conn, doomed)
            # A summary that folded a deleted message in would keep its gist: it goes too (a
            # new one is written when the context needs it).
            conn.execute(
                delete(Turn).where(
                    Turn.channel_id == channel_id,
                    Turn.role == Role.SUMMARY.value,
                    Turn.covers_until >= min(doomed),
                )
            )
            return len(doomed)

        return await self._db.write(work)

    async def erase_question(self, channel_id: int, message_id: int) -> int:
        """The question stored from Discord message `message_id` was deleted before its reply
        could be posted: blank its text and delete its images, and blank the answers to it,
        keeping the rows (an answer keeps its status and reason). Returns how many turns."""

        def work(conn: Connection) -> int:
            questions = conn.scalars(
                select(Turn.id).where(
                    Turn.discord_message_id == message_id,
                    Turn.channel_id == channel_id,
                    Turn.role == Role.USER,
                )
            ).all()
            if not questions:
                return 0
            answers = conn.scalars(select(Turn.id).where(Turn.reply_to_id.in_(questions))).all()
            conn.execute(delete(TurnImage).where(TurnImage.turn_id.in_(questions)))
            erased = [*questions, *answers]
            conn.execute(update(Turn).where(Turn.id.in_(erased)).values(content=""))
            return len(erased)

        return await self._db.write(work)

    async def latest_summary(self, channel_id: int) -> Summary | None:
        """The channel's newest summary turn, if any."""
        if channel_id in self._without_summary:
            return None
        writes = self._summary_writes

        def work(conn: Connection) -> Summary | None:
            row = conn.execute(_LATEST_SUMMARY, {"channel_id": channel_id}).first()
            if row is None:
                return None
            return Summary(row[0], row[1], row[2] or 0, row[3] or 0, bool(row[4]))

        found = await self._db.read(work)
        if found is None and writes == self._summary_writes:
            if len(self._without_summary) > 100_000:  # bounded; asking again is only slower
                self._without_summary.clear()
            self._without_summary.add(channel_id)
        return found

    async def add_summary(
        self,
        *,
        channel_id: int,
        guild_id: int | None,
        author: Author,
        model: str,
        content: str,
        covers_until: int,
        covered: int,
        completion_tokens: int | None = None,
    ) -> int:
        """Store a summary turn standing for the channel's turns up to `covers_until`."""
        self._summary_writes += 1
        self._without_summary.discard(channel_id)
        values = {
            "channel_id": channel_id,
            "guild_id": guild_id,
            "role": Role.SUMMARY.value,
            "author_id": author.id,
            "author_name": author.name,
            "content": content,
            "model": model,
            "status": TurnStatus.COMPLETE,
            "covers_until": covers_until,
            "covered": covered,
            "completion_tokens": completion_tokens,
        }

        def work(conn: Connection) -> int:
            new: int = conn.execute(_INSERT_TURN, values).scalar_one()
            # Only the newest summary is ever used; the ones it replaces go.
            conn.execute(
                delete(Turn).where(
                    Turn.channel_id == channel_id,
                    Turn.role == Role.SUMMARY.value,
                    Turn.id != new,
                )
            )
            return new

        return await self._db.write(work, undo=lambda conn, new: _delete_turns(conn, [new]))

    async def mark_announced(self, summary_id: int) -> None:
        statement = update(Turn).where(Turn.id == summary_id).values(announced=True)
        await self._db.write(lambda conn: conn.execute(statement))

    async def count_before(self, channel_id: int, before: int | None, after: int) -> int:
        """How many messages of the conversation lie after turn `after` and before turn
        `before` (None: up to the newest): answered questions and their answers."""
        conditions = [
            Turn.channel_id == channel_id,
            _CONVERSATION,
            Turn.id > after,
            Turn.content != "",
            Turn.status.in_([TurnStatus.COMPLETE, TurnStatus.STOPPED]),
        ]
        if before is not None:
            conditions.append(Turn.id < before)
        statement = select(func.count()).select_from(Turn).where(*conditions)
        return await self._db.read(lambda conn: int(conn.execute(statement).scalar_one()))

    async def find_reply(self, channel_id: int, message_id: int) -> StoredTurn | None:
        """The assistant turn shown in Discord message `message_id` of the channel, if stored."""
        statement = select(*_STORED_COLUMNS).where(
            Turn.channel_id == channel_id,
            Turn.discord_message_id == message_id,
            Turn.role == Role.ASSISTANT.value,
        )

        def work(conn: Connection) -> StoredTurn | None:
            row = conn.execute(statement).first()
            return StoredTurn(*row) if row is not None else None

        return await self._db.read(work)

    async def get(self, turn_id: int) -> StoredTurn | None:
        statement = select(*_STORED_COLUMNS).where(Turn.id == turn_id)

        def work(conn: Connection) -> StoredTurn | None:
            row = conn.execute(statement).first()
            return StoredTurn(*row) if row is not None else None

        return await self._db.read(work)

    async def copy_conversation(
        self,
        *,
        source: int,
        target: int,
        guild_id: int | None,
        through: int,
        limit: int,
    ) -> int:
        """Copy channel `source`'s conversation up to and including turn `through` into channel
        `target` (a thread forked from it): the newest summary folded before it, and at most
        `limit` of the newest turns after that summary, with their images. Returns how many
        turns were copied."""
        self._summary_writes += 1
        self._without_summary.discard(target)

        def work(conn: Connection) -> int:
            summary = conn.execute(
                select(*_STORED_COLUMNS, Turn.covers_until, Turn.covered)
                .where(
                    Turn.channel_id == source,
                    Turn.role == Role.SUMMARY.value,
                    Turn.covers_until <= through,
                )
                .order_by(Turn.id.desc())
                .limit(1)
            ).first()
            after = (summary.covers_until or 0) if summary is not None else 0
            columns = [Turn.id, Turn.reply_to_id, *(getattr(Turn, n) for n in _COPIED_FIELDS)]
            rows = conn.execute(
                select(*columns)
                .where(
                    Turn.channel_id == source,
                    _CONVERSATION,
                    Turn.id > after,
                    Turn.id <= through,
                    Turn.status != TurnStatus.STREAMING,
                )
                .order_by(Turn.id.desc())
                .limit(limit)
            ).all()
            turns = [row._mapping for row in reversed(rows)]
            copied: dict[int, int] = {}
            for turn in turns:
                values = {name: turn[name] for name in _COPIED_FIELDS}
                values |= {"channel_id": target, "guild_id": guild_id, "reply_to_id": None}
                if turn["reply_to_id"] is not None:
                    values["reply_to_id"] = copied.get(turn["reply_to_id"])
                copied[turn["id"]] = conn.execute(_INSERT_TURN, values).scalar_one()
            for old_id, images in _images_for(conn, list(copied)).items():
                conn.execute(
                    _INSERT_IMAGE,
                    [
                        {
                            "turn_id": copied[old_id],
                            "position": position,
                            "mime": image.mime,
                            "width": image.width,
                            "height": image.height,
                            "data": image.data,
                        }
                        for position, image in enumerate(images)
                    ],
                )
            if summary is not None and turns:
                # The summary stands for the turns before the first copied one.
                conn.execute(
                    _INSERT_TURN,
                    {
                        "channel_id": target,
                        "guild_id": guild_id,
                        "role": Role.SUMMARY.value,
                        "author_id": summary.author_id,
                        "author_name": summary.author_name,
                        "content": summary.content,
                        "model": summary.model,
                        "status": TurnStatus.COMPLETE,
                        "covers_until": min(copied.values()) - 1,
                        "covered": summary.covered,
                        "announced": True,
                    },
                )
            return len(copied)

        return await self._db.write(work)

    async def clear(self, channel_id: int) -> int:
        """Delete the channel's turns (not hide them). Returns how many were deleted."""
        return await self._db.write(partial(_clear, channel_id=channel_id))

    async def prune(self, *, older_than: datetime | None, keep_per_channel: int | None) -> int:
        """Retention: delete turns older than `older_than` and, in each channel, all but the
        newest `keep_per_channel` turns (with their images). Replies being written are kept.
        Returns how many turns were deleted."""
        doomed: list[Any] = []
        if older_than is not None:
            doomed.append(Turn.created_at < older_than)
        if keep_per_channel is not None:
            ranked = select(
                Turn.id,
                func.row_number()
                .over(partition_by=Turn.channel_id, order_by=Turn.id.desc())
                .label("rank"),
            ).subquery()
            doomed.append(Turn.id.in_(select(ranked.c.id).where(ranked.c.rank > keep_per_channel)))
        if not doomed:
            return 0
        victims = select(Turn.id).where(or_(*doomed), Turn.status != TurnStatus.STREAMING)

        def work(conn: Connection) -> int:
            ids = list(conn.scalars(victims))
            _delete_turns(conn, ids)
            return len(ids)

        return await self._db.write(work)

    async def mark_interrupted(
        self, *, shard_ids: Collection[int] | None = None, shard_count: int = 1
    ) -> int:
        """Turns left `streaming` by a bot that died become `incomplete`; returns the count.

        With `shard_ids`, only the turns of guilds on those shards (of `shard_count`, by
        Discord's `(guild_id >> 22) % shard_count`; direct messages are shard 0's): the other
        shards' processes may be streaming into the same database right now."""
        condition: ColumnElement[bool] = Turn.status == TurnStatus.STREAMING
        if shard_ids is not None:
            shard = Turn.guild_id.op(">>")(literal_column("22")) % shard_count
            owned: ColumnElement[bool] = shard.in_(list(shard_ids))
            if 0 in shard_ids:
                owned = or_(owned, Turn.guild_id.is_(None))
            condition = and_(condition, owned)
        statement = update(Turn).where(condition).values(status=TurnStatus.INCOMPLETE)
        return await self._db.write(lambda conn: int(conn.execute(statement).rowcount or 0))

    async def get_meta(self, key: str) -> str | None:
        return await self._db.read(lambda conn: conn.execute(_META, {"key": key}).scalar())

    async def set_meta(self, key: str, value: str) -> None:
        await self._db.write(partial(_set_meta, key=key, value=value))
