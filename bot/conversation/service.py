"""ChatService: one channel's conversation turn, from the user's text to the stored reply.

It knows nothing of discord.py: it takes plain values and yields plain events, so the Discord side
can draw them however it likes while the model's stream is read at full speed."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import time
import uuid
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from bot.conversation import context
from bot.conversation.fairness import PositionCallback, Scheduler, Ticket, UserRateLimit
from bot.conversation.thinking import ThoughtWithoutAnswer, split_think_tags, think_value
from bot.conversation.usage import UsageService
from bot.errors import (
    BotError,
    GenerationTimeout,
    InputError,
    ModelNotFound,
    OllamaUnavailable,
    PermissionDenied,
    VisionUnavailable,
)
from bot.metrics import Metrics
from bot.ollama.protocol import ChatDelta, ChatMessage, ChatStats, LoadedModel, Ollama
from bot.settings import keep_alive_value
from bot.storage.channels import ChannelStore
from bot.storage.history import (
    Author,
    HistoryStore,
    ImageRecord,
    StoredTurn,
    Summary,
    TurnResult,
)
from bot.storage.models import Role, TurnStatus
from bot.tools.loop import ToolRunner, ToolStep, ToolTrace
from bot.tools.registry import ToolContext, ToolUse
from bot.vision.images import PreparedImage
from bot.vision.routing import IMAGE_TOKENS, ImagePlan, VisionRouter

if TYPE_CHECKING:
    from bot.personas.persona import Persona
    from bot.personas.service import PersonaService

log = logging.getLogger(__name__)

ExtraContext = Callable[[str, int], Awaitable[list[ChatMessage]]]
"""System messages for one turn beyond the persona's (knowledge, attached files: see
bot/knowledge/service.py's TurnKnowledge), from the question and the planned window."""

HISTORY_SCAN_TURNS = 400
"""How many of the newest turns are read at most to fill a context window."""
HISTORY_FIRST_PAGE = 64
"""How many are read first; most windows are full before that."""
DURATION_WEIGHT = 0.3
"""Weight of the newest generation in a model's moving average of generation times."""

WaitCallback = Callable[[int, float | None], None]
"""Told the place in line (1 = next) and the expected wait in seconds (None: not known yet)."""

SUMMARY_INTRO = "Summary of the earlier conversation (its messages are not shown):\n"
SUMMARY_INSTRUCTIONS = (
    "You keep a running summary of a chat conversation for an assistant who can no longer see "
    "its older messages. Merge the summary so far (if any) and the messages to add into one "
    "updated summary: who said what, facts, names, numbers, decisions, requests and open "
    "questions. Be brief and factual, write plain prose or short bullet points, and never "
    "answer or continue the conversation."
)
FOLD_WHEN = 0.75
"""Summarise when the turns not yet summarised fill this share of the room for history..."""
FOLD_KEEP = 0.5
"""...folding the oldest of them until the rest fill at most this share: the summary is then
ready before turns would have to be left out."""


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
    message_id: int | None = None
    """The Discord message the reply starts in, once it is shown (stored with the answer, so
    that a message menu can find it)."""


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
    summarise: bool = True
    """Summarise turns that no longer fit, instead of leaving them out."""
    speaker_names: bool = True
    """In guild channels with several people, user turns carry their speaker's name."""
    summary_tokens: int = 512
    """The longest summary (num_predict of a summary)."""
    default_think: str = "default"
    """The thinking level at the top of the chain (the `default_think` setting)."""
    fallback_models: tuple[str, ...] = ()
    """Models that answer when the asked one's hosts are down or the line is long."""
    fallback_after_queue: int = 0
    """Requests waiting ahead that send a request to a fallback (0: never for the line)."""


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
    continues: int | None = None
    """The answer (turn id) to go on with, cut at the length limit (the Continue button)."""
    think: str | None = None
    """This message's thinking level (`/chat think:`; LEAST for Retry without thinking);
    None: the channel's, the persona's or the setting's."""
    roles: tuple[int, ...] = ()
    """The member's role ids (their token quota may depend on them)."""
    extra_context: ExtraContext | None = None
    """Knowledge and attached files for this turn, if any (None: the turn is as always)."""


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class ThinkingDelta:
    """A piece of the model's reasoning: shown only on request, never part of the answer."""

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
    summarised: int | None = None
    """The context used a summary of this many earlier messages for the first time."""
    left_out: int = 0
    """Earlier messages that were neither sent nor summarised (they did not fit)."""
    reasoning: str = ""
    """What the model thought before answering (stored with the turn, not in `text`)."""
    thought_seconds: float | None = None
    """From the first reasoning to the first answer text; None: the model did not think."""
    tools: tuple[ToolUse, ...] = ()
    """The tools the model called for this reply."""
    tools_note: str | None = None
    """Why tools were not (all) used: the model can't, or it looped past the rounds."""
    loaded_model: bool = False
    """The model had to be loaded before it answered (the stats' load_duration says how long)."""
    fallback_from: str | None = None
    """The model that was asked, when a fallback (`stats.model`) answered instead."""
    fallback_reason: str | None = None
    """Why: "busy" (a long line) or "unavailable" (its hosts are down)."""


