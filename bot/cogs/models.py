"""/model list|info|ps|use|pull|delete, and the model-name autocomplete that /chat shares."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import discord
from discord import app_commands
from discord.ext import commands

from bot.conversation.splitter import DISCORD_LIMIT
from bot.conversation.thinking import describe_levels
from bot.errors import BotError
from bot.models.service import ModelService, PullJob, PullState
from bot.ollama.protocol import InstalledModel, LoadedModel, ModelCard
from bot.ui import checks
from bot.ui.answers import answer_deferred, tell_privately
from bot.ui.progress import PacedEdits
from bot.ui.targets import NO_PINGS, interaction_bucket

if TYPE_CHECKING:
    from bot.client import OllamaBot

log = logging.getLogger(__name__)

NAME_CHARS = 90
LINE_CHARS = 185
"""A model line of /model list; ten of them and the header fit in one message."""
BAR_WIDTH = 20
LIST_VIEW_TIMEOUT = 300.0
FOREVER = timedelta(days=365 * 100)
"""A model kept loaded "forever" (negative keep_alive) expires ~292 years ahead."""


# ---- rendering (plain functions of plain values) -------------------------------------------


def code(name: str, limit: int = NAME_CHARS) -> str:
    """A model name as inline code (backticks in it would end the span)."""
    text = name.replace("`", "ˋ")
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return f"`{text}`"


def human_bytes(count: float) -> str:
    """Decimal units, as `ollama list` prints them: 512 B, 2.0 GB, 4.7 GB, 123 MB."""
    value = float(count)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(value) < 1000 or unit == "TB":
            if unit == "B":
                return f"{int(value)} B"
            return f"{value:.1f} {unit}" if abs(value) < 100 else f"{value:.0f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")  # pragma: no cover


def host_name(url: str) -> str:
    """`http://gpu1:11434` → `gpu1:11434` (never a user or password the URL carries)."""
    netloc = urlsplit(url).netloc
    return netloc.rsplit("@", 1)[-1] or url


def progress_bar(fraction: float, width: int = BAR_WIDTH) -> str:
    filled = round(max(0.0, min(fraction, 1.0)) * width)
    return "█" * filled + "░" * (width - filled)


def render_pull(state: PullState, *, joined: bool = False) -> str:
    """A pull's progress message: bar, percent, bytes, speed; or how it ended."""
    name = code(state.model)
    if state.finished and state.error is None:
        size = f" ({human_bytes(state.total)})" if state.total else ""
        return (
            f"✅ Pulled {name}{size}. Use it in a channel with `/model use`, "
            f"or for one message with `/chat model:`."
        )
    if state.finished:
        return f"⚠️ {state.error}"
    head = f"⬇️ Pulling {name}"
    if joined:
        head += " (joined the download already running)"
    lines = [head]
    fraction = state.fraction
    if fraction is not None:
        lines.append(f"`{progress_bar(fraction)}` {int(fraction * 100)}%")
        facts = [f"{human_bytes(state.completed)} of {human_bytes(state.total)}"]
        if state.bytes_per_second is not None:
            facts.append(f"{human_bytes(state.bytes_per_second)}/s")
        lines.append(" · ".join(facts))
    lines.append(f"-# {state.status}")
    return "\n".join(lines)


def model_line(model: InstalledModel, *, show_hosts: bool = False) -> str:
    facts = [model.parameter_size, model.quantization, model.family, human_bytes(model.size)]
    line = " · ".join([code(model.name), *(fact for fact in facts if fact)])
    if model.capabilities:
        line += " · " + ", ".join(capability_names(model.name, model.capabilities, model.family))
    if model.hosts and show_hosts:  # several Ollama hosts; where they are is for owners only
        line += " · on " + ", ".join(host_name(h) for h in model.hosts)
    return line if len(line) <= LINE_CHARS else line[: LINE_CHARS - 1] + "…"


def capability_names(name: str, capabilities: Sequence[str], family: str | None) -> list[str]:
    """Capabilities as shown: thinking with the levels the model takes, e.g. `thinking
    (on/off)` or, for gpt-oss, `thinking (low/medium/high)`."""
    levels = describe_levels(name, capabilities, family)
    return [f"{c} ({levels})" if c == "thinking" and levels else c for c in capabilities]


