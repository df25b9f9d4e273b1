"""ChatService: one channel's conversation turn, from the user's text to the stored reply.

It knows nothing of discord.py: it takes plain values and yields plain events, so the Discord side
can draw them however it likes while the model's stream is read at full speed."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from bot.conversation import context
from bot.conversation.fairness import PositionCallback, Scheduler, Ticket, UserRateLimit
from bot.errors import (
    BotError,
    GenerationTimeout,
    InputError,
    ModelNotFound,
    PermissionDenied,
    VisionUnavailable,
)
from bot.metrics import Metrics
from bot.ollama.protocol import ChatDelta, ChatMessage, ChatStats, Ollama
from bot.storage.channels import ChannelStore
from bot.storage.history import Author, HistoryStore, ImageRecord, StoredTurn, TurnResult
from bot.storage.models import Role, TurnStatus
from bot.vision.images import PreparedImage
from bot.vision.routing import IMAGE_TOKENS, ImagePlan, VisionRouter

if TYPE_CHECKING:
    from bot.personas.service import Persona, PersonaService

log = logging.getLogger(__name__)

ExtraContext = Callable[[str, int], Awaitable[list[ChatMessage]]]
"""System messages for one turn beyond the persona's (knowledge, attached files: see
bot/knowledge/service.py's TurnKnowledge), from the question and the planned window."""

HISTORY_SCAN_TURNS = 400
"""How many of the newest turns are read at most to fill a context window."""
HISTORY_FIRST_PAGE = 64
"""How many are read first; most windows are full before that."""


async def recent_turns(
    history: HistoryStore,
    channel_id: int,
    tokens: int,
    *,
    first_page: Sequence[StoredTurn] | None = None,
) -> list[StoredTurn]:
    """The channel's newest turns, oldest first: enough that the ones fit for a context hold
    more than `tokens`, else all of them, but at most HISTORY_SCAN_TURNS. Read back in growing
    pages, because a window is usually full after a few dozen turns and reading hundreds cost
    more than all the rest of a turn (bench/README.md). Older turns than these could never be
    chosen: a window takes the newest turns up to the first that does not fit. `first_page`:
    the newest HISTORY_FIRST_PAGE turns, when they were read already."""
    if first_page is None:
        first_page = await history.newest(channel_id, HISTORY_FIRST_PAGE)
    turns = list(first_page)
    asked = HISTORY_FIRST_PAGE
    while (
        len(turns) == asked
        and asked < HISTORY_SCAN_TURNS
        and sum(context.turn_tokens(t) for t in context.usable(turns)) <= tokens
    ):
        more = min(asked, HISTORY_SCAN_TURNS - asked)
        turns = [*await history.newest(channel_id, more, before=turns[0].id), *turns]
        asked += more
    return turns


@dataclass(slots=True)
class Abort:
    """Why the reader gave up on a reply, when that was a failure rather than a Stop (Discord
    refused to show it, for example): the reply is then stored as failed with this reason."""

    reason: str | None = None


@dataclass(frozen=True, slots=True)
class ChatLimits:
    default_model: str
    context_cap: int
    reply_reserve: int
    first_token_timeout: float
    between_tokens_timeout: float
    total_timeout: float
    reply_tokens: int = 0
    """The most tokens a reply may have (Ollama's num_predict); 0: no limit of the bot's."""


@dataclass(frozen=True, slots=True)
class ChatRequest:
    channel_id: int
    guild_id: int | None
    user: Author
    text: str
    model: str | None = None
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    images: tuple[PreparedImage, ...] = ()
    caption: bool = False
    """A /caption: the vision model answers even when the chat model could see."""
    source_message_id: int | None = None
    """The Discord message the question came from (a mention, a reply, an auto-reply or thread
    message); deleting that message deletes the stored question."""
    extra_context: ExtraContext | None = None
    """Knowledge and attached files for this turn, if any (None: the turn is as always)."""


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class ReplyStarted:
    """The exchange is stored and the model was asked; `turn_id` is the reply's turn."""

    turn_id: int


@dataclass(frozen=True, slots=True)
class ReplyFinished:
    text: str
    stats: ChatStats
    persona: str | None = None
    """The persona that answered; `stats.model` is then its Ollama model."""
    base_model: str | None = None
    """The persona's FROM."""


