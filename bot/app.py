"""Composition root: the only place where the parts are built and wired together."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import json
import logging
import signal
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.access import AccessRules
from bot.cogs.chat import ChatCog
from bot.cogs.history import HistoryCog
from bot.cogs.maintenance import RetentionCog
from bot.cogs.models import ModelCog
from bot.cogs.personas import PersonaCog
from bot.cogs.privacy import PrivacyCog
from bot.cogs.sentiment import SentimentCog
from bot.cogs.status import StatusCog
from bot.cogs.threads import ThreadsCog
from bot.cogs.vision import VisionCog
from bot.conversation.fairness import Scheduler, UserRateLimit
from bot.conversation.service import ChatLimits, ChatService
from bot.diagnostics import LoopLagMonitor
from bot.errors import BotError
from bot.metrics import Metrics, serve_metrics
from bot.models.service import ModelService
from bot.ollama_pool import OllamaPool
from bot.personas.service import PersonaService
from bot.sentiment.service import SentimentService
from bot.settings import Settings
from bot.storage import migrate
from bot.storage.channels import ChannelStore
from bot.storage.engine import Database, create_engine, session_factory
from bot.storage.guilds import GuildStore
from bot.storage.history import Author, HistoryStore
from bot.storage.personas import PersonaStore
from bot.ui.checks import refusal_for
from bot.ui.controls import RegenerateButton, StopButton
from bot.ui.errors import reply_with_error
from bot.ui.targets import NO_PINGS
from bot.vision.images import ImageLimits, ImagePreparer
from bot.vision.routing import VisionRouter

log = logging.getLogger(__name__)

TOKEN_HELP = (
    "No Discord bot token. Set DISCORD_TOKEN to your bot's token: create an application at "
    "https://discord.com/developers/applications, open Bot, press Reset Token and copy it. "
    "The README explains the whole set-up."
)


INTENT_REFUSED = (
    "Discord refused the Message Content intent. Either switch it on in the developer portal "
    "(your application → Bot → Privileged Gateway Intents → Message Content Intent) or set "
    "message_content_intent = false (BOT_MESSAGE_CONTENT_INTENT=false)."
)


class ConfigurationError(BotError):
    """The bot cannot start as configured; the message says what to change."""


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


class OllamaBot(commands.AutoShardedBot):
    """The Discord client. It receives every part it needs; it builds none of them.

    Sharded like discord.py's AutoShardedBot: `shard_count` shards in all (unset: as many as
    Discord recommends), of which this process runs `shard_ids` (unset: all)."""

    def __init__(
        self,
        *,
        settings: Settings,
        gateway: OllamaPool,
        history: HistoryStore,
        channels: ChannelStore,
        engine: AsyncEngine,
        metrics: Metrics,
        personas: PersonaService,
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
            # Installed to servers only (no user installs, which would let the bot's commands
            # run in any server or DM its users are in), used in servers and, when DMs are on,
            # in the bot's own DM; never in group DMs.
            allowed_installs=app_commands.AppInstallationType(guild=True, user=False),
            allowed_contexts=app_commands.AppCommandContext(
                guild=True, dm_channel=settings.allow_dms, private_channel=False
            ),
            shard_count=settings.shard_count,
            # No message cache: the bot never looks a message up in it, and each of its own edits
            # arrives back as MESSAGE_UPDATE, which discord.py copies when the message is cached.
            max_messages=None,
            **options,
        )
        self.settings = settings
        self.access = AccessRules.from_settings(settings)
        self.gateway = gateway
        self.history = history
        self.channels = channels
        self.engine = engine
        self.metrics = metrics
        self.personas = personas
        self.started_at = time.monotonic()
        self._chat: ChatService | None = None
        self._models: ModelService | None = None
        self._loop_lag: LoopLagMonitor | None = None
        parsers = self._connection.parsers
        for event in ("MESSAGE_CREATE", "MESSAGE_UPDATE"):
            parsers[event] = self._unless_own(parsers[event])

    def _unless_own(self, parse: Callable[[Any], None]) -> Callable[[Any], None]:
        """A gateway event parser that leaves out the bot's own messages. Every message it
        sends and every edit of a streaming reply comes back over the gateway; discord.py built
        a full Message for each (a few percent of the bot's CPU per chat turn), only for the
        bot to ignore it: it never answers itself and keeps no message cache."""
        me = self._connection

        def parse_unless_own(data: Any) -> None:
            author = data.get("author")
            if author is not None and me.user is not None and author.get("id") == str(me.user.id):
                return
            parse(data)

        return parse_unless_own

    @property
    def runs_shard_zero(self) -> bool:
        """Whether this process runs shard 0 (or every shard): with the bot split over several
        processes, this one alone does the jobs done once per bot (command sync, retention)."""
        return not self.settings.shard_ids or 0 in self.settings.shard_ids

    @property
    def chat(self) -> ChatService:
        if self._chat is None:
            raise RuntimeError("the chat service exists once the bot has logged in")
        return self._chat

    @property
    def models(self) -> ModelService:
        if self._models is None:
            raise RuntimeError("the model service exists once the bot has logged in")
        return self._models

    async def setup_hook(self) -> None:
        assert self.user is not None  # setup_hook runs after login
        settings = self.settings
        images = ImagePreparer(
            ImageLimits(
                max_bytes=settings.image_max_bytes,
                max_pixels=settings.image_max_pixels,
                max_side=settings.image_max_side,
                max_images=settings.images_per_turn,
            )
        )
        vision = VisionRouter(
            gateway=self.gateway,
            vision_model=settings.vision_model,
            max_images=settings.images_per_turn,
            followup_turns=settings.image_followup_turns,
        )
        self._chat = ChatService(
            gateway=self.gateway,
            history=self.history,
            channels=self.channels,
            limits=ChatLimits(
                default_model=settings.chat_model,
                context_cap=settings.context_tokens_max,
                reply_reserve=settings.reply_reserve_tokens,
                first_token_timeout=settings.first_token_timeout,
                between_tokens_timeout=settings.between_tokens_timeout,
                total_timeout=settings.total_timeout,
            ),
            assistant=Author(self.user.id, self.user.name),
            scheduler=Scheduler(
                parallel=settings.max_parallel_generations, queue_size=settings.max_queue
            ),
            rate_limit=UserRateLimit(settings.user_requests_per_minute),
            vision=vision,
            metrics=self.metrics,
            personas=self.personas,
        )
        chat = self._chat
        self.metrics.watch_queue(waiting=lambda: chat.waiting, active=lambda: chat.active)
        self._models = ModelService(
            gateway=self.gateway,
            channels=self.channels,
            bases_in_use=self.personas.bases_in_use,
            names_ttl=settings.model_names_ttl,
            pull_stall_timeout=settings.pull_stall_timeout,
            reserved=reserved_models(settings),
        )
        self.add_dynamic_items(StopButton, RegenerateButton)
        chat_cog = ChatCog(self, self._chat, self.channels, images)
        await self.add_cog(chat_cog)
        await self.add_cog(ThreadsCog(self, chat_cog, self.channels))
        await self.add_cog(ModelCog(self, self._models))
        await self.add_cog(VisionCog(self, chat_cog))
        sentiment = SentimentService(
            self.gateway,
            model=settings.sentiment_model or settings.chat_model,
            timeout=settings.total_timeout,
        )
        await self.add_cog(SentimentCog(self, sentiment))
        await self.add_cog(HistoryCog(self, self.history))
        guilds = GuildStore(session_factory(self.engine))
        await self.add_cog(PrivacyCog(self, self.history, guilds))
        if self.runs_shard_zero:  # one process prunes the shared history
            await self.add_cog(RetentionCog(self, self.history, guilds))
        await self.add_cog(StatusCog(self))
        await self.add_cog(PersonaCog(self, self.personas))
        if settings.loop_lag_log_interval > 0:
            self._loop_lag = LoopLagMonitor(settings.loop_lag_log_interval)
            self._loop_lag.start()
        if settings.sync_commands_on_start and self.runs_shard_zero:
            await self.sync_commands(only_if_changed=True)

    async def shutdown(self, grace: float) -> None:
        """Stop taking requests, let replies finish for up to `grace` seconds, cut the rest
        short, then disconnect."""
        cog = self.get_cog("ChatCog")
        if self._chat is not None and isinstance(cog, ChatCog):
            self._chat.close()
            replies = cog.replies_in_progress()
            if replies:
                await asyncio.wait(replies, timeout=grace)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5.0):
                    await cog.cut_short()
        await self.close()

    async def close(self) -> None:
        if self._loop_lag is not None:
            await self._loop_lag.stop()
        if self._models is not None:
            await self._models.close()  # pulls in progress stop with the bot
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
        pin_guild_only(self.tree)
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


def pin_guild_only(tree: app_commands.CommandTree[Any]) -> None:
    """Commands and groups marked guild-only say so in `contexts` too. discord.py sends the old
    `dm_permission: false` for them, but their `contexts` inherit the tree's default for every
    context they leave unset, and Discord follows `contexts`: with DMs allowed, a guild-only
    group would show in the bot's DM."""
    for command in tree.get_commands(type=discord.AppCommandType.chat_input):
        if isinstance(command, app_commands.Command | app_commands.Group) and command.guild_only:
            command.allowed_contexts = app_commands.AppCommandContext(
                guild=True, dm_channel=False, private_channel=False
            )


def reserved_models(settings: Settings) -> dict[str, str]:
    """The models the bot answers with, which `/model delete` refuses, each with what it is."""
    reserved = {settings.chat_model: "the bot's chat model"}
    if settings.sentiment_model:
        reserved.setdefault(settings.sentiment_model, "the bot's sentiment model")
    if settings.vision_model:
        reserved.setdefault(settings.vision_model, "the bot's vision model")
    return reserved


async def prepare_database(engine: AsyncEngine, *, auto_migrate: bool) -> None:
    """Bring the schema to the newest migration, or refuse to start on an old one."""
    if await migrate.is_current(engine):
        return
    if not auto_migrate:
        raise ConfigurationError(
            "The database schema is not up to date. Run `python -m bot db upgrade` first "
            "(or set BOT_AUTO_MIGRATE=true)."
        )
    log.info("applying database migrations")
    await migrate.upgrade(engine)


@asynccontextmanager
async def assemble(settings: Settings, **bot_options: Any) -> AsyncIterator[OllamaBot]:
    """Build the bot and everything it uses; close them all on the way out."""
    engine = create_engine(settings.database_url)
    database = Database(engine)
    try:
        await prepare_database(engine, auto_migrate=settings.auto_migrate)
        sessions = session_factory(engine)
        history = HistoryStore(database)
        channels = ChannelStore(sessions)
        interrupted = await history.mark_interrupted(
            shard_ids=settings.shard_ids, shard_count=settings.shard_count or 1
        )
        if interrupted:
            log.warning(
                "marked %d replies interrupted by the last shutdown as incomplete", interrupted
            )
        gateway = OllamaPool(
            settings.ollama_urls,
            show_ttl=settings.model_info_ttl,
            tags_ttl=settings.ollama_tags_ttl,
            retry_after=settings.ollama_host_retry,
        )
        personas = PersonaService(
            store=PersonaStore(sessions),
            channels=channels,
            gateway=gateway,
            stall_timeout=settings.pull_stall_timeout,
            max_per_guild=settings.max_personas_per_guild,
        )
        try:
            metrics = Metrics()
            metrics.watch_ollama(gateway)
            bot = OllamaBot(
                settings=settings,
                gateway=gateway,
                history=history,
                channels=channels,
                engine=engine,
                metrics=metrics,
                personas=personas,
                **bot_options,
            )
            async with contextlib.AsyncExitStack() as stack:
                if settings.metrics_port is not None:
                    host, port = settings.metrics_host, settings.metrics_port
                    try:
                        await stack.enter_async_context(serve_metrics(metrics, host, port))
                    except OSError as exc:
                        raise ConfigurationError(
                            f"Cannot serve metrics on {host}:{port} ({exc.strerror or exc}). "
                            "Choose another metrics_port (BOT_METRICS_PORT) or free that one."
                        ) from exc
                await stack.enter_async_context(bot)
                yield bot
        finally:
            await gateway.close()
    finally:
        await database.close()
        await engine.dispose()


async def _freeze_start_up(bot: OllamaBot) -> None:
    """Once connected, exempt what start-up made (modules, caches, mappers; it stays for good)
    from the garbage collector's full passes, which walked it every time: one such pass
    stalled the bot for 150 ms with 200 replies streaming (bench/README.md)."""
    await bot.wait_until_ready()
    gc.collect()
    gc.freeze()


async def run(settings: Settings) -> None:
    """`python -m bot run`: serve until stopped. SIGTERM or SIGINT stops taking new requests,
    gives replies in progress `shutdown_grace` seconds, cuts the rest short (stored as
    incomplete, with a note in Discord) and exits cleanly."""
    if settings.discord_token is None:
        raise ConfigurationError(TOKEN_HELP)
    async with assemble(settings) as bot:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        serving = asyncio.create_task(bot.start(settings.discord_token.get_secret_value()))
        stopping = asyncio.create_task(stop.wait())
        freezing = asyncio.create_task(_freeze_start_up(bot))
        try:
            await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if stopping.done():
                log.info("stop requested; finishing the replies in progress")
                await bot.shutdown(settings.shutdown_grace)
            await serving
        except discord.PrivilegedIntentsRequired as exc:
            raise ConfigurationError(INTENT_REFUSED) from exc
        except discord.LoginFailure as exc:
            raise ConfigurationError(
                "Discord refused the token. Copy it again from the developer portal "
                "(Bot → Reset Token) into DISCORD_TOKEN."
            ) from exc
        finally:
            stopping.cancel()
            freezing.cancel()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
