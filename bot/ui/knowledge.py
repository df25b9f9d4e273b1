"""Knowledge on Discord's side: who can read which channel (asked of discord.py at the time of
the question), the documents attached to a message or command (checked before download), the
reply's Sources line, and message links."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence

import discord

from bot.errors import BotError
from bot.knowledge.files import Document, FileLimits, check_declared, kind_of, read_document, shown
from bot.knowledge.service import CanRead, SourceRef
from bot.ui.images import IMAGE_SUFFIXES

MESSAGE_LINK = re.compile(
    r"https://(?:(?:ptb|canary)\.)?discord(?:app)?\.com/channels/(\d+)/(\d+)/(\d+)"
)
SOURCES_LIMIT = 600
"""Characters of the Sources line at most (the reply's last message has room for it)."""


def reader(user: discord.abc.User, guild: discord.Guild | None) -> CanRead:
    """Whether `user` can read a channel of `guild` now: View Channel there, from the guild's
    roles and the channel's overwrites as discord.py keeps them (a thread: its parent's). A
    channel the bot does not know, or a user who is no member, reads nothing restricted."""

    def can_read(channel_id: int) -> bool:
        if guild is None:
            return False
        member = user if isinstance(user, discord.Member) else guild.get_member(user.id)
        channel = guild.get_channel_or_thread(channel_id)
        if member is None or channel is None:
            return False
        return channel.permissions_for(member).read_messages

    return can_read


def document_attachments(message: discord.Message) -> list[discord.Attachment]:
    """The attachments a message means as documents (not images)."""
    return [a for a in message.attachments if is_document(a)]


def is_document(attachment: discord.Attachment) -> bool:
    content_type = attachment.content_type or ""
    if content_type.startswith("image/") or attachment.filename.lower().endswith(
        tuple(IMAGE_SUFFIXES)
    ):
        return False
    return kind_of(attachment.filename, attachment.content_type) is not None


def check_attachments(attachments: Sequence[discord.Attachment], limits: FileLimits) -> list[str]:
    """Every file's kind and declared size, before anything is downloaded (InputError)."""
    return [check_declared(a.filename, a.content_type, a.size, limits) for a in attachments]


async def read_documents(
    attachments: Sequence[discord.Attachment], limits: FileLimits
) -> tuple[Document, ...]:
    """Check every file first (nothing downloaded for those refusals), then download each and
    take its text out (off the event loop: PDFs take a while)."""
    kinds = check_attachments(attachments, limits)
    documents = []
    for attachment, kind in zip(attachments, kinds, strict=True):
        try:
            data = await attachment.read()
        except discord.HTTPException as exc:
            raise BotError(
                f"I could not download `{shown(attachment.filename)}` from Discord. "
                "Try again in a moment."
            ) from exc
        documents.append(
            await asyncio.to_thread(read_document, attachment.filename, kind, data, limits)
        )
    return tuple(documents)


def sources_line(sources: Sequence[SourceRef]) -> str:
    """`-# Sources: [1] handbook.pdf p. 4 · [2] #rules message`, message sources linked (in
    angle brackets: no preview embed)."""
    if not sources:
        return ""
    parts = []
    for number, source in enumerate(sources, start=1):
        text = source.label.replace("[", "(").replace("]", ")").replace("\n", " ")
        parts.append(f"[{number}] [{text}](<{source.url}>)" if source.url else f"[{number}] {text}")
    line = "-# Sources: " + " · ".join(parts)
    while len(line) > SOURCES_LIMIT and len(parts) > 1:
        parts.pop()
        line = "-# Sources: " + " · ".join(parts) + " · …"
    return line[:SOURCES_LIMIT]


def parse_message_link(text: str) -> tuple[int, int, int] | None:
    """(guild id, channel id, message id) of a message link, else None."""
    match = MESSAGE_LINK.search(text.strip())
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2)), int(match.group(3))
