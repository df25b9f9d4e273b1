"""ReplyPipeline: every reply the bot generates, from any entry point (slash commands, message
menus, mentions, replies, auto-reply, threads, buttons), goes through here:

    admit → prepare (images) → stream → draw → settle

Admission is the one door for every generation: the user's rate limit, the channel's line, the
parallel cap and the waiting line (bot/conversation/fairness.py). A refusal is private where
Discord allows it (an interaction); a refused message gets at most one public notice a minute
per member. Nothing is downloaded or shown before admission.

The pipeline also owns what happens to a reply while it runs: Stop, Regenerate, a reply that
Discord refuses to show (its generation is stopped and stored as failed), and shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import discord

from bot.conversation.fairness import QueueFull, RateLimited, ShuttingDown, Ticket
from bot.conversation.service import (
    Abort,
    ChatRequest,
    ChatService,
    ReplyFinished,
    ReplyStarted,
    TextDelta,
    ThinkingDelta,
)
from bot.conversation.thinking import LEAST, ThinkRefused, ThoughtWithoutAnswer
from bot.conversation.usage import QuotaExceeded
from bot.errors import BotError, PermissionDenied
from bot.knowledge.files import Document, FileLimits
from bot.knowledge.service import KnowledgeService, TurnKnowledge
from bot.metrics import Metrics
from bot.settings import Settings
from bot.storage.history import Author, HistoryStore
from bot.tools.loop import ToolStep
from bot.tools.registry import ToolUse
from bot.ui.answers import tell_privately
from bot.ui.checks import is_admin, refusal_for
from bot.ui.controls import ReplyButtons, controls, reply_buttons
from bot.ui.images import before_ack, check_route, defer, read_images
from bot.ui.knowledge import check_attachments, read_documents, reader, sources_line
from bot.ui.reasoning import send_reasoning, thinking_status
from bot.ui.streaming import EditBudget, EditPacer, ReplyTarget, StreamingReply
from bot.ui.targets import NO_PINGS, InteractionTarget, MessageTarget
from bot.ui.text import channel_id_of
from bot.vision.images import CheckedImage, ImagePreparer

log = logging.getLogger(__name__)

SHUTDOWN = "\x00shutdown"  # `stopped_by` values that no display name can be
REFUSED = "\x00refused"
FULL = "\x00full"
THINK_CHECK_TIMEOUT = 1.0
"""Seconds a command waits to learn whether the model takes its thinking level before it is
acknowledged (Discord allows 3 s); past that the reply itself says so."""


LOAD_WORTH_SAYING = 0.5
"""Seconds of loading a footer mentions: Ollama reports a few milliseconds for a model that
was still in memory but had to be set up again, which no one waited for."""


def footer(
    finished: ReplyFinished, request: ChatRequest | None = None, *, cut_at: int | None = None
) -> str:
    model = finished.stats.model
    if finished.persona:
        model = f"{finished.persona} ({finished.base_model or model})"
    if finished.fallback_from:
        model = f"answered by {model} ({finished.fallback_from} {finished.fallback_reason})"
    parts = [model]
    load_ns = finished.stats.load_duration_ns
    if finished.loaded_model and load_ns and load_ns >= LOAD_WORTH_SAYING * 1e9:
        parts.append(f"loaded in {load_ns / 1e9:.1f} s")
    if finished.thought_seconds is not None:
        parts.append(f"thought {finished.thought_seconds:.0f} s")
    speed = finished.stats.tokens_per_second
    if speed is not None:
        parts.append(f"{speed:.1f} tokens/s")
    if finished.summarised:
        parts.append(f"summarised {_messages(finished.summarised)}")
    if finished.left_out:
        parts.append(f"{_messages(finished.left_out)} left out (no room)")
    if cut_at is not None:
        parts.append(f"cut at {cut_at} messages")
    elif finished.stats.done_reason == "length":
        parts.append("cut off at the length limit: press Continue for more")
    if finished.tools:
        parts.append("🔧 " + ", ".join(_tool_label(use) for use in _distinct(finished.tools)))
    if finished.tools_note:
        parts.append(finished.tools_note)
    line = "-# " + " · ".join(parts)
    turn = request.extra_context if request is not None else None
    if isinstance(turn, TurnKnowledge) and turn.sources:
        line += "\n" + sources_line(turn.sources)
    return line


def _distinct(uses: Sequence[ToolUse]) -> list[ToolUse]:
    """Each tool once per thing it read (a model may read the same channel twice)."""
    seen: dict[tuple[str, str | None], ToolUse] = {}
    for use in uses:
        seen.setdefault((use.name, use.label if use.ok else None), use)
    return list(seen.values())


def _tool_label(use: ToolUse) -> str:
    """`name`, or `name label` with the label linked (`<...>`: no embed) when there is a link."""
    if not use.ok or not use.label:
        return use.name
    if use.link:
        return f"{use.name} [{use.label}](<{use.link}>)"
    return f"{use.name} {use.label}"


def _messages(count: int) -> str:
    return f"{count} earlier message" + ("" if count == 1 else "s")


def waiting_text(place: int, wait: float | None = None) -> str:
    if wait is None:
        return f"⏳ Waiting for the model: you are number {place} in line."
    return f"⏳ Waiting for the model: you are number {place} in line (about {about(wait)})."


def about(seconds: float) -> str:
    """A wait, roughly: "3 s", "40 s", "3 min"."""
    if seconds < 10:
        return f"{max(1, round(seconds))} s"
    if seconds < 60:
        return f"{round(seconds / 5) * 5} s"
    return f"{round(seconds / 60)} min"


def loading_text(model: str) -> str:
    return f"-# ⏳ loading {model} (first use in a while)…"


def request_from(
    *,
    channel_id: int,
    guild_id: int | None,
    user: discord.abc.User,
    text: str,
    model: str | None = None,
    caption: bool = False,
    source_message_id: int | None = None,
    think: str | None = None,
) -> ChatRequest:
    """The one way a ChatRequest is built, whatever the entry point."""
    return ChatRequest(
        channel_id=channel_id,
        guild_id=guild_id,
        user=Author(user.id, user.display_name),
        text=text,
        model=model,
        caption=caption,
        source_message_id=source_message_id,
        think=think,
        roles=role_ids(user),
    )


def role_ids(user: discord.abc.User) -> tuple[int, ...]:
    """A member's role ids (none for a user outside a guild)."""
    return tuple(role.id for role in getattr(user, "roles", ()))


