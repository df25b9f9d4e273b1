"""Tables. Only `storage/` imports SQLAlchemy."""

from __future__ import annotations

import enum
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    false,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class TurnStatus(enum.StrEnum):
    STREAMING = "streaming"  # the reply is being written; never left like this after a clean stop
    COMPLETE = "complete"
    STOPPED = "stopped"  # the user pressed Stop; the partial text is kept
    FAILED = "failed"  # Ollama failed; `error` says why
    INCOMPLETE = "incomplete"  # the bot died while streaming; found and marked at the next start


class Role(enum.StrEnum):
    USER = "user"
    ASSISTANT = "assistant"
    SUMMARY = "summary"
    """A summary of older turns that stands in for them in the context sent to the model (not in
    the history people see): `covers_until` is the newest turn it folds in."""


class Turn(Base):
    """One message of a channel's conversation: a user's or the model's."""

    __tablename__ = "turns"
    __table_args__ = (
        Index("ix_turns_channel_id_id", "channel_id", "id"),
        # A deleted Discord message finds its stored question (every delete event asks).
        Index("ix_turns_discord_message_id", "discord_message_id"),
        Index("ix_turns_guild_id", "guild_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    channel_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    guild_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    role: Mapped[str] = mapped_column(String(16), nullable=False)
    author_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    author_name: Mapped[str] = mapped_column(String(100), nullable=False)
    content: Mapped[str] = mapped_column(Text, nullable=False, default="")
    model: Mapped[str | None] = mapped_column(String(200), nullable=True)
    persona: Mapped[str | None] = mapped_column(String(32), nullable=True)
    """For an assistant turn: the persona that answered, if any."""
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    prompt_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    completion_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    total_duration_ns: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    load_duration_ns: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    prompt_duration_ns: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    eval_duration_ns: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    reply_to_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    """For an assistant turn: the user turn it answers."""
    discord_message_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    request_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    reasoning: Mapped[str | None] = mapped_column(Text, nullable=True)
    """For an assistant turn: the model's thinking, shown on request (Show reasoning, the
    export), never sent back to the model."""
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, default=_utcnow, server_default=func.now()
    )
    done_reason: Mapped[str | None] = mapped_column(String(16), nullable=True)
    """For an assistant turn: why Ollama ended it ("stop", or "length" at the token limit)."""
    covers_until: Mapped[int | None] = mapped_column(Integer, nullable=True)
    """For a summary turn: the newest turn it folds in (it stands for all turns up to it)."""
    covered: Mapped[int | None] = mapped_column(Integer, nullable=True)
    """For a summary turn: how many messages it folds in."""
    announced: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=False, server_default=false()
    )
    """For a summary turn: a reply's footer has said that it summarised them."""
    tool_calls: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)
    """For an assistant turn: the tools the model called, in order (name, arguments, result);
    shown in exports, never sent to a model again."""


class TurnImage(Base):
    """An image that came with a user turn, as sent to the model: the downscaled JPEG (about
    100-300 KB, never more than 1 MB), so that later turns can show it to the model again."""

    __tablename__ = "turn_images"
    __table_args__ = (
        UniqueConstraint("turn_id", "position", name="uq_turn_images_turn_id_position"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    turn_id: Mapped[int] = mapped_column(
        Integer,
        ForeignKey("turns.id", ondelete="CASCADE", name="fk_turn_images_turn_id_turns"),
        nullable=False,
    )
    position: Mapped[int] = mapped_column(Integer, nullable=False)
    """0-based order of the image within its turn."""
    mime: Mapped[str] = mapped_column(String(32), nullable=False)
    width: Mapped[int] = mapped_column(Integer, nullable=False)
    height: Mapped[int] = mapped_column(Integer, nullable=False)
    data: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)


class Channel(Base):
    """Per-channel settings. A channel without a row uses the defaults."""

    __tablename__ = "channels"

    channel_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    guild_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    model: Mapped[str | None] = mapped_column(String(200), nullable=True)
    """The channel's default model (`/model use`); None means the configured chat model."""
    persona: Mapped[str | None] = mapped_column(String(32), nullable=True)
    """The channel's persona (`/persona use`): a name of this guild's or a built-in persona."""
    autoreply: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=False, server_default=false()
    )
    """Answer every message in this channel, no mention needed (`/channel autoreply`)."""
    bot_thread: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=False, server_default=false()
    )
    """A thread the bot started (`/thread start`): every message in it is answered."""
    parent_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    """For a thread: the channel it belongs to."""
    think: Mapped[str | None] = mapped_column(String(16), nullable=True)
    """The channel's thinking level (`/think`); None: the persona's, or the setting's."""
    tools: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    """Whether models may call tools here (`/tools`); None: the `tools_default` setting."""
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True),
        nullable=False,
        default=_utcnow,
        server_default=func.now(),
        onupdate=_utcnow,
    )


