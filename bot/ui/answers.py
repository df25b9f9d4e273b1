"""How an interaction that was already acknowledged gets its answer.

Discord's documented way to answer a deferred interaction is to edit its original response (the
"is thinking…" message). A first follow-up that silently fills that message is marked deprecated
in Discord's docs, so nothing here relies on it: follow-ups are only ever messages of their own.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence

import discord

from bot.ui.targets import NO_PINGS

log = logging.getLogger(__name__)


async def answer_deferred(
    interaction: discord.Interaction,
    content: str,
    *,
    view: discord.ui.View | None = None,
    files: Sequence[discord.File] = (),
) -> discord.InteractionMessage:
    """Fill the deferred response of `interaction` with the answer (it keeps the deferral's
    visibility: ephemeral when deferred ephemerally)."""
    if view is None:
        return await interaction.edit_original_response(
            content=content, attachments=list(files), allowed_mentions=NO_PINGS
        )
    return await interaction.edit_original_response(
        content=content, attachments=list(files), view=view, allowed_mentions=NO_PINGS
    )


async def tell_privately(interaction: discord.Interaction, text: str) -> None:
    """Tell only the member who acted: the response if it is still free; after an ephemeral
    deferral, that deferral's message; else an ephemeral follow-up of its own. A public
    "thinking…" message left by a deferral is taken back first, so nothing half-answered stays
    in the channel. Discord refusing (token expired, channel gone) is logged, not raised."""
    try:
        if not interaction.response.is_done():
            await interaction.response.send_message(text, ephemeral=True, allowed_mentions=NO_PINGS)
            return
        original = await _still_thinking(interaction)
        if original is not None and original.flags.ephemeral:
            await interaction.edit_original_response(
                content=text, attachments=[], view=None, allowed_mentions=NO_PINGS
            )
            return
        if original is not None:  # a public "thinking…": take it back, answer privately
            with contextlib.suppress(discord.HTTPException):
                await interaction.delete_original_response()
        await interaction.followup.send(text, ephemeral=True, allowed_mentions=NO_PINGS)
    except discord.HTTPException:
        log.info("could not tell a member privately", exc_info=True)


async def _still_thinking(interaction: discord.Interaction) -> discord.InteractionMessage | None:
    """The original response while it is still a deferral's "thinking…" message, else None."""
    if interaction.response.type is not discord.InteractionResponseType.deferred_channel_message:
        return None
    try:
        original = await interaction.original_response()
    except discord.HTTPException:
        return None
    return original if original.flags.loading else None
