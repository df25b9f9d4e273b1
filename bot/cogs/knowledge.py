"""/kb: this server's knowledge base (add a file or a message, list, search, remove), and the
message menu "Add to knowledge". The rules live in bot/knowledge/service.py."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.cogs.personas import permitted
from bot.errors import InputError, PermissionDenied
from bot.knowledge.files import FileLimits, check_declared, shown
from bot.knowledge.service import (
    EMBED_BATCH,
    Added,
    KnowledgeService,
    Progress,
    label,
    url_of,
)
from bot.storage.knowledge import SourceRow
from bot.ui.answers import answer_deferred
from bot.ui.knowledge import parse_message_link, read_documents, reader
from bot.ui.targets import NO_PINGS

if TYPE_CHECKING:
    from bot.client import OllamaBot

PROGRESS_INTERVAL = 1.0
"""Seconds between progress edits while a big file is embedded."""
NOT_VISIBLE = "You can't see that message, or it does not exist."


@app_commands.guild_only()
class KnowledgeCog(
    commands.GroupCog, group_name="kb", group_description="This server's knowledge base"
):
    def __init__(self, bot: OllamaBot, knowledge: KnowledgeService) -> None:
        self.bot = bot
        self.knowledge = knowledge
        # Context menus cannot be declared in a cog class; they are added to the tree here.
        self._menu = app_commands.ContextMenu(name="Add to knowledge", callback=self.add_menu)
        # Guild-only in `contexts` too (see pin_guild_only in bot/app.py, for slash commands).
        self._menu.allowed_contexts = app_commands.AppCommandContext(
            guild=True, dm_channel=False, private_channel=False
        )
        super().__init__()

    async def cog_load(self) -> None:
        self.bot.tree.add_command(self._menu)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self._menu.name, type=self._menu.type)

    def _limits(self) -> FileLimits:
        settings = self.bot.settings
        return FileLimits(
            max_bytes=settings.knowledge_max_file_bytes,
            max_pdf_pages=settings.knowledge_max_pdf_pages,
            max_chars=settings.knowledge_max_chars,
        )

    # ---- /kb add -------------------------------------------------------------------------------

    @app_commands.command(name="add", description="Add a file or a message to the knowledge base.")
    @app_commands.describe(
        file="A text, Markdown, code, CSV, JSON or PDF file",
        message="A link to a message (Copy Message Link)",
        scope="Who gets answers from it: the whole server, or only who can read this channel",
    )
    @app_commands.choices(
        scope=[
            app_commands.Choice(name="server", value="server"),
            app_commands.Choice(name="channel", value="channel"),
        ]
    )
    @permitted("knowledge_permission")
    async def add(
        self,
        interaction: discord.Interaction,
        file: discord.Attachment | None = None,
        message: app_commands.Range[str, 1, 200] | None = None,
        scope: str = "server",
    ) -> None:
        if (file is None) == (message is None):
            raise InputError("Give me a file or a message link (one of them).")
        assert interaction.guild_id is not None  # guild only
        if message is not None:
            await self._add_link(interaction, message)
            return
        assert file is not None
        check_declared(file.filename, file.content_type, file.size, self._limits())  # privately
        await interaction.response.defer(ephemeral=True, thinking=True)
        (document,) = await read_documents([file], self._limits())
        channel_id = interaction.channel_id if scope == "channel" else None
        added = await self.knowledge.add_document(
            guild_id=interaction.guild_id,
            channel_id=channel_id,
            document=document,
            added_by=interaction.user.id,
            progress=_progress(interaction, shown(file.filename)),
        )
        await answer_deferred(interaction, _added_text(added))

    async def _add_link(self, interaction: discord.Interaction, link: str) -> None:
        parsed = parse_message_link(link)
        if parsed is None:
            raise InputError("That is not a message link. Use a message's Copy Message Link.")
        guild_id, channel_id, message_id = parsed
        guild = interaction.guild
        if guild is None or guild_id != guild.id:
            raise InputError("That message is in another server.")
        if not reader(interaction.user, guild)(channel_id):
            raise PermissionDenied(NOT_VISIBLE)
        channel = guild.get_channel_or_thread(channel_id)
        if not isinstance(channel, discord.TextChannel | discord.Thread | discord.VoiceChannel):
            raise PermissionDenied(NOT_VISIBLE)
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            found = await channel.fetch_message(message_id)
        except discord.NotFound:
            raise PermissionDenied(NOT_VISIBLE) from None
        except discord.Forbidden:
            raise PermissionDenied(
                "I can't read that channel's messages, so I can't add them."
            ) from None
        if not found.content.strip() and not self.bot.settings.message_content_intent:
            # Discord blanks other people's messages fetched without the intent.
            raise InputError(
                "I can't read a message's text from its link without the Message Content "
                "intent (`message_content_intent`). Use the message menu *Add to knowledge* "
                "instead."
            )
        await self._add_message(interaction, found)

    @app_commands.guild_only()
    @permitted("knowledge_permission")  # both read by the ContextMenu from its callback
    async def add_menu(self, interaction: discord.Interaction, message: discord.Message) -> None:
        """Message menu "Add to knowledge"."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        await self._add_message(interaction, message)

    async def _add_message(
        self, interaction: discord.Interaction, message: discord.Message
    ) -> None:
        assert interaction.guild_id is not None
        channel = message.channel
        name = getattr(channel, "name", None) or "channel"
        added = await self.knowledge.add_message(
            guild_id=interaction.guild_id,
            channel_id=channel.id,
            message_id=message.id,
            name=f"#{name} message",
            text=message.content,
            added_by=interaction.user.id,
        )
        await answer_deferred(interaction, _added_text(added))

    # ---- /kb list, search, remove ---------------------------------------------------------------

    @app_commands.command(name="list", description="What the knowledge base holds.")
    async def list_sources(self, interaction: discord.Interaction) -> None:
        assert interaction.guild_id is not None
        sources = await self.knowledge.sources(
            interaction.guild_id, reader(interaction.user, interaction.guild)
        )
        if not sources:
            text = "The knowledge base is empty. Add to it with `/kb add`."
        else:
            lines = [f"**Knowledge base** · {len(sources)} documents"]
            for source in sources:
                line = f"{_name(source)} · {_scope(source)} · {source.chunks} chunks · "
                line += f"{source.tokens:,} tokens"
                if sum(len(x) + 1 for x in lines) + len(line) > 1900:
                    lines.append(f"… and {len(sources) - len(lines) + 1} more")
                    break
                lines.append(line)
            text = "\n".join(lines)
        await interaction.response.send_message(text, ephemeral=True, allowed_mentions=NO_PINGS)

    @app_commands.command(name="search", description="Search the knowledge base.")
    @app_commands.describe(query="What to look for")
    async def search(
        self, interaction: discord.Interaction, query: app_commands.Range[str, 1, 500]
    ) -> None:
        assert interaction.guild_id is not None
        await interaction.response.defer(ephemeral=True, thinking=True)
        # Half the chat turn's floor: a search is read by a person, scores shown, and a few
        # keywords score lower than a question against the same chunk.
        hits = await self.knowledge.search(
            interaction.guild_id,
            query,
            reader(interaction.user, interaction.guild),
            min_score=self.knowledge.settings.min_score / 2,
        )
        if not hits:
            await answer_deferred(interaction, "Nothing in the knowledge base matches that.")
            return
        lines = []
        for number, hit in enumerate(hits, start=1):
            where = label(hit.chunk)
            url = url_of(hit.chunk.source)
            title = f"[{where}](<{url}>)" if url else f"`{shown(where)}`"
            excerpt = " ".join(hit.chunk.text.split())
            excerpt = excerpt if len(excerpt) <= 240 else excerpt[:239] + "…"
            lines.append(f"**{number}.** {title} · {hit.score:.2f}\n> {excerpt}")
        text = "\n".join(lines)
        await answer_deferred(interaction, text[:2000])

    @app_commands.command(name="remove", description="Remove a document from the knowledge base.")
    @app_commands.describe(name="The document (as /kb list shows it)")
    @permitted("knowledge_permission")
    async def remove(
        self, interaction: discord.Interaction, name: app_commands.Range[str, 1, 200]
    ) -> None:
        assert interaction.guild_id is not None
        can_read = reader(interaction.user, interaction.guild)
        sources = await self.knowledge.sources(interaction.guild_id, can_read)
        chosen = [s for s in sources if str(s.id) == name.strip()] or [
            s for s in sources if s.name == name.strip()
        ]
        if not chosen:
            raise InputError(f"There is no `{shown(name)}` in this server's knowledge base.")
        if len(chosen) > 1:
            raise InputError(
                f"Several documents are called `{shown(name)}`: pick one from the list."
            )
        gone = await self.knowledge.remove(interaction.guild_id, chosen[0].id, can_read)
        await interaction.response.send_message(
            f"Removed {_name(gone)} ({gone.chunks} chunks) from the knowledge base.",
            ephemeral=True,
            allowed_mentions=NO_PINGS,
        )

    @remove.autocomplete("name")
    async def _source_names(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        if interaction.guild_id is None:
            return []
        sources = await self.knowledge.sources(
            interaction.guild_id, reader(interaction.user, interaction.guild)
        )
        wanted = current.strip().lower()
        return [
            app_commands.Choice(name=f"{s.name} ({_scope(s)})"[:100], value=str(s.id))
            for s in sources
            if wanted in s.name.lower()
        ][:25]


def _name(source: SourceRow) -> str:
    url = url_of(source)
    return f"[{source.name}](<{url}>)" if url else f"`{shown(source.name)}`"


def _scope(source: SourceRow) -> str:
    return "server" if source.channel_id is None else f"<#{source.channel_id}> only"


def _added_text(added: Added) -> str:
    return (
        f"Added {_name(added.source)} to the knowledge base ({_scope(added.source)}): "
        f"{added.chunks} chunks, {added.tokens:,} tokens."
    )


def _progress(interaction: discord.Interaction, name: str) -> Progress:
    last = [0.0]

    async def show(done: int, total: int) -> None:
        # Only big files (more than one batch) show progress; at most one edit a second.
        now = time.monotonic()
        if total <= EMBED_BATCH or done >= total or now - last[0] < PROGRESS_INTERVAL:
            return
        last[0] = now
        await interaction.edit_original_response(
            content=f"⏳ Adding `{name}`: {done}/{total} chunks embedded…",
            allowed_mentions=NO_PINGS,
        )

    return show