@dataclass(slots=True)
class _Run:
    """What happened to one generation on its way: the model that answers, and why."""

    model: str
    loaded: bool = False
    fallback_from: str | None = None
    fallback_reason: str | None = None


@dataclass(frozen=True, slots=True)
class ContextPlan:
    """The messages for one request and how they spend the model's window."""

    model: str
    window: int
    messages: list[ChatMessage]
    system_tokens: int
    """The persona's system prompt."""
    knowledge_tokens: int
    summary: Summary | None
    summary_tokens: int
    turns: int
    """Earlier turns sent."""
    turn_tokens: int
    current_tokens: int
    """The question (and an answer being continued)."""
    images: int
    image_tokens: int
    prompt_tokens: int
    """The whole prompt, calibrated estimate."""
    left_out: int
    fold: tuple[StoredTurn, ...] = ()
    """Turns to fold into the summary after this reply."""

    @property
    def reply_room(self) -> int:
        return max(self.window - self.prompt_tokens, 0)


@dataclass(frozen=True, slots=True)
class ContextReport:
    """`/context`: the plan of the channel's next request, and what Ollama runs now."""

    plan: ContextPlan
    persona: str | None
    loaded: LoadedModel | None
    known: bool
    """Whether Ollama answered /api/ps (False: unknown whether the model is loaded)."""


@dataclass(frozen=True, slots=True)
class _Start:
    """What a reply starts from: a new exchange, or an answer to continue."""

    model: str
    persona: Persona | None
    reply_turn: int
    build: Callable[[], Awaitable[ContextPlan]]
    prior: str = ""
    """The answer so far, when continuing it."""
    prior_tokens: int = 0
    message_id: int | None = None
    think: bool | str | None = None
    """Ollama's `think` for this reply (None: not sent)."""
    busy_from: str | None = None
    """The model asked for, when a fallback answers because the line is long."""


