"""Which model answers a turn with images, and which stored images go with the context.

A model can see images when its `/api/show` capabilities include `vision`; names are never
guessed from. A text-only chat model hands image turns to the configured vision model.

Images that came with earlier questions are sent again so that a follow-up ("what breed is the
cat?") lets the model look at the picture, not only at its caption. They are re-sent only:
- from the channel's latest `followup_turns` answered questions, and only while those turns are
  inside the context window;
- newest first, at most `max_images` in all (the current turn's own images count first), and
  only while their estimated tokens fit the window;
- to a model that can see them. Without one (or when the question names a text-only model) the
  earlier images are left out quietly: the text of the conversation, captions included, still
  goes along. Only the current turn's own images must be seen, or the turn is refused.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from bot.conversation import context
from bot.errors import BotError, VisionUnavailable
from bot.ollama.protocol import ChatMessage, Ollama
from bot.storage.history import ImageRecord, StoredTurn
from bot.storage.models import Role

log = logging.getLogger(__name__)

IMAGE_TOKENS = context.IMAGE_TOKENS
"""Context tokens counted per image. Vision models spend from about 256 (gemma3) through 576
(llava 1.5) to well over 1,000 (high-resolution tiling) tokens on one image; this is a middle
estimate, and Ollama drops the oldest messages if a context still overflows."""

SETTING_HINT = "BOT_VISION_MODEL (`vision_model` in the config file)"


@dataclass(frozen=True, slots=True)
class ImagePlan:
    """The model that answers, and the earlier images it may be shown again."""

    model: str
    earlier: Mapping[int, Sequence[ImageRecord]] = field(default_factory=dict)
    """User turn id -> its stored images, for the latest questions with images."""


class VisionRouter:
    def __init__(
        self,
        *,
        gateway: Ollama,
        vision_model: str | None,
        max_images: int,
        followup_turns: int,
    ) -> None:
        self._gateway = gateway
        self.vision_model = vision_model
        self._max_images = max_images
        self._followup_turns = followup_turns

    async def can_see(self, model: str) -> bool:
        info = await self._gateway.show(model)  # cached: one /api/show per model and TTL
        return "vision" in info.capabilities

    async def model_for_images(
        self, *, requested: str | None, chat_model: str, caption: bool
    ) -> str:
        """The model that answers a turn carrying images; VisionUnavailable if none can.

        A model named in the request must see for itself. Otherwise a caption asks the vision
        model first (the task's own model) and chat asks the chat model first."""
        if requested:
            if await self.can_see(requested):
                return requested
            raise VisionUnavailable(
                f"`{requested}` cannot read images (its capabilities in Ollama have no "
                "`vision`). Leave out the `model:` option, or name a vision model."
            )
        order = [self.vision_model, chat_model] if caption else [chat_model, self.vision_model]
        for candidate in order:
            if candidate and await self.can_see(candidate):
                return candidate
        if not self.vision_model:
            raise VisionUnavailable(
                f"`{chat_model}` cannot read images, and no vision model is set. An admin can "
                f"set {SETTING_HINT} to a model with vision, such as `llava`."
            )
        raise VisionUnavailable(
            f"Neither `{chat_model}` nor the vision model `{self.vision_model}` can read images "
            f"(no `vision` in their capabilities). An admin can set {SETTING_HINT} to a model "
            "with vision, such as `llava`."
        )

    def earlier_questions(self, turns: Sequence[StoredTurn]) -> list[int]:
        """Of a channel's newest turns (oldest first), the questions whose stored images may be
        shown again: the latest `followup_turns` that belong in a context."""
        if self._followup_turns <= 0:
            return []
        # Each question has one reply: a few times the question count is enough to scan.
        scanned = turns[-(4 * self._followup_turns + 4) :]
        questions = [t for t in context.usable(scanned) if t.role == Role.USER]
        return [t.id for t in questions[-self._followup_turns :]]

    async def plan(
        self,
        *,
        channel_id: int,
        chat_model: str,
        requested: str | None,
        caption: bool,
        with_images: bool,
        earlier: Mapping[int, Sequence[ImageRecord]],
    ) -> ImagePlan:
        """Route a turn, given the stored images of the `earlier_questions`. Raises
        VisionUnavailable only when the turn itself has images."""
        if with_images:
            model = await self.model_for_images(
                requested=requested, chat_model=chat_model, caption=caption
            )
            return ImagePlan(model, earlier)
        if not earlier:
            return ImagePlan(chat_model)
        try:
            model = await self.model_for_images(
                requested=requested, chat_model=chat_model, caption=caption
            )
        except BotError as exc:
            log.info("earlier images left out of channel %s: %s", channel_id, exc.user_message)
            return ImagePlan(chat_model)
        return ImagePlan(model, earlier)

    def messages(
        self,
        chosen: Sequence[StoredTurn],
        *,
        current_id: int,
        current_images: Sequence[str],
        plan: ImagePlan,
        spare_tokens: int,
    ) -> list[ChatMessage]:
        return with_images(
            chosen,
            current_id=current_id,
            current_images=current_images,
            earlier=plan.earlier,
            spare_tokens=spare_tokens,
            max_images=self._max_images,
        )


def with_images(
    chosen: Sequence[StoredTurn],
    *,
    current_id: int,
    current_images: Sequence[str],
    earlier: Mapping[int, Sequence[ImageRecord]],
    spare_tokens: int,
    max_images: int,
) -> list[ChatMessage]:
    """The context as messages: the current turn with its images, earlier turns with theirs
    while they fit (newest first; at most `max_images` in all, and `spare_tokens`)."""
    left = max_images - len(current_images)
    attached: dict[int, tuple[str, ...]] = {}
    for turn in reversed(chosen):
        stored = earlier.get(turn.id)
        if turn.id == current_id or not stored:
            continue
        count = min(len(stored), left, max(spare_tokens, 0) // IMAGE_TOKENS)
        if count <= 0:
            break
        attached[turn.id] = tuple(_base64(image) for image in stored[:count])
        left -= count
        spare_tokens -= count * IMAGE_TOKENS
    return [
        ChatMessage(
            role=turn.role,
            content=turn.content,
            images=tuple(current_images) if turn.id == current_id else attached.get(turn.id, ()),
        )
        for turn in chosen
    ]


def _base64(image: ImageRecord) -> str:
    return base64.b64encode(image.data).decode("ascii")