def list_pages(
    models: Sequence[InstalledModel], per_page: int, *, show_hosts: bool = False
) -> list[str]:
    """/model list as messages of at most `per_page` models each."""
    if not models:
        return [
            "No models are installed on the Ollama server. "
            "An admin can pull one with `/model pull name:llama3.2`."
        ]
    chunks = [models[i : i + per_page] for i in range(0, len(models), per_page)]
    total = human_bytes(sum(m.size for m in models))
    pages: list[str] = []
    for number, chunk in enumerate(chunks, 1):
        header = f"**Installed models** · {len(models)} · {total} on disk"
        if len(chunks) > 1:
            header += f" · page {number} of {len(chunks)}"
        lines = [model_line(m, show_hosts=show_hosts) for m in chunk]
        pages.append("\n".join([header, *lines]))
    return pages


def _clip(text: str, limit: int) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _block_safe(text: str) -> str:
    return text.replace("```", "`\u200b``")  # a fence inside would end the code block


def render_card(card: ModelCard) -> str:
    """/model info: the sections `ollama show` prints, in a code block."""
    for system_chars, parameter_lines in ((700, 12), (300, 8), (100, 4)):
        text = _card_text(card, system_chars, parameter_lines)
        if len(text) <= DISCORD_LIMIT:
            return text
    return text[: DISCORD_LIMIT - 4] + "\n```"


def _card_text(card: ModelCard, system_chars: int, parameter_lines: int) -> str:
    def row(label: str, value: object) -> str:
        return f"    {label:<20}{value}"

    parameters = card.parameter_size or (
        f"{card.parameter_count:,}" if card.parameter_count else None
    )
    model_rows = [
        ("architecture", card.architecture),
        ("parameters", parameters),
        ("context length", card.context_length),
        ("embedding length", card.embedding_length),
        ("quantization", card.quantization),
    ]
    lines = ["  Model", *(row(label, value) for label, value in model_rows if value)]
    if card.capabilities:
        shown = capability_names(card.name, card.capabilities, card.architecture)
        lines += ["", "  Capabilities", *(f"    {c}" for c in shown)]
    if card.parameters:
        shown = [row(k, _clip(v, 60)) for k, v in card.parameters[:parameter_lines]]
        if len(card.parameters) > parameter_lines:
            shown.append(f"    … and {len(card.parameters) - parameter_lines} more")
        lines += ["", "  Parameters", *shown]
    if card.system:
        system = _clip(card.system, system_chars).splitlines()
        lines += ["", "  System", *(f"    {line}" for line in system)]
    if card.license:
        license_lines = [_clip(line, 80) for line in card.license.strip().splitlines()[:2]]
        lines += ["", "  License", *(f"    {line}" for line in license_lines)]
    body = _block_safe("\n".join(lines))
    return f"**{code(card.name)}**\n```\n{body}\n```"


def processor(model: LoadedModel) -> str:
    """Where the model runs, as `ollama ps` says it: 100% GPU, 100% CPU, 48%/52% CPU/GPU."""
    if model.size <= 0 or model.size_vram <= 0:
        return "100% CPU"
    if model.size_vram >= model.size:
        return "100% GPU"
    cpu = round((model.size - model.size_vram) / model.size * 100)
    return f"{cpu}%/{100 - cpu}% CPU/GPU"


def unload_time(model: LoadedModel, now: datetime) -> str | None:
    when = model.expires_at
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    if when - now > FOREVER:
        return "stays loaded"
    if when <= now:
        return "unloading now"
    return f"unloads <t:{int(when.timestamp())}:R>"


def render_loaded(models: Sequence[LoadedModel], now: datetime, *, show_hosts: bool = False) -> str:
    if not models:
        return (
            "No model is loaded right now. A model loads when it is first used and unloads "
            "after a while without requests (Ollama's keep_alive, 5 minutes by default)."
        )
    lines = [f"**Loaded models** · {len(models)}"]
    for model in models[:20]:
        facts = [code(model.name), human_bytes(model.size), processor(model)]
        if model.context_length:
            facts.append(f"context {model.context_length}")
        if (until := unload_time(model, now)) is not None:
            facts.append(until)
        if model.host and show_hosts:  # several Ollama hosts; where they are is for owners
            facts.append(f"on {host_name(model.host)}")
        lines.append(" · ".join(facts))
    return "\n".join(lines)


