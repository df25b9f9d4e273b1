"""The doubles in this process, the real bot in another, and ways to watch both.

The bench process hosts FakeDiscord and FakeOllama and drives the scenarios; the bot runs as
`python -m tests.launcher` (the real `python -m bot run` with the two URLs pointed at the
doubles), so the doubles' work never runs on the bot's event loop. Times are compared across the
two processes through CLOCK_MONOTONIC, which is system-wide on Linux: the doubles stamp when they
dispatched an event or received a request, and the bench reads those stamps."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import math
import os
import re
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bot.storage import migrate
from bot.storage.engine import create_engine
from tests.doubles.fake_discord import FakeDiscord, FakeInteraction, FakeMessage, RecordedRequest
from tests.doubles.fake_ollama import FakeOllama

ROOT = Path(__file__).resolve().parents[1]
FOOTER = re.compile(r"\n-# .+ tokens/s( · [^\n]*)?$")
LAG_LINE = re.compile(r"event loop lag: p50 ([\d.]+) ms, p99 ([\d.]+) ms, max ([\d.]+) ms \((\d+)")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Doubles:
    discord: FakeDiscord
    ollama: FakeOllama
    channels: list[str]
    users: list[str]


@contextlib.asynccontextmanager
async def doubles(*, channels: int = 3, users: int = 3) -> AsyncIterator[Doubles]:
    """Both doubles on loopback, with at least `channels` text channels and `users` members.
    Their OpenAPI checks of request bodies are off: the tests hold the bot to them, and they
    cost the doubles about 4 ms a request, time that is not the bot's."""
    fake = FakeDiscord(validate_schemas=False)
    for n in range(len(fake.channel_ids), channels):
        fake.add_text_channel(f"bench-{n}")
    names = ["alice", "bob"]
    for n in range(len(names), users):
        fake.add_member(f"user{n}")
        names.append(f"user{n}")
    await fake.start()
    # An Ollama that runs every generation the bot sends at once (a big OLLAMA_NUM_PARALLEL):
    # the scenarios set the bot's max_parallel_generations themselves.
    ollama = FakeOllama(validate_schemas=False, parallel=100_000, max_queue=100_000)
    await ollama.start()
    # No garbage collection in this process meanwhile: the doubles keep every request, message
    # and frame, and walking them again and again cost this process about a tenth of its CPU,
    # taken from the bot. They make next to no cyclic garbage (27 objects in 1,100 turns).
    gc.disable()
    try:
        yield Doubles(fake, ollama, list(fake.channel_ids[:channels]), names[:users])
    finally:
        await ollama.close()
        await fake.close()
        gc.enable()
        gc.collect()


@contextlib.contextmanager
def database() -> Iterator[str]:
    """A SQLite URL in a fresh temporary folder (removed afterwards)."""
    with tempfile.TemporaryDirectory(prefix="bench-") as folder:
        yield f"sqlite+aiosqlite:///{Path(folder) / 'bot.db'}"


async def migrated(url: str) -> None:
    """Bring the database at `url` to the newest schema from this process, so that the bot
    starts as it does on every start but the first after an upgrade: without migrating (and
    without Alembic in its memory)."""
    engine = create_engine(url)
    try:
        await migrate.upgrade(engine)
    finally:
        await engine.dispose()


@dataclass
class LagWindow:
    at: float  # when the line was read (monotonic)
    p50: float
    p99: float
    worst: float
    samples: int


