"""Composition root: the only place where the parts are built and wired together."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import discord
from discord import app_commands
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.client import OllamaBot, Parts
from bot.cogs.chat import ChatCog
from bot.cogs.context import ContextCog
from bot.cogs.history import HistoryCog
from bot.cogs.knowledge import KnowledgeCog
from bot.cogs.maintenance import RetentionCog
from bot.cogs.models import ModelCog
from bot.cogs.personas import PersonaCog
from bot.cogs.privacy import PrivacyCog
from bot.cogs.sentiment import SentimentCog
from bot.cogs.status import StatusCog
from bot.cogs.thinking import ThinkCog
from bot.cogs.threads import ThreadsCog
from bot.cogs.tools import ToolsCog
from bot.cogs.usage import UsageCog
from bot.cogs.vision import VisionCog
from bot.conversation.fairness import Scheduler, UserRateLimit
from bot.conversation.service import ChatLimits, ChatService
from bot.conversation.usage import UsageService
from bot.diagnostics import LoopLagMonitor
from bot.errors import BotError
from bot.knowledge.files import FileLimits
from bot.knowledge.service import KnowledgeService, KnowledgeSettings
from bot.metrics import Metrics, serve_metrics
from bot.models.service import ModelService
from bot.ollama.pool import OllamaPool
from bot.personas.service import PersonaService
from bot.replies import ReplyPipeline
from bot.sentiment.service import SentimentService
from bot.settings import Settings, keep_alive_value
from bot.storage import migrate
from bot.storage.channels import ChannelStore
from bot.storage.engine import create_engine, session_factory
from bot.storage.guilds import GuildStore
from bot.storage.history import Author, HistoryStore
from bot.storage.knowledge import KnowledgeStore
from bot.storage.personas import PersonaStore
from bot.storage.sqlite_thread import open_database
from bot.storage.usage import UsageStore
from bot.tools.builtin import CurrentTime, OpenMessage, ReadChannel
from bot.tools.knowledge import KnowledgeTools, SearchKnowledge
from bot.tools.loop import ToolRunner
from bot.tools.mcp import McpServer, McpTools
from bot.tools.registry import ToolLimits, ToolRegistry
from bot.tools.web import AddressGuard, FetchUrl, WebClient, WebSearch
from bot.ui.reading import DiscordReader
from bot.vision.images import ImageLimits, ImagePreparer
from bot.vision.routing import VisionRouter

__all__ = ["ConfigurationError", "OllamaBot", "assemble", "prepare_database", "run"]

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
async def assemble(
    settings: Settings, *, address_guard: AddressGuard | None = None, **bot_options: Any
) -> AsyncIterator[OllamaBot]:
    """Build the bot and everything it uses; close them all on the way out. `address_guard`
    decides which addresses fetch_url may reach: public ones (the default); tests pass one
    that also serves their own loopback pages (see AddressGuard)."""
    engine = create_engine(settings.database_url)
    database = open_database(engine)
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
            ps_ttl=settings.ollama_ps_ttl,
            slots_per_host=settings.ollama_num_parallel,
            keep_alive=keep_alive_value(settings.keep_alive) if settings.keep_alive else None,
            keep_alive_per_model={
                model: keep_alive_value(value)
                for model, value in settings.keep_alive_per_model.items()
            },
        )
        personas = PersonaService(
            store=PersonaStore(sessions),
            channels=channels,
            gateway=gateway,
            stall_timeout=settings.pull_stall_timeout,
            max_per_guild=settings.max_personas_per_guild,
        )
        web = WebClient(address_guard or AddressGuard())  # its sessions open on first use
        usage = UsageService(
            UsageStore(database),
            daily_quota=settings.daily_token_quota,
            role_quotas=settings.role_token_quotas,
        )
        await usage.start()
        try:
            # Counted only when served: nothing else reads the counts.
            metrics = Metrics(enabled=settings.metrics_port is not None)
            metrics.watch_ollama(gateway)
            bot = _build(
                settings,
                engine,
                history,
                channels,
                gateway,
                personas,
                metrics,
                web,
                usage,
                bot_options,
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
            await web.close()
            await usage.close()
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
                await bot.parts.replies.shutdown(settings.shutdown_grace)
                await bot.close()
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


def _build(
    settings: Settings,
    engine: AsyncEngine,
    history: HistoryStore,
    channels: ChannelStore,
    gateway: OllamaPool,
    personas: PersonaService,
    metrics: Metrics,
    web: WebClient,
    usage: UsageService,
    bot_options: dict[str, Any],
) -> OllamaBot:
    """The services, the reply pipeline and the client; the cogs join in `setup_hook`."""
    me: list[Author] = []  # who the bot is, known once it has logged in
    clients: list[discord.Client] = []  # the bot, once built (the Discord reading tools)
    mcp_tools = McpTools(
        [McpServer(s, timeout=settings.tool_timeout) for s in settings.mcp_servers]
    )
    reader = DiscordReader(lambda: clients[0])
    tools = tool_registry(settings, reader, web)
    tools.add_source(mcp_tools)

    chat = ChatService(
        gateway=gateway,
        history=history,
        channels=channels,
        limits=ChatLimits(
            default_model=settings.chat_model,
            context_cap=settings.context_tokens_max,
            reply_reserve=settings.reply_reserve_tokens,
            first_token_timeout=settings.first_token_timeout,
            between_tokens_timeout=settings.between_tokens_timeout,
            total_timeout=settings.total_timeout,
            reply_tokens=settings.max_reply_tokens,
            summarise=settings.summarise_history,
            speaker_names=settings.speaker_names,
            default_think=settings.default_think,
            fallback_models=tuple(settings.fallback_models),
            fallback_after_queue=settings.fallback_after_queue,
        ),
        assistant=lambda: me[0],
        scheduler=Scheduler(parallel=settings.parallel_generations, queue_size=settings.max_queue),
        rate_limit=UserRateLimit(settings.user_requests_per_minute),
        vision=VisionRouter(
            gateway=gateway,
            vision_model=settings.vision_model,
            max_images=settings.images_per_turn,
            followup_turns=settings.image_followup_turns,
        ),
        metrics=metrics,
        personas=personas,
        tools=ToolRunner(tools, gateway=gateway, default=settings.tools_default),
        usage=usage,
    )
    metrics.watch_queue(waiting=lambda: chat.waiting, active=lambda: chat.active)
    images = ImagePreparer(
        ImageLimits(
            max_bytes=settings.image_max_bytes,
            max_pixels=settings.image_max_pixels,
            max_side=settings.image_max_side,
            max_images=settings.images_per_turn,
        )
    )
    knowledge = KnowledgeService(
        gateway=gateway,
        store=KnowledgeStore(session_factory(engine)),
        settings=KnowledgeSettings(
            model=settings.embedding_model,
            chunk_tokens=settings.knowledge_chunk_tokens,
            chunk_overlap=settings.knowledge_chunk_overlap,
            top_k=settings.knowledge_top_k,
            share=settings.knowledge_share,
            min_score=settings.knowledge_min_score,
            files=FileLimits(
                max_bytes=settings.knowledge_max_file_bytes,
                max_pdf_pages=settings.knowledge_max_pdf_pages,
                max_chars=settings.knowledge_max_chars,
            ),
        ),
    )
    # search_knowledge, offered where the server has knowledge
    tools.add_source(KnowledgeTools(SearchKnowledge(knowledge, reader.can_read), knowledge))
    replies = ReplyPipeline(
        chat=chat,
        history=history,
        images=images,
        settings=settings,
        metrics=metrics,
        knowledge=knowledge,
    )
    models = ModelService(
        gateway=gateway,
        channels=channels,
        bases_in_use=personas.bases_in_use,
        reserved=reserved_models(settings),
        names_ttl=settings.model_names_ttl,
        pull_stall_timeout=settings.pull_stall_timeout,
    )
    sentiment = SentimentService(
        gateway,
        model=settings.sentiment_model or settings.chat_model,
        timeout=settings.total_timeout,
        windows=chat.windows,
        think=settings.sentiment_think,
    )
    parts = Parts(
        ollama=gateway,
        history=history,
        channels=channels,
        personas=personas,
        models=models,
        chat=chat,
        replies=replies,
        usage=usage,
        knowledge=knowledge,
    )
    loop_lag: list[LoopLagMonitor] = []

    async def wire(bot: OllamaBot) -> None:
        assert bot.user is not None  # setup_hook runs after login
        me.append(Author(bot.user.id, bot.user.name))
        bot.add_dynamic_items(*replies.buttons.items)
        await bot.add_cog(ChatCog(bot, replies, channels, models))
        await bot.add_cog(ThreadsCog(bot, replies, channels, history))
        await bot.add_cog(ContextCog(bot, chat))
        await bot.add_cog(ThinkCog(bot, replies, channels))
        await bot.add_cog(ModelCog(bot, models))
        await bot.add_cog(VisionCog(bot, replies))
        await bot.add_cog(SentimentCog(bot, sentiment, replies))
        await bot.add_cog(HistoryCog(bot, history))
        guilds = GuildStore(session_factory(engine))
        await knowledge.start()
        await bot.add_cog(PrivacyCog(bot, history, guilds, knowledge))
        await bot.add_cog(KnowledgeCog(bot, knowledge))
        if bot.runs_shard_zero:  # one process prunes the shared history
            await bot.add_cog(RetentionCog(bot, history, guilds))
        await bot.add_cog(StatusCog(bot))
        await bot.add_cog(PersonaCog(bot, personas))
        await bot.add_cog(ToolsCog(bot, channels, tools.names))
        await bot.add_cog(UsageCog(bot, usage))
        pin_guild_only(bot.tree)
        if settings.loop_lag_log_interval > 0:
            monitor = LoopLagMonitor(settings.loop_lag_log_interval)
            monitor.start()
            loop_lag.append(monitor)

    async def closing() -> None:
        for monitor in loop_lag:
            await monitor.stop()
        await models.close()  # pulls in progress stop with the bot
        await chat.stop_background()  # summaries in progress
        await mcp_tools.close()  # MCP servers the bot started stop with it
        await knowledge.close()  # a re-embedding goes on at the next start

    bot = OllamaBot(
        settings=settings,
        history=history,
        engine=engine,
        metrics=metrics,
        parts=parts,
        wire=wire,
        on_close=closing,
        **bot_options,
    )
    clients.append(bot)
    return bot


def tool_timeout(settings: Settings) -> float:
    """A tool call's time limit, within the wait between tokens: the reply's watchdog counts a
    tool call as a wait for the model, and would fail the whole reply first."""
    return min(settings.tool_timeout, 0.9 * settings.between_tokens_timeout)


def tool_registry(settings: Settings, reader: DiscordReader, web: WebClient) -> ToolRegistry:
    """The tools models may call where tools are on; a new tool is one `register` here."""
    registry = ToolRegistry(
        ToolLimits(
            rounds=settings.tool_rounds_max,
            timeout=tool_timeout(settings),
            output_tokens=settings.tool_output_tokens,
        )
    )
    registry.register(CurrentTime(settings.timezone))
    registry.register(ReadChannel(reader))
    registry.register(OpenMessage(reader))
    if settings.web_tools:
        registry.register(FetchUrl(web, max_bytes=settings.fetch_max_bytes))
        key = settings.ollama_web_search_key
        if settings.search_backend_url or key:
            searxng, secret = settings.search_backend_url, key.get_secret_value() if key else None
            registry.register(WebSearch(web, searxng_url=searxng, ollama_key=secret))
    return registry


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