def request_for_interaction(
    interaction: discord.Interaction,
    text: str,
    *,
    model: str | None = None,
    caption: bool = False,
    think: str | None = None,
) -> ChatRequest:
    return request_from(
        channel_id=channel_id_of(interaction),
        guild_id=interaction.guild_id,
        user=interaction.user,
        text=text,
        model=model,
        caption=caption,
        think=think,
    )


def request_for_message(message: discord.Message, text: str) -> ChatRequest:
    return request_from(
        channel_id=message.channel.id,
        guild_id=message.guild.id if message.guild else None,
        user=message.author,
        text=text,
        source_message_id=message.id,
    )


def posting_refusal(interaction: discord.Interaction, *, images: bool = False) -> str | None:
    """Why the member may not make the bot post this publicly here, from their own permissions
    in this channel (Discord shows the command to people who could not post themselves)."""
    if interaction.guild_id is None:
        return None
    permissions = interaction.permissions
    in_thread = isinstance(interaction.channel, discord.Thread)
    if in_thread and not permissions.send_messages_in_threads:
        return "You can't send messages in this thread, so I won't post there for you."
    if not in_thread and not permissions.send_messages:
        return "You can't send messages in this channel, so I won't post there for you."
    if images and not permissions.attach_files:
        return "You can't attach files in this channel, so I won't post your image here."
    return None


