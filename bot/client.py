"""The discord.py client. It is handed every part it uses and builds none of them; it imports no
cog (the composition root, bot/app.py, adds them in `setup_hook` through the `wire` callback it
was given)."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.access import AccessRules
from bot.metrics import Metrics
from bot.settings import Settings
from bot.storage.history import HistoryStore
from bot.ui.checks import refusal_for
from bot.ui.errors import reply_with_error
from bot.ui.targets import NO_PINGS

if TYPE_CHECKING:
    from bot.conversation.service import ChatService
    from bot.conversation.usage import UsageService
    from bot.knowledge.service import KnowledgeService
    from bot.models.service import ModelService
    from bot.ollama.pool import OllamaPool
    from bot.personas.service import PersonaService
    from bot.replies import ReplyPipeline
    from bot.storage.channels import ChannelStore

log = logging.getLogger(__name__)


class CommandTree(app_commands.CommandTree[Any]):
    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        """The access rules (allow/deny lists, DMs) apply to every command."""
        if interaction.type is discord.InteractionType.autocomplete:
            return True
        reason = refusal_for(interaction)
        if reason is None:
            return True
        await interaction.response.send_message(reason, ephemeral=True, allowed_mentions=NO_PINGS)
        return False

    async def on_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        if isinstance(self.client, OllamaBot):
            self.client.metrics.error(error)
        await reply_with_error(interaction, error)


@dataclass(frozen=True, slots=True)
class Parts:
    """What the composition root built, for the commands that report on it (/status) and for
    tests that look inside."""

    ollama: OllamaPool
    history: HistoryStore
    channels: ChannelStore
    personas: PersonaService
    models: ModelService
    chat: ChatService
    replies: ReplyPipeline
    usage: UsageService
    knowledge: KnowledgeService | None = None


Wire = Callable[["OllamaBot"], Awaitable[None]]
"""Builds what needs the logged-in client (the cogs, the reply pipeline) and adds it."""


class OllamaBot(commands.AutoShardedBot):
    """The Discord client.

    Sharded like discord.py's AutoShardedBot: `shard_count` shards in all (unset: as many as
    Discord recommends), of which this process runs `shard_ids` (unset: all)."""

    def __init__(
        self,
        *,
        settings: Settings,
        history: HistoryStore,
        engine: AsyncEngine,
        metrics: Metrics,
        parts: Parts,
        wire: Wire,
        on_close: Callable[[], Awaitable[None]] | None = None,
        **options: Any,
    ) -> None:
        intents = discord.Intents.default()  # no privileged intents: mention chat works without
        intents.message_content = settings.message_content_intent
        if settings.shard_ids is not None:
            options["shard_ids"] = settings.shard_ids
        super().__init__(
            command_prefix=commands.when_mentioned,
            help_command=None,
            intents=intents,
            allowed_mentions=NO_PINGS,
            tree_cls=CommandTree,
            shard_count=settings.shard_count,
            # No message cache: the bot never looks a message up in it, and each of its own edits
            # arrives back as MESSAGE_UPDATE, which discord.py copies when the message is cached.
            max_messages=None,
            # Installed to servers only (no user installs, which would let the bot's commands
            # run in any server or DM its users are in), used in servers and, when DMs are on,
            # in the bot's own DM; never in group DMs.
            allowed_installs=app_commands.AppInstallationType(guild=True, user=False),
            allowed_contexts=app_commands.AppCommandContext(
                guild=True, dm_channel=settings.allow_dms, private_channel=False
            ),
            **options,
        )
        self.settings = settings
        self.access = AccessRules.from_settings(settings)
        self.history = history
        self.engine = engine
        self.metrics = metrics
        self.parts = parts
        self.started_at = time.monotonic()
        self._wire = wire
        self._on_close = on_close

    @property
    def runs_shard_zero(self) -> bool:
        """Whether this process runs shard 0 (or every shard): with the bot split over several
        processes, this one alone does the jobs done once per bot (command sync, retention)."""
        return not self.settings.shard_ids or 0 in self.settings.shard_ids

    async def setup_hook(self) -> None:
        await self._wire(self)
        if self.settings.sync_commands_on_start and self.runs_shard_zero:
            await self.sync_commands(only_if_changed=True)

    async def close(self) -> None:
        if self._on_close is not None:
            on_close, self._on_close = self._on_close, None
            await on_close()
        await super().close()

    async def on_message(self, message: discord.Message) -> None:
        """No prefix commands: the chat cog's listener handles mentions and replies."""

    async def on_ready(self) -> None:
        log.info(
            "connected as %s to %d guilds on shards %s of %s",
            self.user,
            len(self.guilds),
            sorted(self.shards),
            self.shard_count,
        )

    async def sync_commands(self, *, only_if_changed: bool) -> bool:
        """Send the command tree to Discord, globally or to the development guild. Discord limits
        global syncs, so by default this happens only when the tree changed since the last one."""
        guild = discord.Object(self.settings.dev_guild_id) if self.settings.dev_guild_id else None
        if guild is not None:
            self.tree.copy_global_to(guild=guild)
        digest = self.command_tree_digest()
        key = f"commands_synced:{guild.id if guild else 'global'}"
        if only_if_changed and await self.history.get_meta(key) == digest:
            log.info("slash commands unchanged since the last sync; not syncing")
            return False
        synced = await self.tree.sync(guild=guild)
        await self.history.set_meta(key, digest)
        log.info("synced %d slash commands (%s)", len(synced), "guild" if guild else "global")
        return True

    def command_tree_digest(self) -> str:
        payload = [command.to_dict(self.tree) for command in self.tree.get_commands()]
        encoded = json.dumps(payload, sort_keys=True, default=str).encode()
        return hashlib.sha256(encoded).hexdigest()

    async def database_ok(self) -> bool:
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception:
            log.warning("database check failed", exc_info=True)
            return False
        return True
