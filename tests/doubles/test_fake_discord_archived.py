"""The Discord double refuses interaction messages in archived threads, as it refuses channel
messages there: edits and public follow-ups are 400 50083; ephemeral ones still work."""

from __future__ import annotations

from tests.doubles.fake_discord import FLAG_EPHEMERAL, FakeDiscord
from tests.doubles.test_fake_discord import Call, fake, fake_options, raw  # noqa: F401


async def test_interaction_messages_in_an_archived_thread_are_refused(
    fake: FakeDiscord,  # noqa: F811
    raw: Call,  # noqa: F811
) -> None:
    status, thread, _ = await raw(
        "POST",
        f"/channels/{fake.channel_ids[0]}/threads",
        json={"name": "t", "type": 11},
    )
    assert status == 201 or status == 200, thread
    interaction, _ = fake._new_interaction_payload(2, {"name": "x"}, "alice", thread["id"])
    fake.interactions[interaction.id] = interaction
    callback = f"/interactions/{interaction.id}/{interaction.token}/callback"
    answered = {"type": 4, "data": {"content": "first"}}
    assert (await raw("POST", callback, auth=False, json=answered))[0] == 204
    hook = f"/webhooks/{fake.application_id}/{interaction.token}"

    await fake.archive_thread(thread["id"])

    status, body, _ = await raw("PATCH", f"{hook}/messages/@original", json={"content": "x"})
    assert (status, body["code"], body["message"]) == (400, 50083, "Thread is archived")
    status, body, _ = await raw("POST", f"{hook}?wait=true", json={"content": "more"})
    assert (status, body["code"]) == (400, 50083)
    private = {"content": "only you", "flags": FLAG_EPHEMERAL}
    status, body, _ = await raw("POST", f"{hook}?wait=true", json=private)
    assert status == 200 and body["content"] == "only you"
    assert fake.messages[interaction.original_message_id or ""].content == "first"
