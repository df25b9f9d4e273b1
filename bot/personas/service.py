"""PersonaService: personas made from Modelfiles, created on Ollama, chosen per channel.

A guild's persona is stored with the Modelfile its author wrote; its Ollama model is named after
the guild and the persona (`persona-<guild id>-<name>`), so that two guilds never share one. The
built-in personas are Modelfiles shipped in `builtin/`, available in every guild and created on
Ollama the first time they are needed. Whenever a persona's model is missing on the server (a
reinstall, someone ran `ollama rm`), it is created again from the stored Modelfile."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bot.conversation.thinking import think_value
from bot.errors import CreateFailed, InputError, ModelNotFound, PermissionDenied
from bot.models.names import canonical_name, persona_owner, registry_host
from bot.ollama.protocol import ChatMessage, ModelSpec, Ollama, PullProgress
from bot.personas.modelfile import Modelfile, parse
from bot.personas.persona import Persona
from bot.settings import keep_alive_value
from bot.storage.channels import ChannelStore
from bot.storage.history import Author
from bot.storage.personas import NameTaken, PersonaStore

log = logging.getLogger(__name__)

BUILTIN_DIR = Path(__file__).resolve().parent / "builtin"
NAME_PATTERN = re.compile(r"[a-z0-9_-]{1,32}")
NAME_RULES = "1 to 32 characters: lowercase letters, digits, - and _"
MODELFILE_MAX_BYTES = 64 * 1024
BASE_MAX_CHARS = 200
"""The longest FROM that fits the `base_model` column (String(200), on SQLite and PostgreSQL)."""

ProgressCallback = Callable[[PullProgress], None]


@dataclass(frozen=True, slots=True)
class Created:
    persona: Persona
    warnings: tuple[str, ...]
    """The CLI's warnings, for example about deprecated parameters that were dropped."""


def ollama_name(guild_id: int | None, name: str) -> str:
    """The Ollama model of a persona: unique per guild, valid as an Ollama model name."""
    return f"persona-{'builtin' if guild_id is None else guild_id}-{name}"


def normalise_name(raw: str) -> str:
    """A persona name as stored (lower case); raises InputError when it breaks the rules."""
    name = raw.strip().lower()
    if not NAME_PATTERN.fullmatch(name):
        shown = raw.strip()[:40] or "(empty)"
        raise InputError(f"`{shown}` can't be a persona name. A name has {NAME_RULES}.")
    return name


def decode_modelfile(data: bytes) -> str:
    """The text of an attached Modelfile: UTF-8, or UTF-16 with a byte-order mark, as Ollama
    reads it; raises InputError for anything else."""
    if len(data) > MODELFILE_MAX_BYTES:
        raise InputError(
            f"That Modelfile is {len(data) // 1024} KB; a persona's Modelfile can be at most "
            f"{MODELFILE_MAX_BYTES // 1024} KB."
        )
    if not data.strip():
        raise InputError("That Modelfile is empty. It needs at least a FROM line.")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        encoding = "utf-16"  # the BOM says which byte order
    elif data.startswith(b"\xef\xbb\xbf"):
        encoding = "utf-8-sig"
    else:
        encoding = "utf-8"
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError:
        raise InputError(
            "That attachment is not a text file. Attach the Modelfile itself, saved as UTF-8 "
            "(or UTF-16 with a byte-order mark)."
        ) from None
    if "\x00" in text:
        raise InputError(
            "That attachment looks like a binary file (a model's weights?). Attach the Modelfile "
            "text: FROM, PARAMETER, SYSTEM, ..."
        )
    return text


def load_builtins(directory: Path = BUILTIN_DIR) -> dict[str, Persona]:
    """The shipped personas: `<name>.Modelfile` files (a broken one stops the bot at start)."""
    personas: dict[str, Persona] = {}
    for path in sorted(directory.glob("*.Modelfile")):
        name = normalise_name(path.stem)
        text = path.read_text(encoding="utf-8")
        personas[name] = _persona(name, ollama_name(None, name), text, parse(text), builtin=True)
    return personas


def _persona(
    name: str,
    model: str,
    text: str,
    modelfile: Modelfile,
    *,
    builtin: bool = False,
    author: Author | None = None,
) -> Persona:
    return Persona(
        name=name,
        ollama_model=model,
        base_model=modelfile.base,
        modelfile=text,
        system=modelfile.system,
        num_ctx=modelfile.num_ctx,
        builtin=builtin,
        author_id=author.id if author else None,
        author_name=author.name if author else None,
    )


