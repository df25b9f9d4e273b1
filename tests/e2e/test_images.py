"""Captions, images in chat, and capability routing: the real bot against both doubles."""

from __future__ import annotations

import re

import pytest

from bot.app import OllamaBot
from tests.conftest import BotRunner
from tests.doubles.fake_discord import FakeDiscord, FakeInteraction, FakeMessage
from tests.doubles.fake_ollama import VISION_ERROR, FakeModel, FakeOllama, Script
from tests.e2e.test_chat import assert_pings_no_one
from tests.imagefiles import decoded, jpeg, png, png_bomb

FOOTER = re.compile(r"\n-# (\S+) · \d+\.\d tokens/s$")
File = tuple[str, bytes, str]


def finished(message: FakeMessage) -> bool:
    return bool(FOOTER.search(message.content)) or "⚠️" in message.content


def a_png(name: str = "cat.png", width: int = 2048, height: int = 1536) -> File:
    return (name, png(width, height), "image/png")


async def streamed(fake: FakeDiscord, interaction: FakeInteraction) -> FakeMessage:
    """The (public) response of a command once its reply is complete."""
    await fake.wait_until(
        lambda: (
            interaction.original_message_id is not None
            and finished(fake.messages[interaction.original_message_id])
        ),
        timeout=10,
    )
    message = fake.messages[interaction.original_message_id or ""]
    assert not message.is_ephemeral
    return message


async def refusal(fake: FakeDiscord, interaction: FakeInteraction) -> str:
    """The private answer of a refused command."""
    await fake.wait_until(
        lambda: (
            interaction.original_message_id is not None
            and bool(fake.messages[interaction.original_message_id].content)
        )
    )
    message = fake.messages[interaction.original_message_id or ""]
    assert interaction.callback_type == 4 and message.is_ephemeral
    return message.content


async def reply_to(fake: FakeDiscord, question: FakeMessage) -> FakeMessage:
    def answer() -> FakeMessage | None:
        for message in fake.bot_messages():
            reference = message.message_reference or {}
            if reference.get("message_id") == question.id and finished(message):
                return message
            if reference.get("message_id") == question.id and message.content.startswith("⚠️"):
                return message
        return None

    await fake.wait_until(lambda: answer() is not None, timeout=10)
    found = answer()
    assert found is not None
    return found


