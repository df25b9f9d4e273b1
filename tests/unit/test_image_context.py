"""Which stored images go along with a context (bot/vision/routing.with_images)."""

from __future__ import annotations

import base64

from bot.storage.history import ImageRecord
from bot.vision.routing import IMAGE_TOKENS, with_images
from tests.unit.test_context import turn


def image(tag: str) -> ImageRecord:
    return ImageRecord("image/jpeg", 8, 8, tag.encode())


def b64(tag: str) -> str:
    return base64.b64encode(tag.encode()).decode()


CHOSEN = [
    turn(1, "user", "first picture"),
    turn(2, "assistant", "a cat"),
    turn(3, "user", "second pictures"),
    turn(4, "assistant", "two dogs"),
    turn(5, "user", "which is cuter?"),
]
EARLIER = {1: [image("cat")], 3: [image("dog1"), image("dog2")]}


def images_of(messages: list) -> list[tuple[str, ...]]:
    return [m.images for m in messages]


def test_earlier_images_go_with_their_turns_and_the_current_ones_with_it() -> None:
    messages = with_images(
        CHOSEN,
        current_id=5,
        current_images=["now"],
        earlier=EARLIER,
        spare_tokens=10 * IMAGE_TOKENS,
        max_images=4,
    )
    assert [m.content for m in messages] == [t.content for t in CHOSEN]
    assert images_of(messages) == [(b64("cat"),), (), (b64("dog1"), b64("dog2")), (), ("now",)]


def test_at_most_max_images_in_all_newest_first() -> None:
    messages = with_images(
        CHOSEN,
        current_id=5,
        current_images=["now", "and"],
        earlier=EARLIER,
        spare_tokens=10 * IMAGE_TOKENS,
        max_images=3,
    )
    assert images_of(messages) == [(), (), (b64("dog1"),), (), ("now", "and")]


def test_earlier_images_only_while_their_tokens_fit() -> None:
    messages = with_images(
        CHOSEN,
        current_id=5,
        current_images=[],
        earlier=EARLIER,
        spare_tokens=2 * IMAGE_TOKENS + 10,
        max_images=4,
    )
    assert images_of(messages) == [(), (), (b64("dog1"), b64("dog2")), (), ()]
    none_fit = with_images(
        CHOSEN, current_id=5, current_images=[], earlier=EARLIER, spare_tokens=-5, max_images=4
    )
    assert images_of(none_fit) == [()] * 5


def test_turns_outside_the_chosen_window_send_nothing() -> None:
    messages = with_images(
        CHOSEN[2:],
        current_id=5,
        current_images=[],
        earlier=EARLIER,
        spare_tokens=10 * IMAGE_TOKENS,
        max_images=4,
    )
    assert images_of(messages) == [(b64("dog1"), b64("dog2")), (), ()]
