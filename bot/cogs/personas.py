"""/persona create|use|reset|list|show|delete: personas made from Ollama Modelfiles."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast

import discord
from discord import app_commands
from discord.ext import commands

from bot.conversation.splitter import DISCORD_LIMIT, split_message
from bot.errors import BotError, InputError
from bot.ollama.protocol import PullProgress
from bot.personas.persona import Persona
from bot.personas.service import (
    MODELFILE_MAX_BYTES,
    NAME_RULES,
    PersonaService,
    check_keep_alive,
    decode_modelfile,
)
from bot.storage.history import Author
from bot.ui.answers import answer_deferred, tell_privately
from bot.ui.checks import NotAllowed, is_admin, is_owner
from bot.ui.errors import reply_with_error
from bot.ui.progress import PacedEdits
from bot.ui.targets import NO_PINGS, interaction_bucket

if TYPE_CHECKING:
    from bot.client import OllamaBot

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])
Level = Literal["everyone", "manage_channels", "admins"]

MODAL_TEXT_MAX = 4000  # Discord's limit for a text input
DIGEST = re.compile(r"sha256:([0-9a-f]{12})[0-9a-f]+")
PLACEHOLDER = 'FROM llama3.2\nPARAMETER temperature 0.3\nSYSTEM """You are James, ..."""'


def permitted(setting: str) -> Callable[[F], F]:
    """A check that reads who may run the command from the setting named `setting`."""

    def predicate(interaction: discord.Interaction) -> bool:
        if interaction.guild_id is None:
            raise app_commands.NoPrivateMessage()
        level: Level = getattr(cast("OllamaBot", interaction.client).settings, setting)
        if level == "everyone" or is_admin(interaction):
            return True
        if level == "manage_channels":
            if interaction.permissions.manage_channels:
                return True
            raise NotAllowed("This needs the Manage Channels permission.")
        raise NotAllowed("This needs the Manage Server permission or a bot admin role.")

    return app_commands.check(predicate)


def describe(progress: PullProgress) -> str:
    """One line for a create's status: digests shortened, downloads as a percentage."""
    status = DIGEST.sub(r"sha256:\1…", progress.status) or "working"
    if progress.total and progress.completed is not None:
        percent = 100 * progress.completed / progress.total
        return f"{status} · {percent:.0f}% of {progress.total / 1e9:.2f} GB"
    return status


def origin(persona: Persona) -> str:
    who = "built-in" if persona.builtin else f"by {persona.author_name}"
    return f"{who}, from `{persona.base_model}`"


def fenced(persona: Persona) -> list[str]:
    """`/persona show`: the Modelfile in a code block, in as many messages as it takes."""
    # A ``` inside the text would end the block early: a zero-width space keeps it apart.
    text = persona.modelfile.replace("```", "`\u200b``").rstrip("\n")
    return split_message(f"**{persona.name}** ({origin(persona)})\n```dockerfile\n{text}\n```")


class ModelfileModal(discord.ui.Modal):
    """The form that `/persona create` opens when no Modelfile is attached."""

    text: discord.ui.TextInput[ModelfileModal] = discord.ui.TextInput(
        label="Modelfile",
        style=discord.TextStyle.paragraph,
        placeholder=PLACEHOLDER,
        min_length=1,
        max_length=MODAL_TEXT_MAX,
    )

    def __init__(
        self,
        cog: PersonaCog,
        name: str,
        think: str | None = None,
        keep_alive: str | None = None,
    ) -> None:
        super().__init__(title=f"New persona: {name}"[:45], timeout=30 * 60)
        self.cog = cog
        self.name = name
        self.think = think
        self.keep_alive = keep_alive

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        await self.cog.create_persona(
            interaction, self.name, self.text.value, think=self.think, keep_alive=self.keep_alive
        )

    # discord.py's Modal itself overrides BaseView.on_error with this narrower signature.
    async def on_error(  # type: ignore[override]
        self, interaction: discord.Interaction, error: Exception, /
    ) -> None:
        await reply_with_error(interaction, error)