class ChatService:
    """Answers chat requests: one generation at a time per channel, in arrival order, within
    the scheduler's overall limit."""

    def __init__(
        self,
        *,
        gateway: Ollama,
        history: HistoryStore,
        channels: ChannelStore,
        limits: ChatLimits,
        assistant: Callable[[], Author],
        scheduler: Scheduler,
        rate_limit: UserRateLimit,
        vision: VisionRouter | None = None,
        personas: PersonaService | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._gateway = gateway
        self._personas = personas
        self._metrics = metrics
        self._history = history
        self._channels = channels
        self._limits = limits
        self._assistant = assistant
        self._vision = vision
        self._scheduler = scheduler
        self._rate_limit = rate_limit
        self._task_lines = itertools.count(1)
        self.closing = False

    @property
    def active(self) -> int:
        return self._scheduler.active

    @property
    def waiting(self) -> int:
        return self._scheduler.waiting

    def close(self) -> None:
        """Take no new requests; replies cut short from now on are stored as incomplete."""
        self.closing = True
        self._scheduler.closed = True

    async def model_for(self, request: ChatRequest) -> str:
        """The request's model, else the channel's (`/model use`), else the configured one."""
        if request.model:
            return request.model
        channel = await self._channels.get(request.channel_id)
        return channel.model or self._limits.default_model

    async def persona_for(self, request: ChatRequest) -> Persona | None:
        """The channel's persona (`/persona use`), unless the request names its own model."""
        if request.model or self._personas is None:
            return None
        return await self._personas.for_channel(request.guild_id, request.channel_id)

    def admit(self, user_id: int, channel_id: int, ticket: Ticket | None = None) -> Ticket:
        """Admit a generation, the moment its request arrives (before any await): the user's
        rate limit, then a place in the channel's line (see Ticket; or the place `ticket`
        holds already) unless the waiting line is full or the bot is stopping. Raises
        RateLimited, QueueFull or ShuttingDown, with nothing counted and the place given back.
        Pass the ticket to `respond`, or give it back with `release`."""
        try:
            ticket = self._scheduler.admit(channel_id, ticket)
            self._rate_limit.hit(user_id)
        except BaseException:
            if ticket is not None:
                self._scheduler.release(ticket)
            raise
        return ticket

    def hold_place(self, channel_id: int) -> Ticket:
        """A place in the channel's line for a message that may turn out to be for the bot,
        taken before any await (keeping Discord's order); `admit` it or `release` it."""
        return self._scheduler.reserve(channel_id)

    def admit_task(self, user_id: int) -> Ticket:
        """`admit` for a generation outside any conversation (/sentiment): counted in the
        user's rate limit, the parallel cap and the waiting line, but in a line of its own."""
        return self.admit(user_id, -next(self._task_lines))

    @contextlib.asynccontextmanager
    async def slot(self, ticket: Ticket) -> AsyncIterator[None]:
        """Hold a generation slot for an admitted task (`admit_task`) while it runs."""
        async with self._scheduler.turn(ticket.channel_id, None, ticket):
            yield

    def release(self, ticket: Ticket) -> None:
        self._scheduler.release(ticket)

    async def respond(
        self,
        request: ChatRequest,
        *,
        ticket: Ticket,
        on_position: PositionCallback | None = None,
        abort: Abort | None = None,
    ) -> AsyncIterator[ReplyStarted | TextDelta | ReplyFinished]:
        """Store the user's turn, stream the model's reply, store how it ended.

        `ticket` is the request's admission (`admit`). Waits for its turn first (`on_position`
        hears the place in line while waiting). Raises a BotError (after storing the reply as
        failed) when Ollama fails. If the reader stops early (the task is cancelled, or the
        iterator closed), the reply is stored as stopped with the text received so far
        (incomplete when the bot is shutting down; failed when `abort` holds a reason)."""
        text = request.text.strip()
        if not text:
            raise InputError("Your message is empty. Write something for the model to answer.")
        # A persona whose model went missing is created again before the request takes a
        # generation slot: one slow create never holds the line for everyone.
        persona = await self.persona_for(request)
        if persona is not None and self._personas is not None:
            await self._ensure(persona, fresh=False)
        async with self._scheduler.turn(request.channel_id, on_position, ticket):
            model = persona.ollama_model if persona else await self.model_for(request)
            plan, first_page = await self._plan_images(request, model)
            if plan is not None and persona is not None and plan.model != model:
                persona = None  # the vision model answers this turn, not the persona
            model = plan.model if plan else model
            user_turn, reply_turn = await self._history.begin_exchange(
                channel_id=request.channel_id,
                guild_id=request.guild_id,
                user=request.user,
                text=text,
                assistant=self._assistant(),
                model=model,
                request_id=request.request_id,
                persona=persona.name if persona else None,
                images=[ImageRecord(i.mime, i.width, i.height, i.data) for i in request.images],
                source_message_id=request.source_message_id,
            )
            log.info(
                "generation start request=%s guild=%s channel=%s model=%s",
                request.request_id,
                request.guild_id,
                request.channel_id,
                model,
            )
            received: list[str] = []
            result: TurnResult | None = None
            try:
                yield ReplyStarted(reply_turn)
                messages = await self._context(request, user_turn, first_page, model, plan, persona)
                stats: ChatStats | None = None
                stream = self._chat_stream(model, messages, persona, ticket)
                if self._metrics is not None:
                    stream = self._metrics.observe(stream)
                async for item in timed(stream, self._limits):
                    if isinstance(item, ChatStats):
                        stats = item
                    elif item.content:
                        if not received and not item.content.strip():
                            continue  # leading blank lines are not worth a message
                        received.append(item.content)
                        yield TextDelta(item.content)
                assert stats is not None  # chat_stream ends with stats or raises
                reply = "".join(received).strip()
                result = TurnResult(
                    status=TurnStatus.COMPLETE,
                    content=reply,
                    prompt_tokens=stats.prompt_tokens,
                    completion_tokens=stats.completion_tokens,
                    total_duration_ns=stats.total_duration_ns,
                    load_duration_ns=stats.load_duration_ns,
                    prompt_duration_ns=stats.prompt_duration_ns,
                    eval_duration_ns=stats.eval_duration_ns,
                )
                # The reply is shown while it is being stored: its last edit does not wait for
                # the database (behind other replies' writes when many end together). The
                # channel's next request still waits for the write.
                stored = asyncio.ensure_future(self._history.finish_turn(reply_turn, result))
                stored.add_done_callback(partial(_report_store_failure, request.request_id))
                log.info(
                    "generation done request=%s tokens=%s",
                    request.request_id,
                    stats.completion_tokens,
                )
                try:
                    yield ReplyFinished(
                        text=reply,
                        stats=stats,
                        persona=persona.name if persona else None,
                        base_model=persona.base_model if persona else None,
                    )
                finally:
                    with contextlib.suppress(Exception):  # reported by the callback
                        await asyncio.shield(stored)
            except BotError as exc:
                result = TurnResult(
                    status=TurnStatus.FAILED,
                    content="".join(received).strip(),
                    error=exc.user_message,
                )
                log.warning(
                    "generation failed request=%s guild=%s channel=%s: %s",
                    request.request_id,
                    request.guild_id,
                    request.channel_id,
                    exc.__cause__ or exc,
                )
                await self._history.finish_turn(reply_turn, result)
                raise
            finally:
                if result is None:
                    # Stopped by the reader (Stop button, shutdown, a reply Discord refused):
                    # keep what was received.
                    if abort is not None and abort.reason is not None:
                        result = TurnResult(
                            status=TurnStatus.FAILED,
                            content="".join(received).strip(),
                            error=abort.reason,
                        )
                    else:
                        status = TurnStatus.INCOMPLETE if self.closing else TurnStatus.STOPPED
                        result = TurnResult(status=status, content="".join(received).strip())
                    with contextlib.suppress(Exception):
                        await asyncio.shield(self._history.finish_turn(reply_turn, result))
                    log.info("generation stopped request=%s", request.request_id)
                if self._metrics is not None:
                    self._metrics.generation_ended(result.status)

    async def regenerate(
        self, *, channel_id: int, guild_id: int | None, turn_id: int, requester: Author, admin: bool
    ) -> ChatRequest:
        """Take back the channel's latest answer (and its question) so that the question can be
        asked again: returns the request to pass to `respond`. Only the latest answer can be
        regenerated, by the person who asked or an admin. The new answer comes from the channel's
        current model (a one-off `/chat model:` choice is not repeated)."""
        latest = await self._history.newest(channel_id, 2)
        if not (
            len(latest) == 2
            and latest[1].id == turn_id
            and latest[1].role == Role.ASSISTANT
            and latest[1].reply_to_id == latest[0].id
        ):
            raise InputError("Only the latest answer in this channel can be regenerated.")
        question, answer = latest
        if answer.status == TurnStatus.STREAMING:
            raise InputError("This answer is still being written.")
        if requester.id != question.author_id and not admin:
            raise PermissionDenied("Only the person who asked (or an admin) can regenerate this.")
        stored = (await self._history.images_for([question.id])).get(question.id, [])
        await self._history.delete_turns([question.id, answer.id])
        return ChatRequest(
            channel_id=channel_id,
            guild_id=guild_id,
            user=Author(question.author_id, question.author_name),
            text=question.content,
            images=tuple(PreparedImage.from_jpeg(i.data, i.width, i.height) for i in stored),
            source_message_id=question.discord_message_id,  # deleting it still forgets it
        )

    async def image_model(self, request: ChatRequest) -> str:
        """The model that would answer `request`'s images; VisionUnavailable if none can.
        Lets a command refuse early, before it shows anything."""
        if self._vision is None:
            raise VisionUnavailable("This bot is not set up to read images.")
        return await self._vision.model_for_images(
            requested=request.model,
            chat_model=await self.model_for(request),
            caption=request.caption,
        )

    async def _plan_images(
        self, request: ChatRequest, model: str
    ) -> tuple[ImagePlan | None, list[StoredTurn]]:
        """The vision plan, and the channel's newest turns before this exchange (the context's
        first page): one read gives both, with the earlier images the plan may re-send."""
        if self._vision is None:
            if request.images:
                raise VisionUnavailable("This bot is not set up to read images.")
            page = await self._history.newest(request.channel_id, HISTORY_FIRST_PAGE)
            return None, page
        recent = await self._history.recent(
            request.channel_id, HISTORY_FIRST_PAGE, images_of=self._vision.earlier_questions
        )
        plan = await self._vision.plan(
            channel_id=request.channel_id,
            chat_model=model,
            requested=request.model,
            caption=request.caption,
            with_images=bool(request.images),
            earlier=recent.images,
        )
        return plan, recent.turns

    async def _context(
        self,
        request: ChatRequest,
        user_turn: int,
        first_page: list[StoredTurn],
        model: str,
        plan: ImagePlan | None,
        persona: Persona | None = None,
    ) -> list[ChatMessage]:
        """The messages for the model. `first_page` was read just before this exchange was
        stored; no other turn of the channel is written meanwhile (one reply at a time per
        channel), so the stored question is rebuilt here rather than read back."""
        channel_id = request.channel_id
        info = await self._gateway.show(model)
        window = info.effective_context
        if persona is not None and persona.num_ctx:
            window = min(persona.num_ctx, info.context_length or persona.num_ctx)
        limits = context.budget(
            window, cap=self._limits.context_cap, reply_reserve=self._limits.reply_reserve
        )
        system = [ChatMessage("system", persona.system)] if persona and persona.system else []
        system += await _extra_context(request, limits)
        earlier = await recent_turns(
            self._history, channel_id, limits.for_history, first_page=first_page
        )
        current = StoredTurn(
            id=user_turn,
            channel_id=channel_id,
            role=Role.USER,
            author_id=request.user.id,
            author_name=request.user.name,
            content=request.text.strip(),
            model=None,
            status=TurnStatus.COMPLETE,
            error=None,
            reply_to_id=None,
            prompt_tokens=None,
            completion_tokens=None,
            total_duration_ns=None,
            eval_duration_ns=None,
            created_at=datetime.now(UTC),
        )
        room = (
            limits.for_history - context.turn_tokens(current) - IMAGE_TOKENS * len(request.images)
        )
        room -= sum(context.estimate_tokens(m.content) for m in system)
        if room < 0:
            raise InputError(
                f"Your message is too long for `{model}`: about "
                f"{context.turn_tokens(current)} tokens, and the model's window leaves room for "
                f"{limits.for_history}. Shorten it or split it up."
            )
        before = context.window(context.usable(earlier), room)
        chosen = [*before, current]
        if self._vision is None or plan is None:
            return [*system, *(ChatMessage(role=t.role, content=t.content) for t in chosen)]
        return [
            *system,
            *self._vision.messages(
                chosen,
                current_id=current.id,
                current_images=[image.b64 for image in request.images],
                plan=plan,
                spare_tokens=room - sum(context.turn_tokens(t) for t in before),
            ),
        ]

    async def _chat_stream(
        self,
        model: str,
        messages: list[ChatMessage],
        persona: Persona | None,
        ticket: Ticket,
    ) -> AsyncGenerator[ChatDelta | ChatStats]:
        """The model's stream. A persona's model that went missing since it was last looked up
        (the answer of /api/show is cached) is created again from its Modelfile, once, with
        the generation slot given back meanwhile (others generate; the channel keeps its
        place)."""
        for attempt in (1, 2):
            options = (
                {"num_predict": self._limits.reply_tokens} if self._limits.reply_tokens else None
            )
            stream = self._gateway.chat_stream(model, messages, options=options)
            yielded = False
            try:
                async with contextlib.aclosing(stream):
                    async for item in stream:
                        yielded = True
                        yield item
                return
            except ModelNotFound:
                if persona is None or self._personas is None or yielded or attempt == 2:
                    raise
            async with self._scheduler.aside(ticket):
                await self._ensure(persona, fresh=True)

    async def _ensure(self, persona: Persona, *, fresh: bool) -> None:
        """The persona's model, created again if Ollama lost it, within the first-token
        timeout: a member waits no longer for a re-created persona than for a first token."""
        assert self._personas is not None
        try:
            async with asyncio.timeout(self._limits.first_token_timeout):
                await self._personas.ensure(persona, fresh=fresh)
        except TimeoutError:
            raise GenerationTimeout(
                "waiting for the first token", self._limits.first_token_timeout
            ) from None


async def _extra_context(request: ChatRequest, limits: context.Budget) -> list[ChatMessage]:
    """The turn's knowledge and files, sized from the window planned for it."""
    if request.extra_context is None:
        return []
    return await request.extra_context(request.text.strip(), limits.window)


T = TypeVar("T")


async def timed(stream: AsyncGenerator[T], limits: ChatLimits) -> AsyncIterator[T]:
    """`stream` with the first-token, between-tokens and total timeouts of `limits` applied:
    GenerationTimeout when one runs out."""
    task = asyncio.current_task()
    assert task is not None
    watchdog = _Watchdog(task, limits)
    try:
        async with contextlib.aclosing(stream):
            iterator = aiter(stream)
            while True:
                watchdog.waiting = True
                try:
                    item = await anext(iterator)
                except StopAsyncIteration:
                    return
                except asyncio.CancelledError:
                    if watchdog.expired is None:
                        raise  # a real cancellation (Stop, shutdown)
                    if task.uncancel() > watchdog.cancelling:
                        raise  # cancelled by someone else too: that one wins
                    raise watchdog.expired from None
                finally:
                    watchdog.waiting = False
                watchdog.progress()
                yield item
    finally:
        watchdog.stop()


def _report_store_failure(request_id: str, stored: asyncio.Future[None]) -> None:
    if not stored.cancelled() and (error := stored.exception()) is not None:
        log.error("could not store the reply request=%s", request_id, exc_info=error)


class _Watchdog:
    """The timeouts of one model stream, kept by one timer that is moved on only when it fires,
    instead of a timeout armed and disarmed around every token: that cost a sixth of the bot's
    CPU with 200 replies streaming (bench/README.md). It cancels the reading task only while it
    waits for the stream, and says why in `expired`."""

    __slots__ = (
        "_deadline",
        "_first",
        "_handle",
        "_last",
        "_limits",
        "_loop",
        "_task",
        "cancelling",
        "expired",
        "waiting",
    )

    def __init__(self, task: asyncio.Task[Any], limits: ChatLimits) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = task
        self.cancelling = task.cancelling()  # cancellations pending before this one
        self._limits = limits
        self._last = self._loop.time()
        self._deadline = self._last + limits.total_timeout
        self._first = True
        self.waiting = False
        self.expired: GenerationTimeout | None = None
        self._handle = self._loop.call_at(self._due(), self._check)

    def progress(self) -> None:
        self._last = self._loop.time()
        if self._first:
            # The wait between tokens is usually shorter than the one for the first token:
            # the timer must not stay set for the longer one.
            self._first = False
            self._handle.cancel()
            self._handle = self._loop.call_at(self._due(), self._check)

    def stop(self) -> None:
        self._handle.cancel()

    def _due(self) -> float:
        limits = self._limits
        wait = limits.first_token_timeout if self._first else limits.between_tokens_timeout
        return min(self._last + wait, self._deadline)

    def _check(self) -> None:
        now = self._loop.time()
        due = self._due()
        if now < due:
            self._handle = self._loop.call_at(due, self._check)
        elif not self.waiting:
            # The reader is busy with a token it has (not the model's fault): look again later.
            self._handle = self._loop.call_at(now + 1.0, self._check)
        else:
            self.expired = self._reason(due)
            self._task.cancel()

    def _reason(self, due: float) -> GenerationTimeout:
        limits = self._limits
        if due == self._deadline:
            return GenerationTimeout("in all", limits.total_timeout)
        if self._first:
            return GenerationTimeout("waiting for the first token", limits.first_token_timeout)
        return GenerationTimeout("between tokens", limits.between_tokens_timeout)
