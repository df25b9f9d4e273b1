"""ModelService: what `/model` does (list, info, ps, use, pull, delete), in plain values.

It knows nothing of discord.py. Pulls are background tasks owned by the service, one per model
name: a second pull of the same model joins the first one's progress instead of starting another
download, and a pull goes on whether or not anyone is watching it."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass

from bot.errors import (
    BotError,
    InputError,
    InvalidModelName,
    ModelInUse,
    ModelNotFound,
    ModelProtected,
    PullFailed,
)
from bot.models.names import canonical_name, visible
from bot.ollama.protocol import InstalledModel, LoadedModel, ModelCard, Ollama, PullProgress
from bot.storage.channels import ChannelStore

log = logging.getLogger(__name__)

BasesInUse = Callable[[str], Awaitable[list[tuple[int | None, str]]]]
"""The personas built on a model, given the model's canonical name: (guild id, or None for a
built-in persona; name)."""

AUTOCOMPLETE_LIMIT = 25
"""Discord shows at most 25 autocomplete choices, each at most 100 characters long."""
CHOICE_CHARS = 100
SPEED_WINDOW = 5.0
"""Seconds of progress over which a pull's speed is measured."""


@dataclass(frozen=True, slots=True)
class PullState:
    """Where a pull stands: the sum over all layers seen so far."""

    model: str
    status: str = "starting the download"
    """The server's latest status line (`pulling manifest`, `pulling 0123abcd4567`, ...)."""
    completed: int = 0
    total: int = 0
    layers: int = 0
    bytes_per_second: float | None = None
    finished: bool = False
    error: str | None = None
    """The user-facing message when the pull failed."""
    version: int = 0

    @property
    def fraction(self) -> float | None:
        return min(self.completed / self.total, 1.0) if self.total else None

    @property
    def succeeded(self) -> bool:
        return self.finished and self.error is None


