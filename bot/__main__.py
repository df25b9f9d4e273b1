"""`python -m bot run | check | db upgrade | sync`"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Coroutine, Sequence
from typing import Any

from pydantic import ValidationError

from bot.app import TOKEN_HELP, ConfigurationError, assemble, run
from bot.errors import OllamaUnavailable
from bot.logs import JsonFormatter, SecretFilter, mask_secrets
from bot.ollama.pool import OllamaPool
from bot.settings import ConfigFileError, Settings, load_settings
from bot.storage import migrate
from bot.storage.engine import create_engine

log = logging.getLogger("bot")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bot", description="The Ollama bot for Discord."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="start the bot (applies pending database migrations first)")
    commands.add_parser("check", help="report configuration, Ollama and database state")
    db = commands.add_parser("db", help="database commands")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    db_commands.add_parser("upgrade", help="apply pending migrations")
    commands.add_parser("sync", help="send the slash commands to Discord now")
    args = parser.parse_args(argv)

    try:
        settings = load_settings()
    except (ValidationError, ConfigFileError) as exc:
        print(mask_secrets(f"Configuration error: {exc}"), file=sys.stderr)
        return 2
    setup_logging(settings)
    try:
        if args.command == "run":
            serve(run(settings))
        elif args.command == "check":
            return asyncio.run(check(settings))
        elif args.command == "db":
            asyncio.run(upgrade(settings))
        elif args.command == "sync":
            asyncio.run(sync(settings))
    except ConfigurationError as exc:
        print(mask_secrets(exc.user_message), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


def serve(main: Coroutine[Any, Any, None]) -> None:
    """Run the bot on uvloop when it is installed (a dependency except on Windows): the same
    asyncio API with a faster loop, which cut the bot's CPU per chat turn by about a quarter
    (bench/README.md)."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main)


def setup_logging(settings: Settings) -> None:
    # Neither format shows the thread or process of a record: not looking them up for each
    # record (the logging HOWTO's "Optimization", public flags) saves work on every line.
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler()
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    handler.addFilter(SecretFilter())  # no URL password reaches the log
    logging.basicConfig(level=settings.log_level.upper(), handlers=[handler])
    logging.getLogger("discord").setLevel(max(logging.INFO, logging.getLogger().level))
    logging.getLogger("httpx").setLevel(logging.WARNING)


async def upgrade(settings: Settings) -> None:
    engine = create_engine(settings.database_url)
    try:
        before = await migrate.current_revision(engine)
        await migrate.upgrade(engine)
        after = await migrate.current_revision(engine)
    finally:
        await engine.dispose()
    if before == after:
        print(f"Database already at the newest revision ({after}).")
    else:
        print(f"Database upgraded from {before or 'empty'} to {after}.")


async def check(settings: Settings) -> int:
    """Print what works and what does not; exit status 1 if anything needed is broken."""
    problems = 0
    print("Configuration:")
    for key, value in settings.redacted().items():
        print(f"  {key} = {value}")
    if settings.discord_token is None:
        print(f"Discord token: missing. {TOKEN_HELP}")
        problems += 1

    gateway = OllamaPool(settings.ollama_urls)
    try:
        versions = await gateway.versions()
        for host, version in versions:
            if version is None:
                # The admin's own console: the URL is what they need to see here.
                shown = mask_secrets(host)
                print(f"Ollama: can't reach the Ollama server at {shown}. Is it running?")
            else:
                print(f"Ollama: reachable at {mask_secrets(host)}, version {version}")
        if all(version is None for _, version in versions):
            raise OllamaUnavailable(gateway.host)  # one host down of several is no outage
        try:
            info = await gateway.show(settings.chat_model)
            print(f"Chat model: {settings.chat_model} present, context {info.effective_context}")
        except Exception as exc:
            print(f"Chat model: {getattr(exc, 'user_message', exc)}")
            problems += 1
        problems += await _check_task_models(gateway, settings)
    except OllamaUnavailable:
        problems += 1
    finally:
        await gateway.close()

    engine = create_engine(settings.database_url)
    try:
        current = await migrate.current_revision(engine)
        head = migrate.head_revision(settings.database_url)
        state = "up to date" if current == head else "needs `python -m bot db upgrade`"
        print(f"Database: {engine.url.render_as_string()} at {current or 'empty'} ({state})")
        if current != head:
            problems += 1
    except Exception as exc:
        print(mask_secrets(f"Database: not usable ({exc})"))
        problems += 1
    finally:
        await engine.dispose()
    print("All good." if not problems else f"{problems} problem(s) found.")
    return 0 if not problems else 1


async def _check_task_models(gateway: OllamaPool, settings: Settings) -> int:
    """The vision and sentiment models, when set; returns the number of problems."""
    problems = 0
    if settings.vision_model is None:
        print("Vision model: not set (images reach only chat models that can see)")
    else:
        try:
            info = await gateway.show(settings.vision_model)
            sees = "vision" in info.capabilities
            print(
                f"Vision model: {settings.vision_model} present"
                + ("" if sees else ", but it has no `vision` capability")
            )
            problems += not sees
        except Exception as exc:
            print(f"Vision model: {getattr(exc, 'user_message', exc)}")
            problems += 1
    if settings.sentiment_model is not None:
        try:
            await gateway.show(settings.sentiment_model)
            print(f"Sentiment model: {settings.sentiment_model} present")
        except Exception as exc:
            print(f"Sentiment model: {getattr(exc, 'user_message', exc)}")
            problems += 1
    return problems


async def sync(settings: Settings) -> None:
    if settings.discord_token is None:
        raise ConfigurationError(TOKEN_HELP)
    quiet = settings.model_copy(update={"sync_commands_on_start": False})
    async with assemble(quiet) as bot:
        await bot.login(settings.discord_token.get_secret_value())
        await bot.sync_commands(only_if_changed=False)
    print("Slash commands sent to Discord.")


if __name__ == "__main__":
    sys.exit(main())
