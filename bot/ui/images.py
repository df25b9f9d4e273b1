"""Images from Discord: which attachments are meant as images, reading and checking them, and
doing it early enough that a refusal can still be a private (ephemeral) answer."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Sequence
from pathlib import PurePath
from typing import Any, TypeVar

import discord

from bot.conversation.service import ChatRequest, ChatService
from bot.errors import BotError, VisionUnavailable
from bot.vision.images import CheckedImage, ImagePreparer, shown_name

log = logging.getLogger(__name__)

T = TypeVar("T")

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".jpe", ".webp", ".gif"})
ACK_BUDGET = 2.0
"""Seconds of work before an interaction is deferred; Discord wants an answer within 3."""
ROUTE_CHECK_SECONDS = 1.0


def image_attachments(message: discord.Message) -> list[discord.Attachment]:
    """The attachments a message means as images: an image type or name. What they really are
    is decided by their bytes later (a text file named .png is refused then, not skipped)."""
    return [
        a
        for a in message.attachments
        if (a.content_type or "").startswith("image/")
        or PurePath(a.filename).suffix.lower() in IMAGE_SUFFIXES
    ]


async def read_images(
    preparer: ImagePreparer, attachments: Sequence[discord.Attachment]
) -> tuple[CheckedImage, ...]:
    """Count and declared sizes first (nothing downloaded for those refusals), then download
    each file and check its bytes. Raises ImageRejected with the reason."""
    preparer.check_count(len(attachments))
    for attachment in attachments:
        preparer.check_size(attachment.filename, attachment.size)
    checked = []
    for attachment in attachments:
        try:
            data = await attachment.read()
        except discord.HTTPException as exc:
            raise BotError(
                f"I could not download `{shown_name(attachment.filename)}` from Discord. "
                "Try again in a moment."
            ) from exc
        checked.append(await preparer.check(attachment.filename, data))
    return tuple(checked)


async def check_route(chat: ChatService, request: ChatRequest) -> None:
    """Refuse now if no model can read the request's images (a capability check, cached).
    Any other trouble, or a slow Ollama, is left for the reply itself to report."""
    try:
        async with asyncio.timeout(ROUTE_CHECK_SECONDS):
            await chat.image_model(request)
    except VisionUnavailable:
        raise
    except (BotError, TimeoutError) as exc:
        log.info("image route check skipped: %r", exc)


async def before_ack(interaction: discord.Interaction, work: Coroutine[Any, Any, T]) -> T:
    """Run `work` while the interaction can still be answered privately; if it takes longer
    than ACK_BUDGET, defer (publicly, "thinking") and let it finish after that."""
    task = asyncio.ensure_future(work)
    try:
        done, _ = await asyncio.wait({task}, timeout=ACK_BUDGET)
        if not done and not interaction.response.is_done():
            await interaction.response.defer(thinking=True)
        return await task
    finally:
        if not task.done():  # cancelled from outside
            task.cancel()


async def defer(interaction: discord.Interaction) -> None:
    if not interaction.response.is_done():
        await interaction.response.defer(thinking=True)