class PullTracker:
    """Adds up the progress lines of a pull: bytes done and total over every layer seen (by
    digest), and the download speed over the last few seconds."""

    def __init__(self, model: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.model = model
        self.status = "starting the download"
        self._clock = clock
        self._layers: dict[str, tuple[int, int]] = {}  # digest -> (total, completed)
        self._downloaded = 0  # bytes that arrived while we watched (not cached layers)
        self._samples: deque[tuple[float, int]] = deque()

    def feed(self, line: PullProgress) -> None:
        self.status = line.status or self.status
        if not line.digest or not line.total:
            return
        completed = min(max(line.completed or 0, 0), line.total)
        before = self._layers.get(line.digest)
        # A layer's first line may already be complete (cached on disk): not download speed.
        if before is not None:
            self._downloaded += max(completed - before[1], 0)
        self._layers[line.digest] = (line.total, completed)
        now = self._clock()
        self._samples.append((now, self._downloaded))
        # Keep one sample at or before the window's start, so the rate covers the whole window.
        while len(self._samples) > 2 and self._samples[1][0] <= now - SPEED_WINDOW:
            self._samples.popleft()

    def speed(self) -> float | None:
        if len(self._samples) < 2:
            return None
        (t0, d0), (t1, d1) = self._samples[0], self._samples[-1]
        if t1 - t0 < 0.2:
            return None
        return (d1 - d0) / (t1 - t0)

    def state(self) -> PullState:
        return PullState(
            model=self.model,
            status=self.status,
            completed=sum(done for _, done in self._layers.values()),
            total=sum(total for total, _ in self._layers.values()),
            layers=len(self._layers),
            bytes_per_second=self.speed(),
        )


class PullJob:
    """One download in progress; any number of watchers follow it with `updates()`."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.state = PullState(model=model)
        self._changed = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def publish(self, state: PullState) -> None:
        self.state = dataclasses.replace(state, version=self.state.version + 1)
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def updates(self) -> AsyncIterator[PullState]:
        """The newest state each time it changes (states in between are skipped when the
        watcher is slower than the pull); ends with the finished state."""
        seen = -1
        while True:
            state = self.state
            if state.version != seen:
                seen = state.version
                yield state
                if state.finished:
                    return
                continue
            await self._changed.wait()

    async def wait(self) -> PullState:
        async for state in self.updates():
            if state.finished:
                return state
        return self.state  # pragma: no cover - updates() always ends with a finished state


class ModelService:
    """Lists, describes, pulls and deletes Ollama models; sets a channel's default model."""

    def __init__(
        self,
        *,
        gateway: Ollama,
        channels: ChannelStore,
        bases_in_use: BasesInUse,
        names_ttl: float = 30.0,
        pull_stall_timeout: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        reserved: Mapping[str, str] | None = None,
    ) -> None:
        self._gateway = gateway
        self._channels = channels
        self.bases_in_use = bases_in_use
        """Replaceable: the persona store answers once personas exist."""
        self._reserved: dict[str, str] = {}
        for name, what in (reserved or {}).items():
            self._reserved.setdefault(canonical_name(name), what)
        """Models the bot itself answers with (canonical name -> what it is, e.g. "the bot's
        chat model"): `/model delete` refuses them."""
        self._names_ttl = names_ttl
        self._stall_timeout = pull_stall_timeout
        self._clock = clock
        self._listed: tuple[float, list[InstalledModel]] | None = None
        self._pulls: dict[str, PullJob] = {}

    # ---- reading -------------------------------------------------------------------------

    @staticmethod
    def visible(name: str, guild_id: int | None) -> bool:
        """Whether a member in `guild_id` (None: a DM) may see or use the model `name`: any
        model but another guild's personas (bot.models.names.visible)."""
        return visible(name, guild_id)

    async def _all_installed(self) -> list[InstalledModel]:
        models = await self._gateway.list_models()
        self._listed = (self._clock(), models)
        return models

    async def installed(self, guild_id: int | None) -> list[InstalledModel]:
        """The installed models a member in `guild_id` may see, fresh from Ollama (and
        remembered for autocomplete)."""
        return [m for m in await self._all_installed() if visible(m.name, guild_id)]

    async def suggest(
        self, typed: str, guild_id: int | None, *, limit: int = AUTOCOMPLETE_LIMIT
    ) -> list[str]:
        """Installed model names for autocomplete: those containing `typed` (any case), the
        ones that start with it first; from a list at most `names_ttl` seconds old; never
        another guild's personas."""
        listed = self._listed
        if listed is None or self._clock() - listed[0] >= self._names_ttl:
            models = await self._all_installed()
        else:
            models = listed[1]
        needle = typed.strip().lower()
        names = sorted(
            {m.name for m in models if len(m.name) <= CHOICE_CHARS and visible(m.name, guild_id)},
            key=str.lower,
        )
        starts = [n for n in names if n.lower().startswith(needle)]
        contains = [n for n in names if needle in n.lower() and not n.lower().startswith(needle)]
        return (starts + contains)[:limit]

    async def find(self, name: str, guild_id: int | None) -> InstalledModel:
        """The installed model of that name (any spelling Ollama accepts); ModelNotFound if none
        (or if it is another guild's persona: told exactly as a model that is not there)."""
        wanted = canonical_name(name)
        if visible(name, guild_id):
            for model in await self._all_installed():
                if canonical_name(model.name) == wanted:
                    return model
        raise ModelNotFound(name.strip())

    async def describe(self, name: str, guild_id: int | None) -> ModelCard:
        if not visible(name, guild_id):
            raise ModelNotFound(name.strip())
        return await self._gateway.describe(name.strip())

    async def loaded(self, guild_id: int | None) -> list[LoadedModel]:
        return [m for m in await self._gateway.ps() if visible(m.name, guild_id)]

    # ---- a channel's model ---------------------------------------------------------------

    async def use(self, channel_id: int, guild_id: int | None, name: str) -> InstalledModel:
        """Make `name` the channel's model, after checking that it is installed. It answers
        next: a persona the channel had is taken off (`/persona use` puts one back)."""
        model = await self.find(name, guild_id)
        await self._channels.update(channel_id, guild_id, model=name.strip(), persona=None)
        return model

    # ---- pulling -------------------------------------------------------------------------

    def pull(self, name: str) -> tuple[PullJob, bool]:
        """Start pulling `name`, or join the pull of it already running.

        Returns the job and whether it was already running. The job belongs to the service:
        it goes on when the caller stops watching, until it ends or the service closes."""
        name = name.strip()
        if not name or any(c.isspace() for c in name):
            raise InvalidModelName(name)
        key = canonical_name(name)
        job = self._pulls.get(key)
        if job is not None:
            return job, True
        job = PullJob(name)
        self._pulls[key] = job
        job.task = asyncio.create_task(self._run_pull(job, key), name=f"pull {name}")
        return job, False

    def pulling(self, name: str) -> PullJob | None:
        return self._pulls.get(canonical_name(name))

    async def _run_pull(self, job: PullJob, key: str) -> None:
        tracker = PullTracker(job.model, clock=self._clock)
        try:
            async with contextlib.aclosing(self._gateway.pull(job.model)) as stream:
                lines = aiter(stream)
                while True:
                    try:
                        async with asyncio.timeout(self._stall_timeout):
                            line = await anext(lines)
                    except StopAsyncIteration:
                        break
                    except TimeoutError:
                        raise PullFailed(
                            job.model, f"no progress for {self._stall_timeout:g} s"
                        ) from None
                    tracker.feed(line)
                    job.publish(tracker.state())
            if tracker.status != "success":
                raise PullFailed(job.model, "the pull ended without reporting success")
            log.info("pulled %s", job.model)
            job.publish(dataclasses.replace(tracker.state(), finished=True))
        except BotError as exc:
            log.warning("pull of %s failed: %s", job.model, exc.__cause__ or exc)
            job.publish(dataclasses.replace(tracker.state(), finished=True, error=exc.user_message))
        except asyncio.CancelledError:
            job.publish(
                dataclasses.replace(
                    tracker.state(),
                    finished=True,
                    error="The bot shut down during the pull; run `/model pull` again.",
                )
            )
            raise
        except Exception:
            log.exception("pull of %s failed", job.model)
            job.publish(
                dataclasses.replace(tracker.state(), finished=True, error=BotError.user_message)
            )
        finally:
            if self._pulls.get(key) is job:
                del self._pulls[key]
            self._listed = None  # the installed models changed (or may have)

    # ---- deleting ------------------------------------------------------------------------

    async def check_delete(self, name: str, guild_id: int | None) -> InstalledModel:
        """The model that `/model delete` would remove; raises if it may not be deleted: the
        bot's own models (chat, vision, sentiment), a channel's `/model use` choice and the
        bases of personas (built-in ones too) are refused, saying why."""
        model = await self.find(name, guild_id)
        if self.pulling(model.name) is not None:
            raise InputError(f"`{model.name}` is being pulled right now. Wait until it is done.")
        key = canonical_name(model.name)
        if key in self._reserved:
            raise ModelProtected(model.name, self._reserved[key])
        channels = sum(
            count
            for used, count in (await self._channels.models_in_use()).items()
            if canonical_name(used) == key
        )
        if channels:
            which = "1 channel" if channels == 1 else f"{channels} channels"
            raise ModelProtected(
                model.name,
                f"used by {which} via `/model use`; they need to pick another model first",
            )
        personas = await self.bases_in_use(key)
        guilds = [(owner, name) for owner, name in personas if owner is not None]
        if guilds:
            # Another guild's persona names stay unsaid (guilds do not see each other's).
            shown = [name for owner, name in guilds if owner == guild_id]
            raise ModelInUse(model.name, shown, others=len(guilds) - len(shown))
        if personas:
            names = ", ".join(f"**{name}**" for _, name in personas)
            plural = "s" if len(personas) > 1 else ""
            raise ModelProtected(model.name, f"the base of the built-in persona{plural} {names}")
        return model

    async def delete(self, name: str, guild_id: int | None) -> InstalledModel:
        """Delete the model (checking again: a persona may have been built on it meanwhile)."""
        model = await self.check_delete(name, guild_id)
        try:
            await self._gateway.delete_model(model.name)
        finally:
            self._listed = None
        log.info("deleted model %s", model.name)
        return model

    # ---- lifecycle -----------------------------------------------------------------------

    async def close(self) -> None:
        """Stop the pulls in progress (the bot is shutting down)."""
        tasks = [job.task for job in self._pulls.values() if job.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