@app_commands.guild_only()
class PersonaCog(
    commands.GroupCog, group_name="persona", group_description="Personas made from Modelfiles"
):
    def __init__(self, bot: OllamaBot, personas: PersonaService) -> None:
        self.bot = bot
        self.personas = personas
        super().__init__()

    # ---- create ---------------------------------------------------------------------------

    @app_commands.command(name="create", description="Create a persona from an Ollama Modelfile.")
    @app_commands.describe(
        name=f"The persona's name: {NAME_RULES}",
        modelfile="The Modelfile as a file; without it a form opens",
        think="How much the persona thinks first, on a thinking model (Modelfiles can't say)",
        keep_alive="How long its model stays loaded after a reply: 10m, 1h, -1 (always), 0",
    )
    @permitted("persona_create_permission")
    async def create(
        self,
        interaction: discord.Interaction,
        name: app_commands.Range[str, 1, 32],
        modelfile: discord.Attachment | None = None,
        think: Literal["default", "off", "on", "low", "medium", "high"] | None = None,
        keep_alive: app_commands.Range[str, 1, 32] | None = None,
    ) -> None:
        _guild_id(interaction)
        keep_alive = check_keep_alive(keep_alive)
        if modelfile is None:
            # The form must be the first answer: only what needs no I/O is checked before it
            # (the name's rules); a name already taken is told when the form comes back.
            checked = self.personas.check_name_rules(name)
            await interaction.response.send_modal(ModelfileModal(self, checked, think, keep_alive))
            return
        if modelfile.size > MODELFILE_MAX_BYTES:
            raise InputError(
                f"`{modelfile.filename}` is {modelfile.size // 1024} KB; a persona's Modelfile "
                f"can be at most {MODELFILE_MAX_BYTES // 1024} KB."
            )
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            text = decode_modelfile(await modelfile.read())
        except BotError as exc:
            await _show_error(interaction, exc)
            return
        except discord.HTTPException:
            log.warning("could not download a Modelfile attachment", exc_info=True)
            await _show_error(
                interaction, InputError("I couldn't download that file from Discord. Try again.")
            )
            return
        await self.create_persona(interaction, name, text, think=think, keep_alive=keep_alive)

    async def create_persona(
        self,
        interaction: discord.Interaction,
        name: str,
        text: str,
        *,
        think: str | None = None,
        keep_alive: str | None = None,
    ) -> None:
        """Create from Modelfile text, showing Ollama's progress in the (deferred, ephemeral)
        response; the outcome, good or bad, replaces it."""
        header = f"⏳ Creating the persona `{name}` on Ollama…"
        display = self._progress(interaction)
        try:
            created = await self.personas.create(
                _guild_id(interaction),
                name,
                text,
                Author(interaction.user.id, interaction.user.display_name),
                on_progress=lambda progress: display.show(f"{header}\n-# {describe(progress)}"),
                owner=await is_owner(interaction),
                think=think,
                keep_alive=keep_alive,
            )
        except BotError as exc:
            await display.finish(f"⚠️ {exc.user_message}")
            return
        except BaseException:
            await display.cancel()
            raise
        persona = created.persona
        lines = [
            f"✅ Created the persona **{persona.name}** from `{persona.base_model}`. "
            f"Use it in a channel with `/persona use name:{persona.name}`."
            + (f" It thinks: `{persona.think}`." if persona.think else ""),
            *(f"-# {warning} (ignored)" for warning in created.warnings),
        ]
        await display.finish("\n".join(lines))

    def _progress(self, interaction: discord.Interaction) -> PacedEdits:
        """Paced edits of the interaction's original response (progress, then the outcome)."""

        async def write(text: str) -> None:
            await interaction.edit_original_response(content=text, allowed_mentions=NO_PINGS)

        return PacedEdits(
            write,
            interval=self.bot.settings.pull_progress_interval,
            budget=self.bot.parts.replies.edit_budget,
            bucket=interaction_bucket(interaction),
        )

    # ---- use / reset ----------------------------------------------------------------------

    @app_commands.command(name="use", description="Give this channel a persona.")
    @app_commands.describe(name="The persona")
    @permitted("persona_use_permission")
    async def use(self, interaction: discord.Interaction, name: str) -> None:
        guild_id = _guild_id(interaction)
        await interaction.response.defer(thinking=True)  # acknowledged before any I/O
        display = self._progress(interaction)
        try:
            persona = await self.personas.resolve(guild_id, name)
            header = f"⏳ Creating the persona `{persona.name}` on Ollama first…"
            await self.personas.use(
                guild_id,
                _channel_id(interaction),
                persona.name,
                on_progress=lambda progress: display.show(f"{header}\n-# {describe(progress)}"),
            )
        except BotError as exc:
            await display.cancel()
            await tell_privately(interaction, exc.user_message)
            return
        except BaseException:
            await display.cancel()
            raise
        await display.finish(
            f"🎭 {interaction.user.mention} gave this channel the persona "
            f"**{persona.name}** ({origin(persona)}). The conversation so far is kept; "
            "`/persona reset` switches back."
        )

    @app_commands.command(name="reset", description="Take this channel's persona off.")
    @permitted("persona_use_permission")
    async def reset(self, interaction: discord.Interaction) -> None:
        guild_id, channel_id = _guild_id(interaction), _channel_id(interaction)
        await interaction.response.defer(thinking=True)  # acknowledged before any I/O
        previous = await self.personas.reset(guild_id, channel_id)
        if previous is None:
            await tell_privately(interaction, "This channel has no persona.")
            return
        await interaction.edit_original_response(
            content=f"🎭 {interaction.user.mention} took the persona **{previous}** off this "
            "channel; its model answers again. The conversation so far is kept.",
            allowed_mentions=NO_PINGS,
        )

    # ---- list / show ----------------------------------------------------------------------

    @app_commands.command(name="list", description="The personas of this server.")
    async def list_personas(self, interaction: discord.Interaction) -> None:
        guild_id = _guild_id(interaction)
        await interaction.response.defer(ephemeral=True, thinking=True)
        personas = await self.personas.all(guild_id)
        current = await self.personas.for_channel(guild_id, _channel_id(interaction))
        lines = ["**Personas** (🎭 marks this channel's)"]
        for persona in personas:
            mark = " 🎭" if current and current.name == persona.name else ""
            lines.append(f"• `{persona.name}`{mark} — {origin(persona)}")
        lines.append("-# `/persona show name:<name>` shows one's Modelfile.")
        text = "\n".join(lines)
        if len(text) > DISCORD_LIMIT:
            text = text[: DISCORD_LIMIT - 2].rsplit("\n", 1)[0] + "\n…"
        await answer_deferred(interaction, text)

    @app_commands.command(name="show", description="Show a persona's Modelfile.")
    @app_commands.describe(name="The persona")
    async def show(self, interaction: discord.Interaction, name: str) -> None:
        guild_id = _guild_id(interaction)
        await interaction.response.defer(ephemeral=True, thinking=True)
        persona = await self.personas.resolve(guild_id, name)
        first, *more = fenced(persona)
        await answer_deferred(interaction, first)
        for piece in more:  # messages of their own under the first
            await interaction.followup.send(piece, ephemeral=True, allowed_mentions=NO_PINGS)

    # ---- delete ---------------------------------------------------------------------------

    @app_commands.command(name="delete", description="Delete a persona and its Ollama model.")
    @app_commands.describe(name="The persona")
    async def delete(self, interaction: discord.Interaction, name: str) -> None:
        guild_id = _guild_id(interaction)
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            persona = await self.personas.delete(
                guild_id,
                name,
                Author(interaction.user.id, interaction.user.display_name),
                is_admin=is_admin(interaction),
                authors_may=self.bot.settings.persona_delete_permission == "author",
            )
        except BotError as exc:
            await _show_error(interaction, exc)
            return
        await interaction.edit_original_response(
            content=f"🗑️ Deleted the persona **{persona.name}** and its Ollama model. Channels "
            "that used it are back to their model.",
            allowed_mentions=NO_PINGS,
        )

    # ---- autocomplete ---------------------------------------------------------------------

    @use.autocomplete("name")
    @show.autocomplete("name")
    @delete.autocomplete("name")
    async def _complete_name(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        names = await self.personas.names(interaction.guild_id, current)
        return [app_commands.Choice(name=name, value=name) for name in names]


async def _show_error(interaction: discord.Interaction, error: BotError) -> None:
    """Put the error in the (ephemeral) deferred response, replacing any progress shown."""
    await interaction.edit_original_response(
        content=f"⚠️ {error.user_message}", allowed_mentions=NO_PINGS
    )


def _guild_id(interaction: discord.Interaction) -> int:
    if interaction.guild_id is None:
        raise app_commands.NoPrivateMessage()
    return interaction.guild_id


def _channel_id(interaction: discord.Interaction) -> int:
    if interaction.channel_id is None:
        raise BotError("This command works in a channel.")
    return interaction.channel_id