class PersonaRow(Base):
    """A guild's persona: a Modelfile, and the Ollama model made from it."""

    __tablename__ = "personas"
    __table_args__ = (UniqueConstraint("guild_id", "name", name="uq_personas_guild_id_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    guild_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    name: Mapped[str] = mapped_column(String(32), nullable=False)
    ollama_model: Mapped[str] = mapped_column(String(200), nullable=False)
    """The model created on Ollama; the name is derived so that guilds never collide."""
    base_model: Mapped[str] = mapped_column(String(200), nullable=False)
    """The Modelfile's FROM."""
    modelfile: Mapped[str] = mapped_column(Text, nullable=False)
    """The Modelfile as its author wrote it; the persona is re-created from it when needed."""
    system: Mapped[str | None] = mapped_column(Text, nullable=True)
    num_ctx: Mapped[int | None] = mapped_column(Integer, nullable=True)
    think: Mapped[str | None] = mapped_column(String(16), nullable=True)
    """The persona's thinking level (`/persona create think:`); a Modelfile has no such line."""
    keep_alive: Mapped[str | None] = mapped_column(String(32), nullable=True)
    """How long Ollama keeps the persona's model loaded (`/persona create keep_alive:`)."""
    author_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    author_name: Mapped[str] = mapped_column(String(100), nullable=False)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, default=_utcnow, server_default=func.now()
    )


class Usage(Base):
    """What one member used of one model on one UTC day in one guild (0: direct messages): one
    row a day, added to after each generation, so that /usage and the quotas read a few rows
    per member and day rather than every generation."""

    __tablename__ = "usage"
    __table_args__ = (
        Index("ix_usage_guild_id_day", "guild_id", "day"),
        Index("ix_usage_user_id_day", "user_id", "day"),
    )

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    guild_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    model: Mapped[str] = mapped_column(String(200), primary_key=True)
    generations: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    prompt_tokens: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    """Ollama's prompt_eval_count, summed."""
    completion_tokens: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    """Ollama's eval_count, summed."""
    total_ns: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    """Ollama's total_duration, summed: the GPU (or CPU) time the generations took."""


class GuildRemoval(Base):
    """A guild that removed the bot: its data is deleted once `guild_data_grace_days` have
    passed, unless the bot is added back before."""

    __tablename__ = "guild_removals"

    guild_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    removed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class Meta(Base):
    """Small key/value facts about this installation (for example the synced command tree hash)."""

    __tablename__ = "meta"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(Text, nullable=False)


class KnowledgeSource(Base):
    """A document of a guild's knowledge base: a file, or a Discord message."""

    __tablename__ = "knowledge_sources"
    __table_args__ = (
        Index("ix_knowledge_sources_guild_id", "guild_id"),
        # A deleted Discord message finds the knowledge made from it (every delete event asks).
        Index("ix_knowledge_sources_message_id", "message_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    guild_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    channel_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    """The channel it belongs to: only members who can read that channel retrieve it. None:
    the whole server."""
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    """"file" or "message"."""
    message_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    """For a message, or a file attached to one: that Discord message (deleting it deletes
    this source)."""
    message_channel_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    added_by: Mapped[int] = mapped_column(BigInteger, nullable=False)
    chunks: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    tokens: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, default=_utcnow, server_default=func.now()
    )


class KnowledgeChunk(Base):
    """A piece of a source with its embedding: a float32 vector, L2-normalised, made by
    `model` (recorded per chunk: changing the embedding model re-embeds in the background)."""

    __tablename__ = "knowledge_chunks"
    __table_args__ = (
        Index("ix_knowledge_chunks_guild_id", "guild_id"),
        Index("ix_knowledge_chunks_source_id", "source_id"),
        Index("ix_knowledge_chunks_model", "model"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    source_id: Mapped[int] = mapped_column(
        Integer,
        ForeignKey(
            "knowledge_sources.id",
            ondelete="CASCADE",
            name="fk_knowledge_chunks_source_id_knowledge_sources",
        ),
        nullable=False,
    )
    guild_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    channel_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    """The source's channel, kept here so that a search reads one table."""
    position: Mapped[int] = mapped_column(Integer, nullable=False)
    text: Mapped[str] = mapped_column(Text, nullable=False)
    page: Mapped[int | None] = mapped_column(Integer, nullable=True)
    line_start: Mapped[int | None] = mapped_column(Integer, nullable=True)
    line_end: Mapped[int | None] = mapped_column(Integer, nullable=True)
    heading: Mapped[str | None] = mapped_column(String(500), nullable=True)
    tokens: Mapped[int] = mapped_column(Integer, nullable=False)
    model: Mapped[str] = mapped_column(String(200), nullable=False)
    vector: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