def _question(request: ChatRequest, turn_id: int, text: str) -> StoredTurn:
    return StoredTurn(
        id=turn_id,
        channel_id=request.channel_id,
        role=Role.USER,
        author_id=request.user.id,
        author_name=request.user.name,
        content=text,
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


def _to_fold(
    turns: Sequence[StoredTurn], *, room: int, pending: int, dropped: bool, ratio: float
) -> tuple[StoredTurn, ...]:
    """The oldest of the turns not yet summarised to fold into the summary after this reply:
    none while they (with the `pending` question) fill less than FOLD_WHEN of the `room`, else
    enough that the rest fill at most FOLD_KEEP of it. Whole exchanges: what stays starts with
    a question."""
    costs = [context.turn_tokens(t, ratio) for t in turns]
    if not dropped and sum(costs) + pending <= FOLD_WHEN * room:
        return ()
    kept = 0
    used = pending
    for cost in reversed(costs):
        if used + cost > FOLD_KEEP * room:
            break
        used += cost
        kept += 1
    cut = len(turns) - kept
    while cut < len(turns) and turns[cut].role != Role.USER:
        cut += 1
    return tuple(turns[:cut]) if cut >= 2 else ()


def _same_model(loaded: str, model: str) -> bool:
    """Whether /api/ps's name (always with a tag) is `model` (maybe without one)."""
    return loaded == model or (":" not in model and loaded == f"{model}:latest")


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
        tools: ToolRunner | None = None,
        usage: UsageService | None = None,
    ) -> None:
        self._gateway = gateway
        self._tools = tools
        self._usage = usage
        self._durations: dict[str, float] = {}  # model -> moving average of generation seconds
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
        self.windows = context.Windows(
            gateway, cap=limits.context_cap, reply_reserve=limits.reply_reserve
        )
        self._summarising: set[int] = set()  # channels with a summary being written
        self._background: set[asyncio.Task[None]] = set()

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

    def admit(
        self,
        user_id: int,
        channel_id: int,
        ticket: Ticket | None = None,
        *,
        roles: Collection[int] = (),
    ) -> Ticket:
        """Admit a generation, the moment its request arrives (before any await): the user's
        daily token quota (`roles`: theirs), the rate limit, then a place in the channel's line
        (see Ticket; or the place `ticket` holds already) unless the waiting line is full or
        the bot is stopping. Raises QuotaExceeded, RateLimited, QueueFull or ShuttingDown, with
        nothing counted and the place given back. Pass the ticket to `respond`, or give it back
        with `release`."""
        try:
            if self._usage is not None:
                self._usage.check(user_id, roles)
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

    def admit_task(self, user_id: int, roles: Collection[int] = ()) -> Ticket:
        """`admit` for a generation outside any conversation (/sentiment): counted in the
        user's rate limit, the parallel cap and the waiting line, but in a line of its own."""
        return self.admit(user_id, -next(self._task_lines), roles=roles)

    @contextlib.asynccontextmanager
    async def slot(self, ticket: Ticket) -> AsyncIterator[None]:
        """Hold a generation slot for an admitted task (`admit_task`) while it runs."""
        async with self._scheduler.turn(ticket.channel_id, None, ticket):
            yield

    def release(self, ticket: Ticket) -> None:
        self._scheduler.release(ticket)

    def count_usage(self, guild_id: int | None, user_id: int, stats: ChatStats) -> None:
        """Count a generation made outside `respond` (/sentiment) in the member's usage."""
        if self._usage is not None:
            self._usage.record(guild_id, user_id, stats)

    async def respond(
        self,
        request: ChatRequest,
        *,
        ticket: Ticket,
        on_position: WaitCallback | None = None,
        on_loading: Callable[[str], None] | None = None,
        abort: Abort | None = None,
    ) -> AsyncIterator[ReplyStarted | TextDelta | ThinkingDelta | ToolStep | ReplyFinished]:
        """Store the user's turn, stream the model's reply, store how it ended.

        `ticket` is the request's admission (`admit`). Waits for its turn first (`on_position`
        hears the place in line while waiting). Raises a BotError (after storing the reply as
        failed) when Ollama fails. If the reader stops early (the task is cancelled, or the
        iterator closed), the reply is stored as stopped with the text received so far
        (incomplete when the bot is shutting down; failed when `abort` holds a reason).

        `on_position` hears the expected wait too; `on_loading` hears the model's name when it
        must be loaded before it answers.

        A request that `continues` an answer cut at the length limit asks the model to go on
        from where it stopped, and extends the stored answer instead of adding turns.

        A fallback model (ChatLimits.fallback_models) answers a request without a persona when
        `fallback_after_queue` or more requests wait ahead of it, or when every host with the
        asked model is down."""
        text = request.text.strip()
        if not text and request.continues is None:
            raise InputError("Your message is empty. Write something for the model to answer.")
        # A persona whose model went missing is created again before the request takes a
        # generation slot: one slow create never holds the line for everyone.
        persona = await self.persona_for(request)
        if persona is not None and self._personas is not None:
            await self._ensure(persona, fresh=False)
        asked = persona.ollama_model if persona else await self.model_for(request)
        busy_fallback: str | None = None
        if persona is None and request.continues is None and self._line_is_long():
            busy_fallback = await self._fallback(asked)
            ticket.fallback = busy_fallback is not None
        told: PositionCallback | None = None
        if on_position is not None:
            tell = on_position
            waits_for = busy_fallback or asked
            told = lambda place: tell(place, self.expected_wait(waits_for, place))  # noqa: E731
        folding: tuple[str, ContextPlan] | None = None
        async with self._scheduler.turn(request.channel_id, told, ticket):
            if request.continues is not None:
                start = await self._continuation(request, persona)
            else:
                start = await self._exchange(request, text, persona, busy_fallback)
                if busy_fallback is not None:
                    start = dataclasses.replace(start, busy_from=asked)
            async for event in self._generate(request, start, abort, ticket, on_loading):
                if isinstance(event, ContextPlan):
                    folding = (start.model, event)
                else:
                    yield event
        # After the reply, with its slot given back: the turns that no longer fit well are
        # summarised in the background, when a slot is free.
        if folding is not None and self._limits.summarise:
            self._summarise_soon(request, *folding)

    async def _exchange(
        self,
        request: ChatRequest,
        text: str,
        persona: Persona | None,
        busy_fallback: str | None = None,
    ) -> _Start:
        """A new question: stored with a `streaming` answer to fill (by `busy_fallback` when
        the line is long: see `respond`)."""
        if busy_fallback is not None:
            model = busy_fallback
        else:
            model = persona.ollama_model if persona else await self.model_for(request)
        plan, first_page = await self._plan_images(request, model)
        if plan is not None and persona is not None and plan.model != model:
            persona = None  # the vision model answers this turn, not the persona
        handed_over = plan is not None and plan.model != model
        model = plan.model if plan else model
        think = await self.think_for(request, model, persona, handed_over=handed_over)
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
        current = _question(request, user_turn, text)

        async def build() -> ContextPlan:
            # `first_page` was read just before this exchange was stored; no other turn of
            # the channel is written meanwhile (one reply at a time per channel), so the
            # stored question is rebuilt here rather than read back.
            return await self._plan(
                channel_id=request.channel_id,
                guild_id=request.guild_id,
                model=model,
                persona=persona,
                first_page=first_page,
                current=current,
                current_images=[image.b64 for image in request.images],
                vision=plan,
                extra=request.extra_context,
                question=text,
            )

        return _Start(model=model, persona=persona, reply_turn=reply_turn, build=build, think=think)

    async def _continuation(self, request: ChatRequest, persona: Persona | None) -> _Start:
        """Go on with the answer `request.continues`: the conversation up to its question, then
        the answer so far as the model's own last message, which the model continues."""
        assert request.continues is not None
        question, answer = await self._continuable(request.channel_id, request.continues)
        model = answer.model or self._limits.default_model
        if persona is not None and persona.ollama_model != model:
            persona = None  # the channel changed persona since: the same model goes on
        current = question._replace(content=question.content.strip())

        async def build() -> ContextPlan:
            page = await self._history.newest(
                request.channel_id, HISTORY_FIRST_PAGE, before=question.id
            )
            return await self._plan(
                channel_id=request.channel_id,
                guild_id=request.guild_id,
                model=model,
                persona=persona,
                first_page=page,
                current=current,
                current_images=[],
                vision=None,
                tail=ChatMessage("assistant", answer.content),
            )

        return _Start(
            model=model,
            persona=persona,
            reply_turn=answer.id,
            build=build,
            think=await self.think_for(request, model, persona),
            prior=answer.content,
            prior_tokens=answer.completion_tokens or 0,
            message_id=answer.discord_message_id,
        )

    async def _generate(
        self,
        request: ChatRequest,
        start: _Start,
        abort: Abort | None,
        ticket: Ticket,
        on_loading: Callable[[str], None] | None = None,
    ) -> AsyncIterator[
        ReplyStarted | TextDelta | ThinkingDelta | ToolStep | ReplyFinished | ContextPlan
    ]:
        """Stream the reply of `start` and store how it ended (see `respond`); ends with the
        context plan when the summariser should fold turns after the reply."""
        log.info(
            "generation start request=%s guild=%s channel=%s model=%s",
            request.request_id,
            request.guild_id,
            request.channel_id,
            start.model,
        )
        run = _Run(start.model)
        if start.busy_from is not None:
            run.fallback_from, run.fallback_reason = start.busy_from, "busy"
        received: list[str] = []
        thoughts: list[str] = []
        thinking_from: float | None = None
        answer_from: float | None = None
        result: TurnResult | None = None

        def so_far() -> str:
            return (start.prior + "".join(received)).strip()

        def reasoning() -> str | None:
            return "".join(thoughts).strip() or None

        def message_id() -> int | None:
            if start.message_id is not None:
                return start.message_id
            return abort.message_id if abort is not None else None

        try:
            yield ReplyStarted(start.reply_turn)
            plan = await start.build()
            summarised = None
            if plan.summary is not None and not plan.summary.announced:
                summarised = plan.summary.covered
                await self._history.mark_announced(plan.summary.id)
            stats: ChatStats | None = None
            trace = ToolTrace()
            asked_at = asyncio.get_running_loop().time()
            stream = await self._reply_stream(request, start, plan, ticket, trace, run, on_loading)
            if self._metrics is not None:
                stream = self._metrics.observe(stream)
            async for item in timed(stream, self._limits):
                if isinstance(item, ChatStats):
                    stats = item
                    continue
                if isinstance(item, ToolStep):
                    yield item
                    continue
                if item.thinking:
                    thoughts.append(item.thinking)
                    thinking_from = thinking_from or time.monotonic()
                    yield ThinkingDelta(item.thinking)
                if item.content:
                    if not received and not item.content.strip():
                        continue  # leading blank lines are not worth a message
                    answer_from = answer_from or time.monotonic()
                    received.append(item.content)
                    yield TextDelta(item.content)
            assert stats is not None  # chat_stream ends with stats or raises
            self._note_duration(run.model, asyncio.get_running_loop().time() - asked_at)
            if self._usage is not None:
                self._usage.record(request.guild_id, request.user.id, stats)
            if not so_far() and reasoning():
                raise ThoughtWithoutAnswer()
            if stats.prompt_tokens and not trace.uses and not run.fallback_from:
                # (tool rounds add to the prompt; a fallback model counts its own way)
                self.windows.calibration.observe(
                    run.model, plan.messages, stats.prompt_tokens, plan.window
                )
            reply = so_far()
            result = TurnResult(
                status=TurnStatus.COMPLETE,
                content=reply,
                reasoning=reasoning(),
                prompt_tokens=stats.prompt_tokens,
                completion_tokens=(stats.completion_tokens or 0) + start.prior_tokens or None,
                total_duration_ns=stats.total_duration_ns,
                load_duration_ns=stats.load_duration_ns,
                prompt_duration_ns=stats.prompt_duration_ns,
                eval_duration_ns=stats.eval_duration_ns,
                discord_message_id=message_id(),
                done_reason=stats.done_reason,
            )
            # The reply is shown while it is being stored: its last edit does not wait for
            # the database (behind other replies' writes when many end together). The
            # channel's next request still waits for the write.
            stored = asyncio.ensure_future(self._history.finish_turn(start.reply_turn, result))
            stored.add_done_callback(partial(_report_store_failure, request.request_id))
            log.info(
                "generation done request=%s tokens=%s", request.request_id, stats.completion_tokens
            )
            try:
                yield ReplyFinished(
                    text=reply,
                    stats=stats,
                    persona=start.persona.name if start.persona else None,
                    base_model=start.persona.base_model if start.persona else None,
                    summarised=summarised,
                    left_out=plan.left_out,
                    reasoning=reasoning() or "",
                    thought_seconds=_thought(thinking_from, answer_from),
                    tools=tuple(trace.uses),
                    tools_note=trace.note,
                    loaded_model=run.loaded,
                    fallback_from=run.fallback_from,
                    fallback_reason=run.fallback_reason,
                )
            finally:
                with contextlib.suppress(Exception):  # reported by the callback
                    await asyncio.shield(stored)
            if plan.fold:
                yield plan
        except BotError as exc:
            result = TurnResult(
                status=TurnStatus.FAILED,
                content=so_far(),
                error=exc.user_message,
                reasoning=reasoning(),
            )
            log.warning(
                "generation failed request=%s guild=%s channel=%s: %s",
                request.request_id,
                request.guild_id,
                request.channel_id,
                exc.__cause__ or exc,
            )
            if start.prior:  # a failed continuation keeps the answer it was to extend
                result = TurnResult(
                    status=TurnStatus.COMPLETE,
                    content=so_far(),
                    done_reason="length",
                    discord_message_id=message_id(),
                )
            await self._history.finish_turn(start.reply_turn, result)
            raise
        finally:
            if result is None:
                # Stopped by the reader (Stop button, shutdown, a reply Discord refused):
                # keep what was received.
                if abort is not None and abort.reason is not None and not start.prior:
                    result = TurnResult(
                        status=TurnStatus.FAILED,
                        content=so_far(),
                        error=abort.reason,
                        reasoning=reasoning(),
                    )
                else:
                    status = TurnStatus.INCOMPLETE if self.closing else TurnStatus.STOPPED
                    result = TurnResult(
                        status=status,
                        content=so_far(),
                        discord_message_id=message_id(),
                        reasoning=reasoning(),
                    )
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._history.finish_turn(start.reply_turn, result))
                log.info("generation stopped request=%s", request.request_id)
            if self._metrics is not None:
                self._metrics.generation_ended(result.status, run.model)

    async def regenerate(
        self, *, channel_id: int, guild_id: int | None, turn_id: int, requester: Author, admin: bool
    ) -> ChatRequest:
        """Take back the channel's latest answer (and its question) so that the question can be
        asked again: returns the request to pass to `respond`. Only the latest answer can be
        regenerated, by the person who asked or an admin. The new answer comes from the channel's
        current model (a one-off `/chat model:` choice is not repeated)."""
        question, answer = await self._latest_answer(channel_id, turn_id, "regenerated")
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

    async def continuation(
        self, *, channel_id: int, guild_id: int | None, turn_id: int, requester: Author, admin: bool
    ) -> ChatRequest:
        """The request that makes the model go on with the channel's latest answer, cut at the
        length limit (the Continue button): by the person who asked, or an admin."""
        question, _ = await self._continuable(channel_id, turn_id)
        if requester.id != question.author_id and not admin:
            raise PermissionDenied("Only the person who asked (or an admin) can continue this.")
        return ChatRequest(
            channel_id=channel_id,
            guild_id=guild_id,
            user=Author(question.author_id, question.author_name),
            text="",
            continues=turn_id,
        )

    async def _latest_answer(
        self, channel_id: int, turn_id: int, verb: str
    ) -> tuple[StoredTurn, StoredTurn]:
        latest = await self._history.newest(channel_id, 2)
        if not (
            len(latest) == 2
            and latest[1].id == turn_id
            and latest[1].role == Role.ASSISTANT
            and latest[1].reply_to_id == latest[0].id
        ):
            raise InputError(f"Only the latest answer in this channel can be {verb}.")
        return latest[0], latest[1]

    async def _continuable(self, channel_id: int, turn_id: int) -> tuple[StoredTurn, StoredTurn]:
        question, answer = await self._latest_answer(channel_id, turn_id, "continued")
        if answer.status != TurnStatus.COMPLETE or answer.done_reason != "length":
            raise InputError("This answer is not cut off: there is nothing to continue.")
        return question, answer

    async def think_for(
        self,
        request: ChatRequest,
        model: str,
        persona: Persona | None,
        *,
        handed_over: bool = False,
    ) -> bool | str | None:
        """Ollama's `think` for this request: the first level set of the message, the
        channel (`/think`), the persona and the `default_think` setting; ThinkRefused when the
        model cannot take it (before anything is sent). A turn handed over to the vision model
        keeps only the message's own level: the channel's was chosen for another model."""
        chain: list[tuple[str, str | None]] = [("The `think` option", request.think)]
        if not handed_over:
            channel = await self._channels.get(request.channel_id)
            chain += [
                ("This channel's `/think` level", channel.think),
                (f"The persona `{persona.name}`'s `think`" if persona else "", _think(persona)),
                ("The `default_think` setting", self._limits.default_think),
            ]
        for source, level in chain:
            if level and level != "default":
                info = await self._gateway.show(model)
                return think_value(level, model, info.capabilities, info.family, source=source)
        return None

    async def check_think(self, request: ChatRequest) -> None:
        """Refuse early (ThinkRefused) a thinking level the request's model cannot take, so
        that a command can say so privately before it shows anything."""
        persona = await self.persona_for(request)
        model = persona.ollama_model if persona else await self.model_for(request)
        await self.think_for(request, model, persona)

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

    async def describe(self, channel_id: int, guild_id: int | None, user: Author) -> ContextReport:
        """How the channel's next request would spend its window (`/context`), and the window
        the model runs with on Ollama now."""
        request = ChatRequest(channel_id=channel_id, guild_id=guild_id, user=user, text="")
        persona = await self.persona_for(request)
        model = persona.ollama_model if persona else await self.model_for(request)
        vision, first_page = await self._plan_images(request, model)
        plan = await self._plan(
            channel_id=channel_id,
            guild_id=guild_id,
            model=model,
            persona=persona,
            first_page=first_page,
            current=None,
            current_images=[],
            vision=vision if vision is not None and vision.model == model else None,
        )
        loaded: LoadedModel | None = None
        try:
            loaded = next((m for m in await self._gateway.ps() if _same_model(m.name, model)), None)
        except BotError:
            return ContextReport(plan, persona.name if persona else None, None, known=False)
        return ContextReport(plan, persona.name if persona else None, loaded, known=True)

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

    async def _plan(
        self,
        *,
        channel_id: int,
        guild_id: int | None,
        model: str,
        persona: Persona | None,
        first_page: list[StoredTurn],
        current: StoredTurn | None,
        current_images: Sequence[str],
        vision: ImagePlan | None,
        tail: ChatMessage | None = None,
        extra: ExtraContext | None = None,
        question: str = "",
    ) -> ContextPlan:
        """The messages for the model and how they spend its window: the persona's system
        prompt, the summary of older turns (if any), the newest turns that fit, the `current`
        question (None: only describe), and `tail` (the answer being continued)."""
        window = await self.windows.size(model, persona.num_ctx if persona else None)
        limits = self.windows.budget(window)
        ratio = self.windows.calibration.ratio(model)
        system = [ChatMessage("system", persona.system)] if persona and persona.system else []
        system_tokens = sum(context.estimate_tokens(m.content, ratio) for m in system)
        # The turn's knowledge and attached files, sized from the window planned for it.
        knowledge = await extra(question, limits.window) if extra is not None else []
        system += knowledge
        knowledge_tokens = sum(context.estimate_tokens(m.content, ratio) for m in knowledge)
        summary = await self._history.latest_summary(channel_id) if self._limits.summarise else None
        summary_tokens = 0
        if summary is not None:
            # A system message of its own, after the persona's: Ollama keeps system messages
            # when it has to cut a prompt, and the summary stands for the oldest turns.
            system.append(ChatMessage("system", SUMMARY_INTRO + summary.content))
            summary_tokens = context.estimate_tokens(system[-1].content, ratio)
        after = summary.covers_until if summary is not None else 0
        earlier = await recent_turns(
            self._history, channel_id, limits.for_history, first_page=first_page
        )
        candidates = [t for t in context.usable(earlier) if t.id > after]
        speakers = {t.author_id for t in [*candidates, *([current] if current else [])]}
        named = (
            self._limits.speaker_names
            and guild_id is not None
            and len({a for a in speakers if a != self._assistant_id()}) > 1
        )
        if named:
            candidates = context.with_speakers(candidates)
            if current is not None:
                current = context.with_speakers([current])[0]
        current_tokens = context.turn_tokens(current, ratio) if current is not None else 0
        tail_tokens = context.estimate_tokens(tail.content, ratio) if tail is not None else 0
        new_image_tokens = IMAGE_TOKENS * len(current_images)
        room = limits.for_history - system_tokens - knowledge_tokens - summary_tokens
        room -= current_tokens + tail_tokens + new_image_tokens
        if room < 0 and current is not None:
            raise InputError(
                f"Your message is too long for `{model}`: about {current_tokens} tokens, and the "
                f"model's window leaves room for {limits.for_history}. Shorten it or split it up."
            )
        room = max(room, 0)
        before = context.window(candidates, room, ratio)
        first_kept = before[0].id if before else None
        dropped = [t for t in candidates if first_kept is None or t.id < first_kept]
        left_out = 0
        if dropped:
            until = first_kept if first_kept is not None else (current.id if current else None)
            left_out = await self._history.count_before(channel_id, until, after)
        fold: tuple[StoredTurn, ...] = ()
        if current is not None and self._limits.summarise:
            fold = _to_fold(
                [t for t in context.usable(earlier) if t.id > after],
                room=limits.for_history - system_tokens - knowledge_tokens - summary_tokens,
                pending=current_tokens + tail_tokens + new_image_tokens,
                dropped=bool(dropped),
                ratio=ratio,
            )
        chosen = [*before, current] if current is not None else list(before)
        if vision is None or self._vision is None:
            messages = [*system, *(ChatMessage(role=t.role, content=t.content) for t in chosen)]
        else:
            messages = [
                *system,
                *self._vision.messages(
                    chosen,
                    current_id=current.id if current is not None else -1,
                    current_images=current_images,
                    plan=vision,
                    spare_tokens=room - sum(context.turn_tokens(t, ratio) for t in before),
                ),
            ]
        if tail is not None:
            messages.append(tail)
        images = sum(len(m.images) for m in messages)
        prompt = self.windows.calibration.estimate(model, messages)
        return ContextPlan(
            model=model,
            window=window,
            messages=messages,
            system_tokens=system_tokens,
            knowledge_tokens=knowledge_tokens,
            summary=summary,
            summary_tokens=summary_tokens,
            turns=len(before),
            turn_tokens=sum(context.turn_tokens(t, ratio) for t in before),
            current_tokens=current_tokens + tail_tokens,
            images=images,
            image_tokens=IMAGE_TOKENS * images,
            prompt_tokens=prompt,
            left_out=left_out,
            fold=fold,
        )

    def _assistant_id(self) -> int | None:
        try:
            return self._assistant().id
        except IndexError:  # not logged in yet
            return None

    async def _reply_stream(
        self,
        request: ChatRequest,
        start: _Start,
        plan: ContextPlan,
        ticket: Ticket,
        trace: ToolTrace,
        run: _Run,
        on_loading: Callable[[str], None] | None = None,
    ) -> AsyncGenerator[ChatDelta | ChatStats | ToolStep]:
        """The model's stream, through the tool loop where tools are on (not when an answer is
        continued). The tool calls are stored with the reply as they are made."""

        def chat(
            messages: Sequence[ChatMessage], tools: Sequence[Mapping[str, Any]] = ()
        ) -> AsyncGenerator[ChatDelta | ChatStats]:
            persona, window = start.persona, plan.window
            # `<think>` tags are taken out of each model call's text before the tool loop
            # reads it.
            return split_think_tags(
                self._chat_stream(
                    run, messages, persona, window, ticket, start.think, tools, on_loading
                )
            )

        if self._tools is None or start.prior:
            return chat(plan.messages)
        if not self._tools.enabled((await self._channels.get(request.channel_id)).tools):
            return chat(plan.messages)

        async def store(uses: list[ToolUse]) -> None:
            await self._history.set_tool_calls(start.reply_turn, [u.stored() for u in uses])

        context = ToolContext(request.user.id, request.channel_id, request.guild_id)
        return self._tools.stream(
            chat, plan.messages, model=start.model, context=context, trace=trace, on_use=store
        )

    async def _chat_stream(
        self,
        run: _Run,
        messages: Sequence[ChatMessage],
        persona: Persona | None,
        window: int,
        ticket: Ticket,
        think: bool | str | None = None,
        tools: Sequence[Mapping[str, Any]] = (),
        on_loading: Callable[[str], None] | None = None,
    ) -> AsyncGenerator[ChatDelta | ChatStats]:
        """The model's stream. A persona's model that went missing since it was last looked up
        (the answer of /api/show is cached) is created again from its Modelfile, once, with
        the generation slot given back meanwhile (others generate; the channel keeps its
        place). When every host with the model is down, a fallback model answers (no persona
        then). `run` says which model answered, and whether it had to be loaded."""

        def loading(name: str) -> None:
            run.loaded = True
            if on_loading is not None:
                on_loading(name)

        keep_alive = (
            keep_alive_value(persona.keep_alive) if persona and persona.keep_alive else None
        )
        options: dict[str, Any] = {"num_ctx": window}
        if self._limits.reply_tokens:
            options["num_predict"] = self._limits.reply_tokens
        for attempt in (1, 2):
            stream = self._gateway.chat_stream(
                run.model,
                messages,
                options=options,
                think=think,
                tools=tools,
                keep_alive=keep_alive,
                on_load=loading,
            )
            yielded = False
            try:
                async with contextlib.aclosing(stream):
                    async for item in stream:
                        yielded = True
                        yield item
                return
            except OllamaUnavailable:
                if persona is not None or yielded or attempt == 2 or run.fallback_from:
                    raise
                fallback = await self._fallback(run.model)
                if fallback is None:
                    raise
                log.info("model %s unavailable; %s answers instead", run.model, fallback)
                run.fallback_from, run.fallback_reason = run.model, "unavailable"
                run.model, run.loaded = fallback, False
                continue
            except ModelNotFound:
                if persona is None or self._personas is None or yielded or attempt == 2:
                    raise
            async with self._scheduler.aside(ticket):
                await self._ensure(persona, fresh=True)

    def _line_is_long(self) -> bool:
        limits = self._limits
        return (
            bool(limits.fallback_models)
            and limits.fallback_after_queue > 0
            and self._scheduler.waiting >= limits.fallback_after_queue
        )

    async def _fallback(self, model: str) -> str | None:
        """The first fallback model, other than `model`, that a host that answers has."""
        for candidate in self._limits.fallback_models:
            if candidate != model and await self._gateway.serves(candidate):
                return candidate
        return None

    def _note_duration(self, model: str, seconds: float) -> None:
        before = self._durations.get(model)
        if before is None:
            self._durations[model] = seconds
        else:
            self._durations[model] = before + DURATION_WEIGHT * (seconds - before)
        if len(self._durations) > 1000:  # bounded: models come and go
            self._durations.pop(next(iter(self._durations)))

    def expected_wait(self, model: str, place: int) -> float | None:
        """Seconds until a request at `place` in line starts: the model's recent generation
        time (else the average over the models seen) times the place, over the generations
        that run at once. None before any generation has finished."""
        seconds = self._durations.get(model)
        if seconds is None:
            if not self._durations:
                return None
            seconds = sum(self._durations.values()) / len(self._durations)
        return seconds * place / max(self._scheduler.parallel, 1)

    # --- summaries --------------------------------------------------------------------------

    def _summarise_soon(self, request: ChatRequest, model: str, plan: ContextPlan) -> None:
        """Fold `plan.fold` into the channel's summary in the background."""
        if request.channel_id in self._summarising or self.closing:
            return
        self._summarising.add(request.channel_id)
        task = asyncio.create_task(self._summarise(request, model, plan))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _summarise(self, request: ChatRequest, model: str, plan: ContextPlan) -> None:
        """A low-priority generation: it runs only when a slot is free at once (else it is left
        for the next reply to try), counted in the parallel cap like any other."""
        channel_id = request.channel_id
        try:
            if not self._scheduler.idle:
                log.info("summary skipped (no free slot) channel=%s", channel_id)
                return
            try:
                ticket = self._scheduler.admit(-next(self._task_lines))
            except BotError:
                return
            async with self._scheduler.turn(ticket.channel_id, None, ticket):
                summary = await self._write_summary(model, plan)
            if not summary:
                return
            content, tokens = summary
            covered = (plan.summary.covered if plan.summary else 0) + len(plan.fold)
            await self._history.add_summary(
                channel_id=channel_id,
                guild_id=request.guild_id,
                author=self._assistant(),
                model=model,
                content=content,
                covers_until=plan.fold[-1].id,
                covered=covered,
                completion_tokens=tokens,
            )
            log.info("summary stored channel=%s covers=%d messages", channel_id, covered)
        except BotError as exc:
            log.warning("summary failed channel=%s: %s", channel_id, exc.__cause__ or exc)
        except Exception:
            log.exception("summary failed channel=%s", channel_id)
        finally:
            self._summarising.discard(channel_id)

    async def _write_summary(self, model: str, plan: ContextPlan) -> tuple[str, int | None] | None:
        ratio = self.windows.calibration.ratio(model)
        reply_tokens = max(64, min(self._limits.summary_tokens, plan.window // 4))
        room = plan.window - reply_tokens - context.estimate_tokens(SUMMARY_INSTRUCTIONS, ratio)
        lines: list[str] = []
        if plan.summary is not None:
            room -= context.text_tokens(plan.summary.content, ratio) + 8
        for turn in reversed(plan.fold):  # the newest first, while they fit
            who = context.speaker(turn.author_name) if turn.role == Role.USER else "Assistant"
            line = f"{who}: {turn.content}"
            room -= context.text_tokens(line, ratio) + 1
            if room < 0:
                break
            lines.append(line)
        lines.reverse()
        text = ""
        if plan.summary is not None:
            text = f"Summary so far:\n{plan.summary.content}\n\n"
        text += "Messages to add:\n" + "\n".join(lines)
        messages = [ChatMessage("system", SUMMARY_INSTRUCTIONS), ChatMessage("user", text)]
        options = {"num_ctx": plan.window, "num_predict": reply_tokens}
        received: list[str] = []
        stats: ChatStats | None = None
        # A summary needs no reasoning (and thinking models would spend its budget on it).
        stream = self._gateway.chat_stream(model, messages, options=options, think=False)
        async for item in timed(stream, self._limits):
            if isinstance(item, ChatStats):
                stats = item
            else:
                received.append(item.content)
        content = "".join(received).strip()
        if not content:
            return None
        return content, stats.completion_tokens if stats else None

    async def stop_background(self) -> None:
        """Cancel the summaries in progress (the bot is stopping)."""
        tasks = list(self._background)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

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


def _think(persona: Persona | None) -> str | None:
    return persona.think if persona is not None else None


def _thought(since: float | None, answered: float | None) -> float | None:
    """Seconds the model thought: to its first answer text, or to now without one."""
    if since is None:
        return None
    return (answered or time.monotonic()) - since


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