async def model_choices(
    models: ModelService, current: str, guild_id: int | None = None
) -> list[app_commands.Choice[str]]:
    """Autocomplete choices for a model-name option, as a member in `guild_id` may see them
    (None: a DM, where no guild's personas show)."""
    try:
        names = await models.suggest(current, guild_id)
    except BotError:
        return []  # autocomplete cannot show an error; the command itself will
    return [app_commands.Choice(name=name, value=name) for name in names]


# ---- views ---------------------------------------------------------------------------------


class Pager(discord.ui.View):
    """Previous/Next buttons over pages of text."""

    def __init__(self, pages: list[str], *, timeout: float = LIST_VIEW_TIMEOUT) -> None:
        super().__init__(timeout=timeout)
        self.pages = pages
        self.page = 0
        self.message: discord.InteractionMessage | None = None
        self._update_buttons()

    def _update_buttons(self) -> None:
        self.previous.disabled = self.page == 0
        self.next.disabled = self.page >= len(self.pages) - 1

    async def _turn(self, interaction: discord.Interaction, step: int) -> None:
        self.page = max(0, min(self.page + step, len(self.pages) - 1))
        self._update_buttons()
        await interaction.response.edit_message(
            content=self.pages[self.page], view=self, allowed_mentions=NO_PINGS
        )

    @discord.ui.button(label="Previous", style=discord.ButtonStyle.secondary)
    async def previous(
        self, interaction: discord.Interaction, button: discord.ui.Button[Any]
    ) -> None:
        await self._turn(interaction, -1)

    @discord.ui.button(label="Next", style=discord.ButtonStyle.secondary)
    async def next(self, interaction: discord.Interaction, button: discord.ui.Button[Any]) -> None:
        await self._turn(interaction, 1)

    async def on_timeout(self) -> None:
        if self.message is not None:
            try:
                await self.message.edit(view=None, allowed_mentions=NO_PINGS)
            except discord.HTTPException:
                log.debug("could not remove the list's buttons", exc_info=True)


class ConfirmView(discord.ui.View):
    """Confirm/Cancel that only the requester may press."""

    def __init__(self, *, requester: int, timeout: float, confirmed: str, cancelled: str) -> None:
        super().__init__(timeout=timeout)
        self.requester = requester
        self.confirmed: bool | None = None
        self._texts = {True: confirmed, False: cancelled}

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        if interaction.user.id == self.requester:
            return True
        await interaction.response.send_message(
            "Only the person who asked can answer this.", ephemeral=True, allowed_mentions=NO_PINGS
        )
        return False

    async def _answer(self, interaction: discord.Interaction, confirmed: bool) -> None:
        self.confirmed = confirmed
        self.stop()
        await interaction.response.edit_message(
            content=self._texts[confirmed], view=None, allowed_mentions=NO_PINGS
        )

    @discord.ui.button(label="Delete", style=discord.ButtonStyle.danger)
    async def confirm(
        self, interaction: discord.Interaction, button: discord.ui.Button[Any]
    ) -> None:
        await self._answer(interaction, True)

    @discord.ui.button(label="Cancel", style=discord.ButtonStyle.secondary)
    async def cancel(
        self, interaction: discord.Interaction, button: discord.ui.Button[Any]
    ) -> None:
        await self._answer(interaction, False)


# ---- the commands --------------------------------------------------------------------------