@dataclass(slots=True)
class _Running:
    """A reply being generated, for Stop, shutdown and Discord's refusals."""

    requester: int
    reply: asyncio.Task[Any] | None = None  # the task drawing the reply
    task: asyncio.Task[ReplyFinished] | None = None  # the task reading the model's stream
    turn_id: int | None = None
    stopped_by: str | None = None
    abort: Abort = field(default_factory=Abort)
    question_gone: bool = False  # Discord refused the reply because its question was deleted
    thinking_since: float | None = None  # when the model's first reasoning arrived
    thinking_shown: int = -1  # the seconds the thinking status shows


class ReplyPipeline:
    """Admits, prepares, streams, draws and settles every reply (see the module's text)."""

    def __init__(
        self,
        *,
        chat: ChatService,
        history: HistoryStore,
        images: ImagePreparer,
        settings: Settings,
        metrics: Metrics,
        knowledge: KnowledgeService | None = None,
    ) -> None:
        self.chat = chat
        self.knowledge = knowledge
        self._history = history
        self._images = images
        self._settings = settings
        self._metrics = metrics
        self._running: dict[str, _Running] = {}
        self._regenerating: set[int] = set()  # turn ids: a double click gives one new answer
        self._pacer = EditPacer(settings.edits_per_second)
        self.edit_budget = EditBudget()  # Discord's buckets, shared by every display the bot draws
        self._notices: dict[int, float] = {}  # member id -> when they were last told publicly
        self.buttons: ReplyButtons = reply_buttons(self)

    # --- admission --------------------------------------------------------------------------

    def admit(self, request: ChatRequest, place: Ticket | None = None) -> Ticket:
        """Admit `request` (see ChatService.admit). Call it before any await, or pass the
        `place` held since then (`hold_place`), so that a channel's requests keep the order
        Discord delivered them in. Refused: the place is given back."""
        return self.chat.admit(request.user.id, request.channel_id, place, roles=request.roles)

    def hold_place(self, channel_id: int) -> Ticket:
        return self.chat.hold_place(channel_id)

    def admit_task(self, user_id: int, roles: tuple[int, ...] = ()) -> Ticket:
        """Admission for a generation outside any conversation (/sentiment)."""
        return self.chat.admit_task(user_id, roles)

    def may_tell_publicly(self, user_id: int) -> bool:
        """Whether a member may be told of a refusal in public now: once a minute at most
        (`refusal_notice_interval`)."""
        interval = self._settings.refusal_notice_interval
        now = time.monotonic()
        last = self._notices.get(user_id)
        if last is not None and now - last < interval:
            return False
        self._notices[user_id] = now
        if len(self._notices) > 10_000:  # bounded: forget members told long ago
            self._notices = {u: t for u, t in self._notices.items() if now - t < interval}
        return True

    # --- entry points -----------------------------------------------------------------------

    async def answer_interaction(
        self,
        interaction: discord.Interaction,
        request: ChatRequest,
        *,
        prefix: str = "",
        attachments: Sequence[discord.Attachment] = (),
        files: Sequence[discord.Attachment] = (),
    ) -> None:
        """A slash command or message menu that posts a reply publicly: the member's own
        permissions, admission, the images and files, then the reply into the interaction's
        response. Every refusal is private."""
        refusal = posting_refusal(interaction, images=bool(attachments))
        if refusal is not None:
            raise PermissionDenied(refusal)
        if files:  # the declared kind and size, before admission and any download
            check_attachments(files, self._file_limits())
        ticket = self.admit(request)  # refusals raise here, before anything is shown
        try:
            if request.think is not None and not attachments:  # images may go elsewhere
                await self._check_think(request)
            checked: tuple[CheckedImage, ...] = ()
            if attachments:  # refusals come before anything public is shown
                checked = await before_ack(interaction, self._checked(request, attachments))
            documents: tuple[Document, ...] = ()
            if files:
                documents = await before_ack(
                    interaction, read_documents(files, self._file_limits())
                )
            request = self.with_knowledge(request, interaction.user, documents)
            await defer(interaction)
            target = InteractionTarget(interaction, token_ttl=self._settings.interaction_token_ttl)
            await self.answer(
                request,
                target,
                prefix=prefix,
                images=checked,
                ticket=ticket,
                interaction=interaction,
            )
        finally:
            self.chat.release(ticket)

    async def answer_message(
        self,
        message: discord.Message,
        request: ChatRequest,
        ticket: Ticket,
        attachments: Sequence[discord.Attachment] = (),
        files: Sequence[discord.Attachment] = (),
    ) -> None:
        """A message (mention, reply, auto-reply, thread) already admitted with `ticket`."""
        try:
            checked: tuple[CheckedImage, ...] = ()
            documents: tuple[Document, ...] = ()
            if attachments or files:
                try:
                    if files:  # every declared kind and size before any download
                        check_attachments(files, self._file_limits())
                    if attachments:
                        checked = await read_images(self._images, attachments)
                    if files:
                        documents = await read_documents(files, self._file_limits())
                except BotError as exc:
                    await message.reply(
                        f"⚠️ {exc.user_message}", mention_author=False, allowed_mentions=NO_PINGS
                    )
                    return
            with contextlib.suppress(discord.HTTPException):  # the typing dots are a courtesy
                await message.channel.typing()
            request = self.with_knowledge(request, message.author, documents)
            await self.answer(request, MessageTarget(message), images=checked, ticket=ticket)
        finally:
            self.chat.release(ticket)

    async def refuse_message(self, message: discord.Message, error: BotError) -> None:
        """A message's request was refused at admission: say so publicly once a minute at most
        (a message cannot be answered privately), otherwise stay quiet."""
        if not self.may_tell_publicly(message.author.id):
            return
        try:
            await message.reply(
                f"⚠️ {error.user_message}", mention_author=False, allowed_mentions=NO_PINGS
            )
        except discord.HTTPException:
            log.info("could not tell a member their message was refused", exc_info=True)

    async def _check_think(self, request: ChatRequest) -> None:
        """Refuse, before anything is shown, a `think:` option the model cannot take (raised:
        the command says so privately). Only for the option: the reads it takes come before
        Discord's 3 s to acknowledge. A channel's level was checked when it was set (`/think`);
        anything else wrong is left for the reply to say."""
        try:
            async with asyncio.timeout(THINK_CHECK_TIMEOUT):
                await self.chat.check_think(request)
        except ThinkRefused:
            raise
        except (BotError, TimeoutError):
            log.debug("thinking level not checked before the reply", exc_info=True)

    def with_knowledge(
        self,
        request: ChatRequest,
        asker: discord.abc.User,
        documents: Sequence[Document] = (),
    ) -> ChatRequest:
        """`request` with its turn's knowledge and files (bot/knowledge), retrieved for what
        `asker` can read, if there is any."""
        if self.knowledge is None:
            return request
        guild = asker.guild if isinstance(asker, discord.Member) else None
        turn = self.knowledge.turn(
            guild_id=request.guild_id, can_read=reader(asker, guild), documents=documents
        )
        return request if turn is None else dataclasses.replace(request, extra_context=turn)

    def _file_limits(self) -> FileLimits:
        settings = self._settings
        return FileLimits(
            max_bytes=settings.knowledge_max_file_bytes,
            max_pdf_pages=settings.knowledge_max_pdf_pages,
            max_chars=settings.knowledge_max_chars,
        )

    async def _checked(
        self, request: ChatRequest, attachments: Sequence[discord.Attachment]
    ) -> tuple[CheckedImage, ...]:
        """Read and check the images, and whether a model can see them."""
        checked = await read_images(self._images, attachments)
        await check_route(self.chat, request)
        return checked

    # --- the reply itself -------------------------------------------------------------------

    async def answer(
        self,
        request: ChatRequest,
        target: ReplyTarget[discord.Message],
        *,
        ticket: Ticket,
        prefix: str = "",
        images: Sequence[CheckedImage] = (),
        interaction: discord.Interaction | None = None,
    ) -> None:
        """Stream the answer to the admitted `request` into `target`, with a Stop button while
        it streams and a Regenerate button when done; failures end up in the same message.
        Checked `images` are decoded and downscaled here, off the event loop."""
        running = _Running(requester=request.user.id, reply=asyncio.current_task())
        drawing = StreamingReply(
            target,
            interval=self._settings.edit_interval,
            prefix=prefix,
            stop_view=controls(self.buttons.stop(request.request_id)),
            pacer=self._pacer,
            budget=self.edit_budget,
            max_messages=self._settings.max_reply_messages,
            on_full=lambda: self._end(running, FULL),
            on_broken=lambda error: self._refused(request, running, error),
        )
        self._running[request.request_id] = running
        try:
            if images:
                request = dataclasses.replace(request, images=await self._images.prepare(images))
            running.task = asyncio.create_task(self._consume(request, drawing, running, ticket))
            finished = await running.task
            await drawing.finish(footer(finished, request), view=self._again(running, finished))
        except asyncio.CancelledError:
            if running.stopped_by is None or _cancelling():
                await drawing.cancel()
                raise
            await self._settle_stopped(request, drawing, running, interaction)
        except BotError as exc:
            self._metrics.error(exc)
            retry = isinstance(exc, ThoughtWithoutAnswer)
            await drawing.fail(exc.user_message, view=self._again(running, retry=retry))
        except BaseException:
            await drawing.cancel()
            raise
        finally:
            self._running.pop(request.request_id, None)

    async def _settle_stopped(
        self,
        request: ChatRequest,
        drawing: StreamingReply[discord.Message],
        running: _Running,
        interaction: discord.Interaction | None,
    ) -> None:
        if running.stopped_by == SHUTDOWN:
            await drawing.fail(ShuttingDown.user_message + " This reply was cut short.")
        elif running.stopped_by == REFUSED:
            await drawing.cancel()
            if running.question_gone and request.source_message_id is not None:
                # The member deleted the question before its reply: keep nothing of it.
                await self._history.erase_question(request.channel_id, request.source_message_id)
            if interaction is not None:
                await tell_privately(interaction, "Discord would not let me post the reply here.")
        elif running.stopped_by == FULL:
            limit = self._settings.max_reply_messages
            await drawing.finish(
                f"-# ✂️ reply cut at {limit} messages (the most one reply may fill)",
                view=self._again(running),
            )
        else:
            await drawing.finish(f"-# ⏹️ stopped by {running.stopped_by}", view=self._again(running))

    async def _consume(
        self,
        request: ChatRequest,
        drawing: StreamingReply[discord.Message],
        running: _Running,
        ticket: Ticket,
    ) -> ReplyFinished:
        finished: ReplyFinished | None = None
        async for event in self.chat.respond(
            request,
            ticket=ticket,
            on_position=lambda place, wait: drawing.set_status(waiting_text(place, wait)),
            on_loading=lambda model: drawing.set_status(loading_text(model)),
            abort=running.abort,
        ):
            if isinstance(event, TextDelta):
                drawing.feed(event.text)
                if running.abort.message_id is None and drawing.messages:
                    running.abort.message_id = drawing.messages[0].id
            elif isinstance(event, ThinkingDelta):
                _show_thinking(drawing, running)
            elif isinstance(event, ReplyStarted):
                running.turn_id = event.turn_id
            elif isinstance(event, ToolStep):
                if event.use is None:
                    drawing.set_status(f"-# 🔧 {event.status}", live=True)  # until the text
            else:
                finished = event
                # Shown at once; the service stores the reply meanwhile.
                drawing.finish_soon(footer(finished, request), view=self._again(running, finished))
        assert finished is not None  # respond() ends with ReplyFinished or raises
        return finished

    def _again(
        self, running: _Running, finished: ReplyFinished | None = None, *, retry: bool = False
    ) -> discord.ui.View | None:
        """The finished reply's buttons: Continue when it was cut at the length limit,
        Regenerate (or Retry without thinking, when the model thought and gave no answer), and
        Show reasoning when it thought."""
        turn = running.turn_id
        if turn is None:
            return None
        buttons = [self.buttons.retry(turn) if retry else self.buttons.regenerate(turn)]
        if finished is not None and finished.stats.done_reason == "length":
            buttons.insert(0, self.buttons.more(turn))
        if running.thinking_since is not None:
            buttons.append(self.buttons.reasoning(turn))
        return controls(*buttons)

    def _end(self, running: _Running, why: str) -> None:
        """Stop the model's stream of a running reply, saying why."""
        if running.stopped_by is None:
            running.stopped_by = why
        if running.task is not None and not running.task.done():
            running.task.cancel()

    def _refused(self, request: ChatRequest, running: _Running, error: BaseException) -> None:
        """Discord refused to show the reply (403, a deleted question, an archived thread): the
        model stops, and the turn is stored as failed with the reason, logged once."""
        reason = _refusal_reason(error)
        running.abort.reason = reason
        running.question_gone = _question_gone(error)
        log.warning(
            "reply refused by Discord request=%s guild=%s channel=%s: %s",
            request.request_id,
            request.guild_id,
            request.channel_id,
            error,
        )
        self._end(running, REFUSED)

    # --- buttons ----------------------------------------------------------------------------

    async def stop(self, interaction: discord.Interaction, request_id: str) -> None:
        """The Stop button: ends the Ollama request; the turn is stored as stopped."""
        running = self._running.get(request_id)
        if running is None or running.task is None or running.task.done():
            await tell_privately(interaction, "This reply has already finished.")
        elif interaction.user.id != running.requester and not is_admin(interaction):
            await tell_privately(
                interaction, "Only the person who asked (or an admin) can stop this reply."
            )
        else:
            self._end(running, interaction.user.display_name)
            await interaction.response.defer()  # the reply's own final edit shows it stopped

    async def regenerate(
        self, interaction: discord.Interaction, turn_id: int, *, without_thinking: bool = False
    ) -> None:
        """The Regenerate button: the latest answer is replaced by a new one. Admitted first
        (rate limit, line): a refused Regenerate changes nothing; a double click gives one new
        answer. `without_thinking`: the Retry without thinking button (think off, or the
        least a model that cannot stop thinking takes)."""
        await self._again_from_button(
            interaction,
            turn_id,
            self.chat.regenerate,
            "A new answer is already being written.",
            think=LEAST if without_thinking else None,
        )

    async def continue_reply(self, interaction: discord.Interaction, turn_id: int) -> None:
        """The Continue button: the model goes on where the answer stopped at the length limit,
        in new messages under it; the stored answer grows by what it writes. Admitted like
        Regenerate."""
        await self._again_from_button(
            interaction, turn_id, self.chat.continuation, "The answer is already being continued."
        )

    async def _again_from_button(
        self,
        interaction: discord.Interaction,
        turn_id: int,
        make: Callable[..., Awaitable[ChatRequest]],
        busy: str,
        *,
        think: str | None = None,
    ) -> None:
        """A button that answers anew about the latest answer `turn_id` (Regenerate, Continue,
        Retry without thinking): admitted first, `make` checks who may and builds the request
        (`think`: the level it is sent with), the old message loses its buttons (they move to
        the new end) and the reply goes into new messages."""
        if turn_id in self._regenerating:
            await tell_privately(interaction, busy)
            return
        channel_id = channel_id_of(interaction)
        refusal = posting_refusal(interaction)
        if refusal is not None:
            await tell_privately(interaction, refusal)
            return
        try:
            ticket = self.chat.admit(
                interaction.user.id, channel_id, roles=role_ids(interaction.user)
            )
        except (QuotaExceeded, RateLimited, QueueFull, ShuttingDown) as exc:
            await tell_privately(interaction, exc.user_message)
            return
        self._regenerating.add(turn_id)
        try:
            try:
                request = await make(
                    channel_id=channel_id,
                    guild_id=interaction.guild_id,
                    turn_id=turn_id,
                    requester=Author(interaction.user.id, interaction.user.display_name),
                    admin=is_admin(interaction),
                )
            except BotError as exc:
                await tell_privately(interaction, exc.user_message)
                return
            if think is not None:
                request = dataclasses.replace(request, think=think)
            request = self.with_knowledge(request, interaction.user)
            await interaction.response.edit_message(view=None)  # the old answer keeps its text
            target = InteractionTarget(
                interaction, token_ttl=self._settings.interaction_token_ttl, original=False
            )
            await self.answer(request, target, ticket=ticket, interaction=interaction)
        finally:
            self._regenerating.discard(turn_id)
            self.chat.release(ticket)

    async def show_reasoning(self, interaction: discord.Interaction, turn_id: int) -> None:
        """The Show reasoning button: the reply's stored reasoning, privately, to whoever can
        see the reply (it works after a restart: the turn id is in the button)."""
        found = await self._history.reasoning_of(turn_id)
        if found is None or found.channel_id != channel_id_of(interaction):
            await tell_privately(interaction, "This reply's reasoning is no longer stored.")
            return
        await send_reasoning(interaction, found.text)

    def button_refusal(self, interaction: discord.Interaction) -> str | None:
        """The access rules (allow/deny lists, DMs) hold for buttons as for commands."""
        return refusal_for(interaction)

    # --- shutdown ---------------------------------------------------------------------------

    def replies_in_progress(self) -> set[asyncio.Task[Any]]:
        return {r.reply for r in self._running.values() if r.reply is not None}

    async def shutdown(self, grace: float) -> None:
        """Stop taking requests, let replies finish for up to `grace` seconds, then cut the rest
        short (stored as incomplete, with a note in Discord)."""
        self.chat.close()
        replies = self.replies_in_progress()
        if replies:
            await asyncio.wait(replies, timeout=grace)
        try:
            async with asyncio.timeout(5.0):
                await self.cut_short()
        except TimeoutError:
            log.warning("some replies did not say they were cut short in time")

    async def cut_short(self) -> None:
        """Stop every reply still running or waiting, and wait until each has said so."""
        replies = self.replies_in_progress()
        for running in self._running.values():
            self._end(running, SHUTDOWN)
        if replies:
            await asyncio.wait(replies)