@dataclass
class BotProcess:
    """The bot in a child process. `lines` is its output, each line with when it was read."""

    process: asyncio.subprocess.Process
    spawned: float
    ready: float = 0.0
    lines: list[tuple[float, str]] = field(default_factory=list)
    _reader: asyncio.Task[None] | None = None

    @classmethod
    async def start(
        cls,
        world: Doubles,
        database_url: str,
        ready_within: float = 60,
        *,
        root: Path = ROOT,
        **settings: object,
    ) -> BotProcess:
        """Spawn the bot with BOT_<NAME> settings and wait until the Discord double saw it
        become ready (READY and GUILD_CREATE sent). `root`: the source tree the bot runs from
        (another checkout, to compare with an older version)."""
        env = {
            "PATH": os.environ.get("PATH", ""),
            "PYTHONPATH": str(root),
            "DISCORD_TOKEN": world.discord.token,
            "OLLAMA_HOST": world.ollama.url,
            "DATABASE_URL": database_url,
            **{f"BOT_{key.upper()}": str(value) for key, value in settings.items()},
        }
        spawned = time.monotonic()
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.launcher",
            world.discord.api_base,
            world.discord.gateway_url,
            cwd=root,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        bot = cls(process, spawned)
        bot._reader = asyncio.create_task(bot._read())
        try:
            await world.discord.wait_ready(timeout=ready_within)
        except BaseException:
            await bot.stop()
            raise
        bot.ready = time.monotonic()
        return bot

    async def _read(self) -> None:
        # Read all the time: a full pipe would block the bot's logging, and with it the bot.
        assert self.process.stdout is not None
        while line := await self.process.stdout.readline():
            self.lines.append((time.monotonic(), line.decode(errors="replace").rstrip()))

    @property
    def pid(self) -> int:
        return self.process.pid

    def status(self, key: str) -> int:
        """A field of /proc/<pid>/status in kB (VmRSS: resident now, VmHWM: the peak)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
        raise KeyError(key)

    def cpu_seconds(self) -> float:
        """User plus system CPU time the bot has used so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def lag_windows(self, since: float, until: float) -> list[LagWindow]:
        """Loop-lag log lines (BOT_LOOP_LAG_LOG_INTERVAL) read between the two times."""
        found = []
        for at, text in self.lines:
            if since <= at <= until and (match := LAG_LINE.search(text)):
                p50, p99, worst, samples = match.groups()
                found.append(LagWindow(at, float(p50), float(p99), float(worst), int(samples)))
        return found

    def output(self, last: int = 30) -> str:
        return "\n".join(text for _, text in self.lines[-last:])

    async def stop(self, grace: float = 30) -> int:
        """SIGTERM (the bot's clean stop), then SIGKILL if it does not exit in time."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), grace)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._reader, 5)
        return self.process.returncode if self.process.returncode is not None else -1


def pieces(fake: FakeDiscord, interaction: FakeInteraction) -> list[FakeMessage]:
    """The messages of a /chat reply, in order."""
    ids = [interaction.original_message_id, *interaction.followup_ids]
    return [fake.messages[i] for i in ids if i is not None and i in fake.messages]


def finished(fake: FakeDiscord, interaction: FakeInteraction) -> bool:
    """The reply shows its footer (complete) or a warning (failed)."""
    shown = pieces(fake, interaction)
    if not shown:
        return False
    last = shown[-1].content
    return bool(FOOTER.search(last)) or "⚠️" in last


def failed(fake: FakeDiscord, interaction: FakeInteraction) -> bool:
    """The reply never finished, or finished with a warning instead of its footer."""
    shown = pieces(fake, interaction)
    return not shown or not FOOTER.search(shown[-1].content)


def final_edit(fake: FakeDiscord, interaction: FakeInteraction) -> float:
    """When the double applied the reply's last edit (its clock: time.monotonic); NaN when the
    reply never finished."""
    if failed(fake, interaction):
        return math.nan
    return max(t for message in pieces(fake, interaction) for t, _ in message.edits)


class Watcher:
    """Resolves one future per interaction once its reply is finished. The Discord double calls
    it after each REST request it answered (`FakeDiscord.request_hooks`), and it looks only at
    the interaction that request was for (by the token in the path): no polling, no scans. When
    it resolves only paces the scenario, never a measured time (those come from the double's
    own stamps)."""

    def __init__(self, fake: FakeDiscord) -> None:
        self._fake = fake
        self._pending: dict[str, tuple[FakeInteraction, asyncio.Future[None]]] = {}  # by token

    async def __aenter__(self) -> Watcher:
        self._fake.request_hooks.append(self._answered)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._fake.request_hooks.remove(self._answered)

    def watch(self, interaction: FakeInteraction) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if finished(self._fake, interaction):  # it may have finished before it was watched
            future.set_result(None)
        else:
            self._pending[interaction.token] = (interaction, future)
            future.add_done_callback(lambda _: self._pending.pop(interaction.token, None))
        return future

    def _answered(self, request: RecordedRequest) -> None:
        # /interactions/{id}/{token}/callback and /webhooks/{application}/{token}/...
        parts = request.path.split("/", 4)
        if len(parts) < 4 or parts[1] not in ("webhooks", "interactions"):
            return
        entry = self._pending.get(parts[3])
        if entry is not None and finished(self._fake, entry[0]):
            interaction, future = entry
            del self._pending[interaction.token]
            if not future.done():
                future.set_result(None)


async def sample_while(
    probe: Callable[[], float], running: asyncio.Event, period: float = 0.25
) -> list[float]:
    """Call `probe` every `period` seconds until `running` is cleared; the values seen."""
    values = []
    while running.is_set():
        with contextlib.suppress(OSError, KeyError):
            values.append(probe())
        await asyncio.sleep(period)
    return values


async def own_lag_while(running: asyncio.Event, period: float = 0.01) -> list[tuple[float, float]]:
    """This process's event-loop lag: every `period` seconds until `running` is cleared, when
    (monotonic) and how many ms late a timer fired. A figure timed by the doubles' stamps
    includes this process's backlog, which this shows."""
    loop = asyncio.get_running_loop()
    found = []
    while running.is_set():
        asked = loop.time()
        await asyncio.sleep(period)
        found.append((time.monotonic(), (loop.time() - asked - period) * 1000))
    return found


@contextlib.asynccontextmanager
async def profiled(bot: BotProcess, folder: Path | None, name: str) -> AsyncIterator[None]:
    """With a folder, record where the bot process spends its time meanwhile (py-spy, from the
    dev extra): `<folder>/<name>.txt` holds the stacks sampled while a thread held the GIL (the
    bot's Python CPU time) in the collapsed format that speedscope.app and flamegraph.pl read."""
    if folder is None:
        yield
        return
    spy = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("py-spy")),
        "record",
        "--pid",
        str(bot.pid),
        "--rate",
        "200",
        "--gil",
        "--nonblocking",
        "--format",
        "raw",
        "--output",
        str(folder / f"{name}.txt"),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        await spy.wait()
