"""/caption and the message menu "Caption image": a vision model describes an image, and the
exchange joins the channel's conversation (so a follow-up /chat about the picture works)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.conversation.service import ChatRequest
from bot.errors import InputError
from bot.replies import ReplyPipeline, request_for_interaction
from bot.ui.images import image_attachments
from bot.ui.text import echo
from bot.vision.images import shown_name

if TYPE_CHECKING:
    from bot.client import OllamaBot


class VisionCog(commands.Cog):
    def __init__(self, bot: OllamaBot, replies: ReplyPipeline) -> None:
        self.bot = bot
        self.replies = replies
        # Context menus cannot be declared in a cog class; they are added to the tree here.
        self._menu = app_commands.ContextMenu(name="Caption image", callback=self.caption_menu)

    async def cog_load(self) -> None:
        self.bot.tree.add_command(self._menu)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self._menu.name, type=self._menu.type)

    @app_commands.command(name="caption", description="Describe an image with a vision model.")
    @app_commands.describe(
        image="The image (PNG, JPEG, WebP or GIF)",
        prompt="What to ask about the image (default: describe it)",
        model="Use this vision model instead of the configured one",
    )
    async def caption(
        self,
        interaction: discord.Interaction,
        image: discord.Attachment,
        prompt: app_commands.Range[str, 1, 1000] | None = None,
        model: app_commands.Range[str, 1, 200] | None = None,
    ) -> None:
        request = self._request(interaction, prompt, model)
        prefix = echo(f"🖼️ {shown_name(image.filename)} · {request.text}")
        await self.replies.answer_interaction(
            interaction, request, prefix=prefix, attachments=[image]
        )

    async def caption_menu(
        self, interaction: discord.Interaction, message: discord.Message
    ) -> None:
        """Message menu "Caption image". A menu's target message arrives with its attachments
        even without the message-content intent (one of Discord's exceptions to it)."""
        attachments = image_attachments(message)
        if not attachments:
            raise InputError("That message has no image to caption.")
        request = self._request(interaction, None, None)
        prefix = f"> 🖼️ {message.jump_url}\n" + echo(request.text)
        await self.replies.answer_interaction(
            interaction, request, prefix=prefix, attachments=attachments
        )

    def _request(
        self, interaction: discord.Interaction, prompt: str | None, model: str | None
    ) -> ChatRequest:
        return request_for_interaction(
            interaction, prompt or self.bot.settings.caption_prompt, model=model, caption=True
        )