def _show_thinking(drawing: StreamingReply[discord.Message], running: _Running) -> None:
    """The model is thinking: the status says so, with the seconds so far (changed once a
    second at most; the reply's own pacing decides when it is drawn)."""
    now = time.monotonic()
    if running.thinking_since is None:
        running.thinking_since = now
    seconds = round(now - running.thinking_since)
    if seconds != running.thinking_shown:
        running.thinking_shown = seconds
        drawing.set_status(thinking_status(seconds), live=True)


def _refusal_reason(error: BaseException) -> str:
    if isinstance(error, discord.Forbidden):
        return "Discord refused the reply (missing permissions, or a locked or archived thread)."
    if _question_gone(error):
        return "Discord refused the reply (the message it answers was deleted)."
    if isinstance(error, discord.HTTPException) and error.code == 50083:
        return "Discord refused the reply (the thread was archived)."
    if isinstance(error, discord.HTTPException):
        return f"Discord refused the reply ({error.status})."
    return "The reply could not be shown in Discord."


def _question_gone(error: BaseException) -> bool:
    """Discord's answer to a reply whose question was deleted: 404 Unknown Message (10008), or
    400 Invalid Form Body (50035) on `message_reference`."""
    if isinstance(error, discord.NotFound):
        return True
    return (
        isinstance(error, discord.HTTPException)
        and error.code == 50035
        and "message_reference" in str(error)
    )


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