class ModelCog(commands.GroupCog, group_name="model", group_description="Ollama models"):
    def __init__(self, bot: OllamaBot, models: ModelService) -> None:
        self.bot = bot
        self.models = models
        super().__init__()

    async def _model_names(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return await model_choices(self.models, current, interaction.guild_id)

    @app_commands.command(name="list", description="Installed models.")
    async def list_models(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        installed = await self.models.installed(interaction.guild_id)
        pages = list_pages(
            installed,
            self.bot.settings.model_list_page_size,
            show_hosts=await checks.is_owner(interaction),
        )
        if len(pages) == 1:
            await answer_deferred(interaction, pages[0])
            return
        view = Pager(pages)
        view.message = await answer_deferred(interaction, pages[0], view=view)

    @app_commands.command(name="info", description="A model's details, like `ollama show`.")
    @app_commands.describe(name="The model's name")
    @app_commands.autocomplete(name=_model_names)
    async def info(
        self, interaction: discord.Interaction, name: app_commands.Range[str, 1, 200]
    ) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        card = await self.models.describe(name, interaction.guild_id)
        await answer_deferred(interaction, render_card(card))

    @app_commands.command(name="ps", description="Models loaded in memory right now.")
    async def ps(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        loaded = await self.models.loaded(interaction.guild_id)
        text = render_loaded(
            loaded, datetime.now(UTC), show_hosts=await checks.is_owner(interaction)
        )
        await answer_deferred(interaction, text)

    @app_commands.command(name="use", description="Set this channel's default model.")
    @app_commands.describe(name="The model's name")
    @app_commands.autocomplete(name=_model_names)
    @checks.channel_managers()
    async def use(
        self, interaction: discord.Interaction, name: app_commands.Range[str, 1, 200]
    ) -> None:
        if interaction.channel_id is None:
            raise BotError("This command works in a channel.")
        # Acknowledged before asking Ollama (Discord allows 3 s); the answer is public.
        await interaction.response.defer(thinking=True)
        try:
            await self.models.use(interaction.channel_id, interaction.guild_id, name)
        except BotError as exc:
            await tell_privately(interaction, exc.user_message)
            return
        await interaction.edit_original_response(
            content=f"📌 {interaction.user.mention} set this channel's model to "
            f"{code(name.strip())}. `/chat model:` still picks another one for a single message.",
            allowed_mentions=NO_PINGS,
        )

    @app_commands.command(name="pull", description="Download a model from the Ollama library.")
    @app_commands.describe(name="The model's name, e.g. llama3.2 or qwen3:8b")
    @app_commands.autocomplete(name=_model_names)
    @checks.owners_only()
    async def pull(
        self, interaction: discord.Interaction, name: app_commands.Range[str, 1, 200]
    ) -> None:
        job, joined = self.models.pull(name)
        await interaction.response.defer(thinking=True)
        await self._follow(interaction, job, joined=joined)

    async def _follow(
        self, interaction: discord.Interaction, job: PullJob, *, joined: bool
    ) -> None:
        """Draw the pull's progress into the response until it ends. Only the drawing stops
        if this is cancelled: the pull belongs to the service."""

        async def write(text: str) -> None:
            await interaction.edit_original_response(content=text, allowed_mentions=NO_PINGS)

        display = PacedEdits(
            write,
            interval=self.bot.settings.pull_progress_interval,
            budget=self.bot.parts.replies.edit_budget,
            bucket=interaction_bucket(interaction),
        )
        try:
            async for state in job.updates():
                if state.finished:
                    break
                display.show(render_pull(state, joined=joined))
            await display.finish(render_pull(job.state, joined=joined))
        except BaseException:
            await display.cancel()
            raise

    @app_commands.command(name="delete", description="Delete a model from the Ollama server.")
    @app_commands.describe(name="The model's name")
    @app_commands.autocomplete(name=_model_names)
    @checks.owners_only()
    async def delete(
        self, interaction: discord.Interaction, name: app_commands.Range[str, 1, 200]
    ) -> None:
        # Acknowledged before asking Ollama (Discord allows 3 s); the question is public.
        await interaction.response.defer(thinking=True)
        try:
            model = await self.models.check_delete(name, interaction.guild_id)
        except BotError as exc:
            await tell_privately(interaction, exc.user_message)
            return
        timeout = self.bot.settings.model_delete_confirm_timeout
        view = ConfirmView(
            requester=interaction.user.id,
            timeout=timeout,
            confirmed=f"🗑️ Deleting {code(model.name)}…",
            cancelled=f"Kept {code(model.name)}: nothing was deleted.",
        )
        await interaction.edit_original_response(
            content=f"🗑️ Delete {code(model.name)} ({human_bytes(model.size)}) from the Ollama "
            "server? Nobody can use it until it is pulled again.",
            view=view,
            allowed_mentions=NO_PINGS,
        )
        if await view.wait():  # True: timed out
            await interaction.edit_original_response(
                content=f"Kept {code(model.name)}: no answer within {timeout:g} s.",
                view=None,
                allowed_mentions=NO_PINGS,
            )
            return
        if not view.confirmed:
            return
        try:
            deleted = await self.models.delete(model.name, interaction.guild_id)
            text = (
                f"🗑️ {interaction.user.mention} deleted {code(deleted.name)} "
                f"({human_bytes(deleted.size)} freed)."
            )
        except BotError as exc:
            text = f"⚠️ {exc.user_message}"
        await interaction.edit_original_response(content=text, allowed_mentions=NO_PINGS)