def check_keep_alive(raw: str | None) -> str | None:
    """A persona's keep_alive as written, if Ollama will take it; InputError otherwise."""
    if raw is None or not raw.strip():
        return None
    try:
        keep_alive_value(raw)
    except ValueError:
        raise InputError(
            "keep_alive is a duration like `10m`, `1h` or `1h30m`, seconds, `-1` (keep it "
            "loaded) or `0` (unload after each reply)."
        ) from None
    return raw.strip()


def _not_installed(base: str | None) -> InputError:
    shown = "" if base is None else f" `{base.strip().replace('`', 'ˋ')[:100]}`"
    return InputError(
        f"The FROM model{shown} is not installed on the Ollama server, and a persona never "
        "downloads a "
        "model. Build it on an installed one (`/model list` shows them); the bot's owners can "
        "pull others with `/model pull`."
    )


class PersonaService:
    """Creates, finds, switches and deletes personas. Plain values in, plain values out."""

    def __init__(
        self,
        *,
        store: PersonaStore,
        channels: ChannelStore,
        gateway: Ollama,
        builtins: dict[str, Persona] | None = None,
        stall_timeout: float = 300.0,
        max_per_guild: int = 25,
    ) -> None:
        self._store = store
        self._channels = channels
        self._gateway = gateway
        self.builtins = load_builtins() if builtins is None else builtins
        self._stall_timeout = stall_timeout
        """A create that reports nothing for this long is given up (as a stalled pull is)."""
        self._max_per_guild = max_per_guild
        self._model_locks: dict[str, asyncio.Lock] = {}

    # ---- finding ------------------------------------------------------------------------

    async def get(self, guild_id: int | None, name: str) -> Persona | None:
        """The persona called `name` in this guild (built-in ones count), or None."""
        name = name.strip().lower()
        if name in self.builtins:
            return self.builtins[name]
        if guild_id is None:
            return None
        stored = await self._store.get(guild_id, name)
        return stored

    async def resolve(self, guild_id: int | None, name: str) -> Persona:
        """Like `get`, but a missing persona is the user's error."""
        persona = await self.get(guild_id, name)
        if persona is None:
            raise InputError(
                f"There is no persona called `{name.strip()[:40]}` here. "
                "`/persona list` shows them all."
            )
        return persona

    async def all(self, guild_id: int | None) -> list[Persona]:
        """The built-in personas, then the guild's, each by name."""
        guild = await self._store.all(guild_id) if guild_id is not None else []
        return [*self.builtins.values(), *guild]

    async def names(self, guild_id: int | None, typed: str = "", *, limit: int = 25) -> list[str]:
        """Names for autocomplete: those containing what was typed, those starting with it
        first."""
        typed = typed.strip().lower()
        guild = await self._store.names(guild_id) if guild_id is not None else []
        every = [*self.builtins, *guild]
        matching = [name for name in every if typed in name]
        matching.sort(key=lambda name: (not name.startswith(typed), name))
        return matching[:limit]

    async def for_channel(self, guild_id: int | None, channel_id: int) -> Persona | None:
        """The channel's persona, if it has one that still exists."""
        channel = await self._channels.get(channel_id)
        if channel.persona is None:
            return None
        return await self.get(guild_id, channel.persona)

    async def bases_in_use(self, model: str) -> list[tuple[int | None, str]]:
        """The personas built on `model` (a canonical name), or made as it: what `/model delete`
        must not pull out from under them, as (guild id, or None for a built-in one; name). A
        built-in persona's own model doesn't count (it is made again when needed), its base
        does (it could not be)."""
        used: list[tuple[int | None, str]] = [
            (None, name)
            for name, persona in self.builtins.items()
            if canonical_name(persona.base_model) == model
        ]
        used += [
            (guild, name)
            for guild, name, base, made in await self._store.models()
            if model in (canonical_name(base), canonical_name(made))
        ]
        return used

    # ---- creating -----------------------------------------------------------------------

    def check_name_rules(self, raw: str) -> str:
        """The normalised name, if it follows the rules and is not a built-in persona's; what
        can be told without asking the database."""
        name = normalise_name(raw)
        if name in self.builtins:
            raise InputError(f"`{name}` is a built-in persona. Choose another name.")
        return name

    async def check_new_name(self, guild_id: int, raw: str) -> str:
        """The normalised name, if a new persona may take it; raises InputError otherwise."""
        name = self.check_name_rules(raw)
        if await self._store.get(guild_id, name) is not None:
            raise InputError(
                f"This server already has a persona called `{name}`. Choose another name, "
                f"or delete it first with `/persona delete name:{name}`."
            )
        return name

    async def create(
        self,
        guild_id: int,
        raw_name: str,
        text: str,
        author: Author,
        on_progress: ProgressCallback | None = None,
        *,
        owner: bool = False,
        think: str | None = None,
        keep_alive: str | None = None,
    ) -> Created:
        """Check the name and the Modelfile, create the model on Ollama, store the persona.

        Nothing is sent to Ollama unless the Modelfile is valid, its FROM is a model the server
        has (a persona never downloads one) and may be used here, and the guild has room for
        another persona; nothing is stored unless Ollama created the model. `owner`: one of the
        bot's owners asks, who may name a registry host in FROM (of a model already pulled)."""
        name = await self.check_new_name(guild_id, raw_name)
        keep_alive = check_keep_alive(keep_alive)
        modelfile = parse(text)
        self.check_base(guild_id, modelfile.base, owner=owner)
        await self._check_room(guild_id)
        if think and think != "default":
            await self._check_think(modelfile.base, think)
        model = ollama_name(guild_id, name)
        async with self._lock(model):
            await self.check_new_name(guild_id, name)  # someone may have been quicker
            await self._check_room(guild_id)
            await self._create_model(model, modelfile, on_progress)
            try:
                stored = await self._store.add(
                    Persona(
                        guild_id=guild_id,
                        name=name,
                        ollama_model=model,
                        base_model=modelfile.base,
                        modelfile=text,
                        system=modelfile.system,
                        num_ctx=modelfile.num_ctx,
                        keep_alive=keep_alive,
                        author_id=author.id,
                        author_name=author.name,
                        think=None if think == "default" else think,
                    )
                )
            except NameTaken:
                raise InputError(f"This server already has a persona called `{name}`.") from None
        log.info("persona created guild=%s name=%s model=%s", guild_id, name, model)
        return Created(stored, modelfile.warnings)

    @staticmethod
    def check_base(guild_id: int, base: str, *, owner: bool) -> None:
        """Refuse a FROM that does not fit the database, that names a registry host (unless an
        owner asks), or that is another guild's persona (told as if it were not installed, so
        nobody learns another guild's personas by trying names)."""
        if len(base) > BASE_MAX_CHARS:
            raise InputError(
                f"That FROM is {len(base)} characters long; a persona's base model name can be "
                f"at most {BASE_MAX_CHARS}."
            )
        if registry_host(base) is not None and not owner:
            raise InputError(
                "A persona's FROM can't name a registry or host (like `hf.co/...`). "
                "Build it on an installed model: `/model list` shows them."
            )
        if persona_owner(base) not in (None, "builtin", str(guild_id)):
            raise _not_installed(None)  # the name the member typed holds another guild's id

    async def _check_room(self, guild_id: int) -> None:
        count = len(await self._store.names(guild_id))
        if count >= self._max_per_guild:
            raise InputError(
                f"This server has {count} personas, the most it may have "
                f"({self._max_per_guild}). Delete one with `/persona delete` first."
            )

    async def _check_think(self, base: str, think: str) -> None:
        """A persona's thinking level must be one its FROM model takes (ThinkRefused)."""
        try:
            info = await self._gateway.show(base)
        except ModelNotFound:
            raise _not_installed(base) from None
        think_value(think, base, info.capabilities, info.family, source="The `think` option")

    async def _check_installed(self, base: str) -> None:
        """A persona never downloads anything: Ollama pulls a missing FROM during /api/create
        (bypassing the owners-only `/model pull`), so the base must be installed already."""
        wanted = canonical_name(base)
        if not any(canonical_name(m.name) == wanted for m in await self._gateway.list_models()):
            raise _not_installed(base)

    async def ensure(
        self,
        persona: Persona,
        *,
        fresh: bool = False,
        on_progress: ProgressCallback | None = None,
    ) -> bool:
        """Make sure the persona's model is on the server, creating it from the Modelfile when
        it is not; True when it had to be created. `fresh` asks the server rather than the
        cache."""
        async with self._lock(persona.ollama_model):
            if fresh:
                self._gateway.forget(persona.ollama_model)
            try:
                await self._gateway.show(persona.ollama_model)
                return False
            except ModelNotFound:
                log.info(
                    "persona %s: model %s is missing on Ollama; creating it from its Modelfile",
                    persona.name,
                    persona.ollama_model,
                )
            await self._create_model(persona.ollama_model, parse(persona.modelfile), on_progress)
            return True

    async def _create_model(
        self, model: str, modelfile: Modelfile, on_progress: ProgressCallback | None
    ) -> None:
        await self._check_installed(modelfile.base)
        spec = ModelSpec(
            name=model,
            base=modelfile.base,
            system=modelfile.system,
            template=modelfile.template,
            parameters=modelfile.options(),
            messages=tuple(ChatMessage(m.role, m.content) for m in modelfile.messages),
            license=tuple(modelfile.license),
        )
        stream = self._gateway.create_model(spec)
        async with contextlib.aclosing(stream):
            lines = aiter(stream)
            while True:
                try:
                    async with asyncio.timeout(self._stall_timeout):
                        progress = await anext(lines)
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    log.warning("creating %s stalled for %g s", model, self._stall_timeout)
                    raise CreateFailed(
                        f"no progress for {self._stall_timeout:g} s; try again later"
                    ) from None
                if on_progress is not None:
                    on_progress(progress)

    def _lock(self, model: str) -> asyncio.Lock:
        """One create at a time per Ollama model (two would overwrite each other). One small
        lock per persona model, kept: there are only as many as there are personas."""
        return self._model_locks.setdefault(model, asyncio.Lock())

    # ---- switching ----------------------------------------------------------------------

    async def use(
        self,
        guild_id: int,
        channel_id: int,
        name: str,
        on_progress: ProgressCallback | None = None,
    ) -> Persona:
        """Make `name` the channel's persona (creating its model first if the server lacks it)."""
        persona = await self.resolve(guild_id, name)
        await self.ensure(persona, fresh=True, on_progress=on_progress)
        await self._channels.update(channel_id, guild_id, persona=persona.name)
        log.info("persona %s in use guild=%s channel=%s", persona.name, guild_id, channel_id)
        return persona

    async def reset(self, guild_id: int, channel_id: int) -> str | None:
        """Take the channel's persona off; returns the name it had."""
        previous = (await self._channels.get(channel_id)).persona
        if previous is not None:
            await self._channels.update(channel_id, guild_id, persona=None)
        return previous

    # ---- deleting -----------------------------------------------------------------------

    async def delete_guild_models(self, guild_id: int) -> int:
        """Delete the Ollama models of a guild's personas (the bot left the guild); the rows go
        with the guild's other data. Raises when Ollama fails, so that it is tried again."""
        deleted = 0
        for persona in await self._store.all(guild_id):
            with contextlib.suppress(ModelNotFound):  # already gone: fine
                await self._gateway.delete_model(persona.ollama_model)
                deleted += 1
        return deleted

    async def delete(
        self, guild_id: int, name: str, requester: Author, *, is_admin: bool, authors_may: bool
    ) -> Persona:
        """Delete a guild persona and its Ollama model. The author may (when `authors_may`),
        and so may an admin. Channels that used it fall back to their model."""
        persona = await self.resolve(guild_id, name)
        if persona.builtin:
            raise InputError(f"`{persona.name}` is a built-in persona; it can't be deleted.")
        is_author = persona.author_id == requester.id
        if not (is_admin or (authors_may and is_author)):
            who = "its author or an admin" if authors_may else "an admin"
            raise PermissionDenied(f"Only {who} can delete the persona `{persona.name}`.")
        # Ollama first: if it fails, the persona stays as it was (and can be deleted again).
        with contextlib.suppress(ModelNotFound):  # already gone from the server: fine
            await self._gateway.delete_model(persona.ollama_model)
        await self._store.delete(guild_id, persona.name)
        await self._channels.clear_persona(guild_id, persona.name)
        log.info("persona deleted guild=%s name=%s by=%s", guild_id, persona.name, requester.id)
        return persona