async def test_caption_by_slash_command(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    fake_ollama.script(Script(reply="A red rectangle on nothing at all."))
    interaction = await fake_discord.slash_command("caption", attachments={"image": a_png()})
    message = await streamed(fake_discord, interaction)

    assert message.content.startswith("> 🖼️ cat.png · Describe this image.\n")
    assert "A red rectangle on nothing at all." in message.content
    assert FOOTER.search(message.content).group(1) == "llava"  # type: ignore[union-attr]
    request = fake_ollama.chat_requests()[-1]
    assert request["model"] == "llava" and request["stream"] is True
    assert request["options"]["num_ctx"] == 8192  # the window the bot planned for llava
    [sent] = request["messages"]
    assert sent["role"] == "user" and sent["content"] == "Describe this image."
    [image] = sent["images"]
    picture = decoded(image)  # plain standard base64 of a downscaled JPEG
    assert (picture.format, picture.size) == ("JPEG", (1024, 768))

    turns = await bot.history.all(int(fake_discord.channel_ids[0]))
    assert [(t.role, t.model, t.status) for t in turns] == [
        ("user", None, "complete"),
        ("assistant", "llava", "complete"),
    ]
    stored = await bot.history.images_for([turns[0].id])
    assert [(i.mime, i.width, i.height) for i in stored[turns[0].id]] == [("image/jpeg", 1024, 768)]
    assert_pings_no_one(fake_discord)


async def test_caption_with_a_prompt_and_a_model(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    fake_ollama.add_model(FakeModel("moondream", capabilities=["completion", "vision"]))
    interaction = await fake_discord.slash_command(
        "caption",
        {"prompt": "What breed is it?", "model": "moondream"},
        attachments={"image": ("dog.jpg", jpeg(320, 240), "image/jpeg")},
    )
    message = await streamed(fake_discord, interaction)
    assert message.content.startswith("> 🖼️ dog.jpg · What breed is it?\n")
    request = fake_ollama.chat_requests()[-1]
    assert request["model"] == "moondream"
    assert request["messages"][-1]["content"] == "What breed is it?"
    assert decoded(request["messages"][-1]["images"][0]).size == (320, 240)  # never upscaled


async def test_caption_by_message_menu(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    # Posted without a mention: the bot's Gateway copy has no attachments (no message-content
    # intent), but a message menu's target arrives with them, as on Discord.
    target = await fake_discord.user_message(
        "our holiday",
        user="bob",
        attachments=[
            ("beach.jpg", jpeg(1600, 1200), "image/jpeg"),
            ("notes.txt", b"hi", "text/plain"),
        ],
    )
    interaction = await fake_discord.message_command("Caption image", target.id)
    message = await streamed(fake_discord, interaction)
    assert target.id in message.content.splitlines()[0]  # a link to the captioned message
    request = fake_ollama.chat_requests()[-1]
    assert request["model"] == "llava"
    [image] = request["messages"][-1]["images"]  # the text file is not an image attachment
    assert decoded(image).size == (1024, 768)

    plain = await fake_discord.user_message("no picture here")
    refused = await fake_discord.message_command("Caption image", plain.id)
    assert await refusal(fake_discord, refused) == "That message has no image to caption."
    assert len(fake_ollama.chat_requests()) == 1


async def test_an_image_in_a_mention_goes_to_the_model_with_the_message(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    question = await fake_discord.user_message(
        "what is in this picture?", mention_bot=True, attachments=[a_png("pic.png", 300, 200)]
    )
    answer = await reply_to(fake_discord, question)
    assert FOOTER.search(answer.content).group(1) == "llava"  # type: ignore[union-attr]
    sent = fake_ollama.chat_requests()[-1]["messages"][-1]
    assert sent["content"] == "what is in this picture?"
    assert decoded(sent["images"][0]).size == (300, 200)

    alone = await fake_discord.user_message("", mention_bot=True, attachments=[a_png()])
    await reply_to(fake_discord, alone)
    assert fake_ollama.chat_requests()[-1]["messages"][-1]["content"] == "Describe this image."
    assert_pings_no_one(fake_discord)


async def test_a_follow_up_chat_sends_the_stored_image_again(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    bot = await bots.start(image_followup_turns=1)
    fake_ollama.script(Script(reply="A red square."), Script(reply="Red."), Script(reply="Hi."))
    await streamed(
        fake_discord, await fake_discord.slash_command("caption", attachments={"image": a_png()})
    )
    [first] = fake_ollama.chat_images()[0]

    await streamed(
        fake_discord, await fake_discord.slash_command("chat", {"message": "What colour is it?"})
    )
    follow_up = fake_ollama.chat_requests()[1]
    assert follow_up["model"] == "llava"  # the text-only chat model hands the picture over
    assert follow_up["messages"] == [
        {"role": "user", "content": "Describe this image.", "images": [first]},
        {"role": "assistant", "content": "A red square."},
        {"role": "user", "content": "What colour is it?"},
    ]

    # One question later (image_followup_turns=1) the picture is no longer sent along.
    await streamed(fake_discord, await fake_discord.slash_command("chat", {"message": "thanks"}))
    later = fake_ollama.chat_requests()[2]
    assert later["model"] == "llama3.2"
    assert fake_ollama.chat_images()[2] == []
    assert later["messages"][0] == {"role": "user", "content": "Describe this image."}
    assert len(await bot.history.all(int(fake_discord.channel_ids[0]))) == 6


async def test_chat_with_an_image_is_routed_by_capabilities_not_names(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    fake_ollama.add_model(FakeModel("llava-lookalike", capabilities=["completion"]))
    fake_ollama.add_model(FakeModel("seer", capabilities=["completion", "vision"]))
    bot = await bots.start(chat_model="llava-lookalike", vision_model="seer")
    channel = fake_discord.channel_ids[0]

    async def chat_with_image(**options: str) -> FakeInteraction:
        return await fake_discord.slash_command(
            "chat", {"message": "look", **options}, attachments={"image": a_png()}
        )

    message = await streamed(fake_discord, await chat_with_image())
    assert message.content.startswith("> look\n")
    assert fake_ollama.chat_requests()[-1]["model"] == "seer"  # the text-only model handed over

    await bot.parts.channels.update(int(channel), int(fake_discord.guild_id), model="seer")
    await streamed(fake_discord, await chat_with_image())
    assert fake_ollama.chat_requests()[-1]["model"] == "seer"  # a seeing channel model answers

    refused = await chat_with_image(model="llama3.2")  # named explicitly, and it cannot see
    text = await refusal(fake_discord, refused)
    assert text.startswith("`llama3.2` cannot read images")
    assert len(fake_ollama.chat_requests()) == 2
    [image] = fake_ollama.chat_images()[0]
    assert fake_ollama.chat_images()[1] == [image, image]  # the earlier one again, and this one


async def test_without_a_vision_model_the_user_is_told_which_setting_to_change(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    bot = await bots.start(vision_model="")
    refused = await fake_discord.slash_command(
        "chat", {"message": "what is this?"}, attachments={"image": a_png()}
    )
    text = await refusal(fake_discord, refused)
    assert "`llama3.2` cannot read images, and no vision model is set" in text
    assert "BOT_VISION_MODEL" in text

    caption = await fake_discord.slash_command("caption", attachments={"image": a_png()})
    assert "BOT_VISION_MODEL" in await refusal(fake_discord, caption)

    question = await fake_discord.user_message("and this?", mention_bot=True, attachments=[a_png()])
    answer = await reply_to(fake_discord, question)
    assert "BOT_VISION_MODEL" in answer.content
    assert fake_ollama.chat_requests() == []
    assert await bot.history.all(int(fake_discord.channel_ids[0])) == []  # nothing half-written


BAD_FILES = [
    pytest.param(
        ("cat.png", b"I am a text file\n", "image/png"),
        "not an image I can read",
        id="text-named-png",
    ),
    pytest.param(("empty.png", b"", "image/png"), "is empty (0 bytes)", id="empty"),
    pytest.param(
        ("huge.png", png() + bytes(10 * 1024 * 1024), "image/png"),
        "images can be at most 10 MB",
        id="oversized",
    ),
    pytest.param(
        ("bomb.png", png_bomb(10_000, 8_000), "image/png"),
        "is 10,000×8,000 pixels; the limit is 50 megapixels",
        id="decompression-bomb",
    ),
]


@pytest.mark.parametrize(("file", "reason"), BAD_FILES)
async def test_a_bad_image_is_refused_with_no_ollama_request(
    bot: OllamaBot,
    fake_discord: FakeDiscord,
    fake_ollama: FakeOllama,
    file: File,
    reason: str,
) -> None:
    interaction = await fake_discord.slash_command("caption", attachments={"image": file})
    text = await refusal(fake_discord, interaction)
    assert text.startswith(f"`{file[0]}` ") and reason in text
    assert fake_ollama.chat_requests() == []
    assert await bot.history.all(int(fake_discord.channel_ids[0])) == []
    if file[0] in ("huge.png", "empty.png"):
        assert fake_discord.cdn_requests == []  # refused by its declared size, not downloaded


async def test_five_images_are_refused_with_no_ollama_request(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    five = [a_png(f"p{n}.png", 64, 48) for n in range(5)]
    question = await fake_discord.user_message("compare these", mention_bot=True, attachments=five)
    answer = await reply_to(fake_discord, question)
    assert answer.content == "⚠️ You attached 5 images; at most 4 can go with one message."

    album = await fake_discord.user_message("album", attachments=five)
    refused = await fake_discord.message_command("Caption image", album.id)
    assert "at most 4" in await refusal(fake_discord, refused)
    assert fake_ollama.chat_requests() == []
    assert fake_discord.cdn_requests == []  # counted before anything was downloaded
    assert_pings_no_one(fake_discord)


async def test_a_runner_that_cannot_read_images_after_all_is_explained(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    # Capabilities said vision, but the runner refuses the image the way Ollama's engine does.
    fake_ollama.script(Script(status=500, error_message=VISION_ERROR, model="llava"))
    interaction = await fake_discord.slash_command("caption", attachments={"image": a_png()})
    message = await streamed(fake_discord, interaction)
    assert "⚠️ The model `llava` cannot read images." in message.content
    assert "BOT_VISION_MODEL" in message.content
    turns = await bot.history.all(int(fake_discord.channel_ids[0]))
    assert turns[1].status == "failed" and turns[1].error and "cannot read images" in turns[1].error
