"""Knowledge (issue 15): /kb, the message menu, answers with sources, files in chat, permissions
and the lifecycle; the real bot against the Discord double and the Ollama double (/api/embed)."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select

from bot.app import OllamaBot
from bot.storage.engine import session_factory
from bot.storage.models import KnowledgeChunk, KnowledgeSource
from tests.conftest import BotRunner, both_databases, eventually
from tests.doubles.discord.constants import READ_MESSAGE_HISTORY, VIEW_CHANNEL
from tests.doubles.fake_discord import FakeDiscord, FakeInteraction, FakeMessage
from tests.doubles.fake_ollama import FakeModel, FakeOllama, Script
from tests.e2e.test_chat import assert_pings_no_one
from tests.e2e.test_controls import button
from tests.e2e.test_models import answer
from tests.pdffiles import pdf

HANDBOOK = """# Server handbook

## Voice channels

Members must be at least 18 years old to join the voice channels. Moderators may ask for
proof of age. Music bots are allowed in the Lounge voice channel only.

## Events

Pizza night happens every Friday at 8pm in the events channel; bring your own toppings.

## Moderation

Spam and advertising get a warning first, then a one-day timeout, then a ban.
"""
VOICE_QUESTION = "How old must members be to join the voice channels?"
SOURCES = re.compile(r"\n-# Sources: (.+)$")


async def chat(fake: FakeDiscord, text: str, *, user: str = "alice") -> FakeMessage:
    """/chat, waited for until its footer (and Sources line) is shown."""
    interaction = await fake.slash_command("chat", {"message": text}, user=user)
    await fake.wait_until(
        lambda: (
            (m := fake.messages.get(interaction.original_message_id or "")) is not None
            and ("tokens/s" in m.content or "⚠️" in m.content)
        ),
        timeout=10,
    )
    assert interaction.original_message_id is not None
    return fake.messages[interaction.original_message_id]


def file(name: str, text: str, kind: str = "text/markdown") -> tuple[str, bytes, str]:
    return (name, text.encode(), kind)


async def kb_add(
    fake: FakeDiscord,
    *,
    user: str = "admin",
    channel_id: str | None = None,
    options: dict[str, Any] | None = None,
    attachment: tuple[str, bytes, str] | None = None,
) -> FakeMessage:
    interaction = await fake.slash_command(
        "kb",
        options or {},
        subcommand="add",
        user=user,
        channel_id=channel_id,
        attachments={"file": attachment} if attachment else None,
    )
    return await settled(fake, interaction)


async def settled(fake: FakeDiscord, interaction: FakeInteraction) -> FakeMessage:
    """The answer once it is no progress line any more."""
    await fake.wait_until(
        lambda: (
            (
                (m := fake.messages.get(interaction.original_message_id or "")) is not None
                and not m.is_loading
                and bool(m.content)
                and not m.content.startswith("⏳")
            )
            or bool(interaction.followup_ids)
        ),
        timeout=10,
    )
    return await answer(fake, interaction)


def system_messages(fake_ollama: FakeOllama) -> list[str]:
    request = fake_ollama.chat_requests()[-1]
    return [m["content"] for m in request["messages"] if m["role"] == "system"]


def embeds(fake_ollama: FakeOllama) -> list[Any]:
    return [r.json for r in fake_ollama.requests if r.path == "/api/embed"]


async def stored(bot: OllamaBot) -> list[tuple[str, int | None, int]]:
    async with session_factory(bot.engine)() as session:
        sources = (await session.scalars(select(KnowledgeSource))).all()
        return [(s.name, s.channel_id, s.chunks) for s in sources]


# ---- /kb add file, and answers that use it --------------------------------------------------


@both_databases
async def test_kb_add_file_then_chat_answers_from_it_with_sources(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    added = await kb_add(fake_discord, attachment=file("handbook.md", HANDBOOK))
    assert added.is_ephemeral
    assert re.fullmatch(
        r"Added `handbook\.md` to the knowledge base \(server\): \d+ chunks, [\d,]+ tokens\.",
        added.content,
    ), added.content
    assert await stored(bot) == [("handbook.md", None, 3)]  # one chunk a section
    assert embeds(fake_ollama)[0]["model"] == "nomic-embed-text"
    assert len(embeds(fake_ollama)[0]["input"]) == 3  # one batch

    fake_ollama.script(Script(reply="You must be 18 [1]."))
    reply = await chat(fake_discord, VOICE_QUESTION)
    (knowledge,) = system_messages(fake_ollama)
    assert knowledge.startswith("Excerpts from this server's knowledge base")
    assert "[1] handbook.md lines 1-6 (Server handbook › Voice channels)" in knowledge
    assert "at least 18 years old" in knowledge
    assert "Pizza night" not in knowledge  # below the relevance floor
    assert embeds(fake_ollama)[-1]["input"] == [VOICE_QUESTION]
    sources = SOURCES.search(reply.content)
    assert sources is not None, reply.content
    assert sources.group(1) == "[1] handbook.md lines 1-6"
    assert_pings_no_one(fake_discord)


async def test_a_turn_without_knowledge_is_exactly_as_before(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    reply = await chat(fake_discord, VOICE_QUESTION)
    assert fake_ollama.chat_requests()[-1]["messages"] == [
        {"role": "user", "content": VOICE_QUESTION}
    ]
    assert not embeds(fake_ollama)  # a guild without knowledge costs no embedding
    assert "Sources" not in reply.content


async def test_nothing_above_the_relevance_floor_leaves_the_turn_as_before(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    await kb_add(fake_discord, attachment=file("handbook.md", HANDBOOK))
    reply = await chat(fake_discord, "Tell me a joke about cats.")
    assert fake_ollama.chat_requests()[-1]["messages"] == [
        {"role": "user", "content": "Tell me a joke about cats."}
    ]
    assert "Sources" not in reply.content


async def test_kb_add_is_refused_to_members_without_the_setting_s_permission(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    refused = await kb_add(fake_discord, user="alice", attachment=file("a.md", HANDBOOK))
    assert refused.is_ephemeral
    assert refused.content == "This needs the Manage Channels permission."
    assert not embeds(fake_ollama) and await stored(bot) == []


async def test_kb_add_refuses_other_files_and_big_ones_before_download(
    bots: BotRunner, fake_discord: FakeDiscord
) -> None:
    bot = await bots.start(knowledge_max_file_bytes=1000)
    refused = await kb_add(
        fake_discord, attachment=("app.exe", b"MZ" * 10, "application/x-msdownload")
    )
    assert refused.content.startswith("I can't read `app.exe`")
    refused = await kb_add(fake_discord, attachment=file("big.md", "x" * 5000))
    assert refused.content == "`big.md` is 5 KB; the most I read is 1000 bytes."
    assert not fake_discord.cdn_requests  # nothing was downloaded
    assert await stored(bot) == []


async def test_kb_add_a_pdf_keeps_its_pages_and_one_without_text_is_refused(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    document = pdf(
        [
            "Welcome to the guide.",
            "",
            "Members must be at least 18 years old to join the voice channels.",
        ]
    )
    added = await kb_add(fake_discord, attachment=("guide.pdf", document, "application/pdf"))
    assert "2 chunks" in added.content, added.content
    await chat(fake_discord, VOICE_QUESTION)
    (knowledge,) = system_messages(fake_ollama)
    assert "[1] guide.pdf p. 3" in knowledge

    scan = pdf(["", ""])
    refused = await kb_add(fake_discord, attachment=("scan.pdf", scan, "application/pdf"))
    assert refused.content.startswith("`scan.pdf` has no text I can read")


async def test_kb_add_shows_progress_for_a_big_file(
    bot: OllamaBot, fake_discord: FakeDiscord
) -> None:
    text = "\n\n".join(f"Paragraph {n}: " + "lorem ipsum " * 100 for n in range(70))
    interaction = await fake_discord.slash_command(
        "kb", {}, subcommand="add", user="admin", attachments={"file": file("big.md", text)}
    )
    done = await settled(fake_discord, interaction)
    assert re.search(r"\b(\d+) chunks", done.content)
    shown = [body.get("content") or "" for body in done.history]
    assert any(re.fullmatch(r"⏳ Adding `big\.md`: 32/\d+ chunks embedded…", s) for s in shown)


async def test_a_missing_embedding_model_names_ollama_pull(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    fake_ollama.remove_model("nomic-embed-text")
    refused = await kb_add(fake_discord, attachment=file("handbook.md", HANDBOOK))
    assert "`ollama pull nomic-embed-text`" in refused.content
    assert await stored(bot) == []


# ---- messages: /kb add message:, the menu, deletes --------------------------------------------


async def test_add_to_knowledge_menu_then_deleting_the_message_removes_its_chunks(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    rules = await fake_discord.user_message(
        "Members must be at least 18 years old to join the voice channels.", user="admin"
    )
    interaction = await fake_discord.message_command("Add to knowledge", rules.id, user="admin")
    added = await settled(fake_discord, interaction)
    assert added.content.startswith("Added [#general message](<https://discord.com/channels/")
    assert await stored(bot) == [("#general message", int(rules.channel_id), 1)]

    reply = await chat(fake_discord, VOICE_QUESTION)
    sources = SOURCES.search(reply.content)
    assert sources is not None
    link = f"https://discord.com/channels/{fake_discord.guild_id}/{rules.channel_id}/{rules.id}"
    assert sources.group(1) == f"[1] [#general message](<{link}>)"

    await fake_discord.delete_user_message(rules.id)

    async def gone() -> bool:
        return await stored(bot) == []

    await eventually(gone)
    async with session_factory(bot.engine)() as session:
        assert not (await session.scalars(select(KnowledgeChunk))).all()
    await chat(fake_discord, VOICE_QUESTION)
    assert not system_messages(fake_ollama)


async def test_kb_add_message_link(bots: BotRunner, fake_discord: FakeDiscord) -> None:
    first = await bots.start()
    rules = await fake_discord.user_message("Be kind to each other.", user="admin")
    link = f"https://discord.com/channels/{fake_discord.guild_id}/{rules.channel_id}/{rules.id}"
    blank = await kb_add(fake_discord, options={"message": link})
    assert blank.content.startswith("I can't read a message's text from its link without")
    await bots.stop(first)
    await bots.start(message_content_intent=True)
    added = await kb_add(fake_discord, options={"message": link})
    assert added.content.startswith("Added [#general message]")
    again = await kb_add(fake_discord, options={"message": link})
    assert again.content == "That message is in the knowledge base already."
    wrong = await kb_add(fake_discord, options={"message": "not a link"})
    assert wrong.content.startswith("That is not a message link.")


# ---- permissions hold ------------------------------------------------------------------------


async def make_private(fake: FakeDiscord, channel_id: str, *readers: str) -> None:
    """Only `readers` (and admins) can see the channel."""
    await fake.set_overwrite(channel_id, fake.guild_id, deny=VIEW_CHANNEL, member=False)
    for name in readers:
        await fake.set_overwrite(channel_id, fake.users[name]["id"], allow=VIEW_CHANNEL)


async def test_knowledge_from_a_private_channel_never_reaches_a_member_who_cannot_read_it(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    bot = await bots.start(knowledge_permission="everyone", message_content_intent=True)
    general, private = fake_discord.channel_ids[0], fake_discord.channel_ids[2]
    await make_private(fake_discord, private, "alice")
    await fake_discord.set_overwrite(
        private, fake_discord.bot_user["id"], allow=VIEW_CHANNEL | READ_MESSAGE_HISTORY
    )
    secret = await fake_discord.user_message(
        "Members must be at least 18 years old to join the voice channels. The staff "
        "password is swordfish.",
        user="alice",
        channel_id=private,
    )
    link = f"https://discord.com/channels/{fake_discord.guild_id}/{private}/{secret.id}"
    added = await kb_add(fake_discord, user="alice", channel_id=private, options={"message": link})
    assert added.content.startswith("Added ")
    # A file scoped to the private channel is private too.
    await kb_add(
        fake_discord,
        user="alice",
        channel_id=private,
        options={"scope": "channel"},
        attachment=file("staff.md", "Staff meet in the voice channels every Monday at noon."),
    )
    assert {s[1] for s in await stored(bot)} == {int(private)}

    # bob cannot read the channel: nothing of it reaches his turn, his search or his list.
    fake_ollama.script(Script(reply="I don't know."))
    interaction = await fake_discord.slash_command(
        "chat", {"message": VOICE_QUESTION}, user="bob", channel_id=general
    )
    await fake_discord.wait_until(lambda: len(fake_ollama.chat_requests()) == 1)
    request = fake_ollama.chat_requests()[-1]
    assert "swordfish" not in str(request) and "Monday" not in str(request)
    assert request["messages"] == [{"role": "user", "content": VOICE_QUESTION}]
    await settled(fake_discord, interaction)
    found = await settled(
        fake_discord,
        await fake_discord.slash_command(
            "kb", {"query": "voice channels"}, subcommand="search", user="bob"
        ),
    )
    assert found.content == "Nothing in the knowledge base matches that."
    listed = await answer(
        fake_discord, await fake_discord.slash_command("kb", {}, subcommand="list", user="bob")
    )
    assert listed.content == "The knowledge base is empty. Add to it with `/kb add`."
    refused = await kb_add(fake_discord, user="bob", options={"message": link})
    assert refused.content == "You can't see that message, or it does not exist."

    # alice can: the same question gets it.
    await chat(fake_discord, VOICE_QUESTION)
    (knowledge,) = system_messages(fake_ollama)
    assert "swordfish" in knowledge


# ---- /kb list, search, remove -----------------------------------------------------------------


async def test_kb_list_search_and_remove_with_autocomplete(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    await kb_add(fake_discord, attachment=file("handbook.md", HANDBOOK))
    listed = await answer(
        fake_discord, await fake_discord.slash_command("kb", {}, subcommand="list", user="alice")
    )
    assert listed.content.splitlines() == [
        "**Knowledge base** · 1 documents",
        "`handbook.md` · server · 3 chunks · " + listed.content.split(" · ")[-1],
    ]
    found = await settled(
        fake_discord,
        await fake_discord.slash_command(
            "kb", {"query": "pizza night toppings"}, subcommand="search", user="alice"
        ),
    )
    assert found.content.startswith("**1.** `handbook.md lines 8-10` · ")
    assert "Pizza night happens every Friday" in found.content

    typed = await fake_discord.autocomplete(
        "kb", {"name": "hand"}, "name", subcommand="remove", user="admin"
    )
    await fake_discord.wait_until(lambda: typed.choices is not None)
    choices = typed.choices or []
    assert [c["name"] for c in choices] == ["handbook.md (server)"]
    removed = await answer(
        fake_discord,
        await fake_discord.slash_command(
            "kb", {"name": choices[0]["value"]}, subcommand="remove", user="admin"
        ),
    )
    assert removed.content == "Removed `handbook.md` (3 chunks) from the knowledge base."
    assert await stored(bot) == []
    await chat(fake_discord, VOICE_QUESTION)
    assert not system_messages(fake_ollama)


# ---- files in chat ---------------------------------------------------------------------------


async def test_a_small_file_in_a_mention_goes_whole_into_the_context(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    await fake_discord.user_message(
        "what does this say?",
        mention_bot=True,
        attachments=[file("notes.txt", "The launch is on March 3rd.", "text/plain")],
    )
    await fake_discord.wait_until(lambda: len(fake_ollama.chat_requests()) == 1)
    (attached,) = system_messages(fake_ollama)
    assert attached == "The member attached the file `notes.txt`:\n\nThe launch is on March 3rd."
    assert not embeds(fake_ollama)  # whole: nothing to choose


async def test_a_file_too_big_for_the_share_sends_only_its_relevant_chunks(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    filler = "\n\n".join(
        f"Section {n}: the weather was mild and calm that day." for n in range(600)
    )
    text = filler + "\n\nMembers must be at least 18 years old to join the voice channels.\n"
    interaction = await fake_discord.slash_command(
        "chat",
        {"message": VOICE_QUESTION},
        attachments={"file": file("log.md", text)},
    )
    await fake_discord.wait_until(lambda: len(fake_ollama.chat_requests()) == 1)
    (attached,) = system_messages(fake_ollama)
    assert attached.startswith("The member attached the file `log.md`; it is too long")
    assert "at least 18 years old" in attached
    assert len(attached) < len(text) // 4
    await settled(fake_discord, interaction)


async def test_a_pdf_without_text_in_chat_says_so(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    message = await fake_discord.user_message(
        "summarise", mention_bot=True, attachments=[("scan.pdf", pdf([""]), "application/pdf")]
    )
    await fake_discord.wait_until(
        lambda: any(m.content.startswith("⚠️") for m in fake_discord.bot_messages())
    )
    (warning,) = [m for m in fake_discord.bot_messages() if m.content.startswith("⚠️")]
    assert warning.content.startswith("⚠️ `scan.pdf` has no text I can read")
    assert warning.message_reference["message_id"] == message.id  # type: ignore[index]
    assert not fake_ollama.chat_requests()


async def test_chat_file_over_the_size_limit_is_refused_privately_before_download(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    await bots.start(knowledge_max_file_bytes=100)
    interaction = await fake_discord.slash_command(
        "chat", {"message": "read this"}, attachments={"file": file("big.md", "y" * 500)}
    )
    refused = await answer(fake_discord, interaction)
    assert refused.is_ephemeral
    assert refused.content == "`big.md` is 500 bytes; the most I read is 100 bytes."
    assert not fake_discord.cdn_requests
    assert not fake_ollama.chat_requests()


# ---- lifecycle: a new embedding model ----------------------------------------------------------


async def test_changing_the_embedding_model_re_embeds_in_the_background(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    first = await bots.start()
    await kb_add(fake_discord, attachment=file("handbook.md", HANDBOOK))
    await bots.stop(first)
    fake_ollama.add_model(
        FakeModel(
            name="mxbai-embed-large",
            family="bert",
            parameter_size="334M",
            context_length=512,
            embedding_length=1024,
            capabilities=["embedding"],
        )
    )
    bot = await bots.start(embedding_model="mxbai-embed-large")
    knowledge = bot.parts.knowledge
    assert knowledge is not None
    await fake_discord.wait_until(knowledge.reembedded.is_set)
    async with session_factory(bot.engine)() as session:
        chunks = (await session.scalars(select(KnowledgeChunk))).all()
    assert {c.model for c in chunks} == {"mxbai-embed-large"}
    assert {len(c.vector) for c in chunks} == {1024 * 4}
    await chat(fake_discord, VOICE_QUESTION)
    (knowledge_message,) = system_messages(fake_ollama)
    assert "at least 18 years old" in knowledge_message
    assert embeds(fake_ollama)[-1]["model"] == "mxbai-embed-large"


async def test_old_vectors_serve_while_the_new_embedding_model_cannot_embed_them(
    bots: BotRunner, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    first = await bots.start()
    await kb_add(fake_discord, attachment=file("handbook.md", HANDBOOK))
    await bots.stop(first)
    bot = await bots.start(embedding_model="mxbai-embed-large")  # not pulled yet
    knowledge = bot.parts.knowledge
    assert knowledge is not None
    await fake_ollama.wait_until(
        lambda: any(e["model"] == "mxbai-embed-large" for e in embeds(fake_ollama))
    )
    assert not knowledge.reembedded.is_set()  # it will try again later
    reply = await chat(fake_discord, VOICE_QUESTION)
    (knowledge_message,) = system_messages(fake_ollama)
    assert "at least 18 years old" in knowledge_message  # the old vectors, the old model
    assert embeds(fake_ollama)[-1] == {
        "model": "nomic-embed-text",
        "input": [VOICE_QUESTION],
        "truncate": True,
    }
    assert SOURCES.search(reply.content)
    refused = await kb_add(fake_discord, attachment=file("more.md", "More rules."))
    assert "`ollama pull mxbai-embed-large`" in refused.content


async def test_a_chat_turn_whose_embedding_model_went_missing_names_ollama_pull(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    await kb_add(fake_discord, attachment=file("handbook.md", HANDBOOK))
    fake_ollama.remove_model("nomic-embed-text")
    reply = await chat(fake_discord, VOICE_QUESTION)
    assert "⚠️" in reply.content
    assert "`ollama pull nomic-embed-text`" in reply.content
    assert not fake_ollama.chat_requests()


async def test_a_chat_model_as_embedding_model_is_explained(
    bots: BotRunner, fake_discord: FakeDiscord
) -> None:
    await bots.start(embedding_model="llama3.2")
    refused = await kb_add(fake_discord, attachment=file("handbook.md", HANDBOOK))
    assert refused.content.startswith("The model `llama3.2` cannot make embeddings.")


async def test_a_mention_gets_the_knowledge_and_the_sources_line_too(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    await kb_add(fake_discord, attachment=file("handbook.md", HANDBOOK))
    question = await fake_discord.user_message(VOICE_QUESTION, mention_bot=True)
    await fake_discord.wait_until(
        lambda: any(
            "-# Sources: [1] handbook.md lines 1-6" in m.content
            for m in fake_discord.bot_messages(question.channel_id)
        )
    )
    (knowledge,) = system_messages(fake_ollama)
    assert "at least 18 years old" in knowledge
    assert_pings_no_one(fake_discord)


async def test_a_mention_with_only_a_file_asks_for_a_summary(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    await fake_discord.user_message(
        "",
        mention_bot=True,
        attachments=[file("data.csv", "id,name\n1,Ada\n2,Linus\n", "text/csv")],
    )
    await fake_discord.wait_until(lambda: len(fake_ollama.chat_requests()) == 1)
    request = fake_ollama.chat_requests()[-1]
    assert request["messages"] == [
        {
            "role": "system",
            "content": "The member attached the file `data.csv`:\n\nid,name\n1,Ada\n2,Linus\n",
        },
        {"role": "user", "content": "Summarise the attached file."},
    ]


async def test_regenerate_retrieves_the_knowledge_again(
    bot: OllamaBot, fake_discord: FakeDiscord, fake_ollama: FakeOllama
) -> None:
    await kb_add(fake_discord, attachment=file("handbook.md", HANDBOOK))
    first = await chat(fake_discord, VOICE_QUESTION)
    await fake_discord.wait_until(lambda: button(first, "reply:again:") is not None)
    regenerate = button(first, "reply:again:")
    assert regenerate is not None
    await fake_discord.click_button(first.id, regenerate)
    await fake_discord.wait_until(lambda: len(fake_ollama.chat_requests()) == 2)
    (knowledge,) = system_messages(fake_ollama)
    assert "at least 18 years old" in knowledge
