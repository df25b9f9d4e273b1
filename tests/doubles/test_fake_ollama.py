"""Tests of the Ollama double, driven through the real ollama-python client and raw httpx."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import ollama
import pytest

from tests.doubles.fake_ollama import (
    BUSY_MESSAGE,
    DEFAULT_REPLY,
    FakeModel,
    FakeOllama,
    Script,
    base64_error,
    count_tokens,
    gpt_oss_model,
    parse_go_duration,
    think_tags_model,
    tokenize,
)

USER = [{"role": "user", "content": "Why is the sky blue?"}]
PNG_1PX = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000d4944415478da63"
        "f8cfc0f01f0005000200d7a3d7a90000000049454e44ae426082"
    )
).decode()


@pytest.fixture
async def fake() -> AsyncIterator[FakeOllama]:
    async with FakeOllama() as server:
        yield server
    assert not server.server_errors, server.server_errors


@pytest.fixture
async def client(fake: FakeOllama) -> AsyncIterator[ollama.AsyncClient]:
    api = ollama.AsyncClient(host=fake.url)
    yield api
    await api.close()


@pytest.fixture
async def http(fake: FakeOllama) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=fake.url) as raw:
        yield raw


async def collect(stream: AsyncIterator[Any], into: list[Any] | None = None) -> list[Any]:
    """Drain a client stream; ``into`` keeps what arrived before an exception."""
    parts = [] if into is None else into
    async for part in stream:
        parts.append(part)
    return parts


# ---- chat: happy paths ------------------------------------------------------------------------


async def test_streaming_chat_collects_scripted_text_and_metrics(
    fake: FakeOllama, client: ollama.AsyncClient
) -> None:
    fake.script(Script(reply="The sky is blue."))
    parts = await collect(await client.chat("llama3.2", USER, stream=True))

    assert "".join(p.message.content for p in parts) == "The sky is blue."
    assert [p.done for p in parts] == [False] * (len(parts) - 1) + [True]
    final = parts[-1]
    assert final.done_reason == "stop"
    assert final.message.content == ""
    assert final.eval_count == len(tokenize("The sky is blue.")) == 4
    assert final.eval_duration > 0
    assert final.total_duration >= final.eval_duration
    assert final.prompt_eval_count >= 1
    assert all(p.done_reason is None and p.eval_count is None for p in parts[:-1])


async def test_non_streaming_chat_returns_one_object(client: ollama.AsyncClient) -> None:
    response = await client.chat("llama3.2", USER)
    assert response.message.role == "assistant"
    assert response.message.content == DEFAULT_REPLY
    assert response.done is True
    assert response.eval_count == 5


async def test_reply_given_as_tokens_and_tokeniser_round_trip(
    fake: FakeOllama, client: ollama.AsyncClient
) -> None:
    for text in ["", "  lead", "a  b\n\nc ", "trailing\n", "单词 and émoji 🎉"]:
        assert "".join(tokenize(text)) == text
    fake.script(Script(reply=["Hel", "lo", "!"]))
    parts = await collect(await client.chat("llama3.2", USER, stream=True))
    assert [p.message.content for p in parts] == ["Hel", "lo", "!", ""]


async def test_token_timing_is_honoured(fake: FakeOllama, client: ollama.AsyncClient) -> None:
    fake.script(Script(reply=["a", "b", "c"], first_token_delay=0.05, token_interval=0.05))
    started = time.monotonic()
    arrivals: list[float] = []
    async for _ in await client.chat("llama3.2", USER, stream=True):
        arrivals.append(time.monotonic() - started)
    assert arrivals[0] >= 0.04  # headers and the first chunk come after the first-token delay
    assert arrivals[2] - arrivals[0] >= 0.09


async def test_eval_tokens_per_second_sets_eval_duration(
    fake: FakeOllama, client: ollama.AsyncClient
) -> None:
    fake.script(Script(reply=["x"] * 10, eval_tokens_per_second=20.0))
    response = await client.chat("llama3.2", USER)
    assert response.eval_count == 10
    assert response.eval_duration == 500_000_000


async def test_model_is_echoed_exactly_as_sent(client: ollama.AsyncClient) -> None:
    for name in ["llama3.2", "LLaMA3.2:latest", "registry.ollama.ai/library/llama3.2"]:
        parts = await collect(await client.chat(name, USER, stream=True))
        assert {p.model for p in parts} == {name}


async def test_scripts_are_fifo_and_can_target_a_model(
    fake: FakeOllama, client: ollama.AsyncClient
) -> None:
    fake.script(Script(reply="for qwen", model="qwen3"), Script(reply="first"), Script("second"))
    assert (await client.chat("llama3.2", USER)).message.content == "first"
    assert (await client.chat("qwen3", USER, think=False)).message.content == "for qwen"
    assert (await client.chat("llama3.2", USER)).message.content == "second"
    assert (await client.chat("llama3.2", USER)).message.content == DEFAULT_REPLY


async def test_thinking_chunks_come_before_content(
    fake: FakeOllama, client: ollama.AsyncClient
) -> None:
    fake.script(Script(thinking="Let me think.", reply="Blue."))
    parts = await collect(await client.chat("qwen3", USER, stream=True))  # think omitted: on
    thinking = [p.message.thinking for p in parts if p.message.thinking]
    assert "".join(thinking) == "Let me think."
    first_content = next(i for i, p in enumerate(parts) if p.message.content)
    assert all(p.message.content == "" for p in parts[:first_content])
    assert all(p.message.thinking is None for p in parts[first_content:])

    fake.script(Script(thinking="hidden", reply="Blue."))
    response = await client.chat("qwen3", USER, think=False)
    assert response.message.thinking is None

    fake.script(Script(thinking="Hmm.", reply="Blue."))
    response = await client.chat("qwen3", USER, think="high")
    assert (response.message.thinking, response.message.content) == ("Hmm.", "Blue.")


async def test_a_thinking_stream_has_the_shape_ollama_sends(
    fake: FakeOllama, http: httpx.AsyncClient
) -> None:
    fake.script(Script(thinking=["Let", " me"], reply=["Blue", "."], final_text=""))
    response = await http.post(
        "/api/chat", json={"model": "qwen3", "messages": USER, "think": True}
    )
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert [line["message"] for line in lines[:2]] == [
        {"role": "assistant", "content": "", "thinking": "Let"},
        {"role": "assistant", "content": "", "thinking": " me"},
    ]
    assert [line["message"] for line in lines[2:4]] == [
        {"role": "assistant", "content": "Blue"},
        {"role": "assistant", "content": "."},
    ]
    final = lines[-1]
    assert final["done"] is True and final["message"] == {"role": "assistant", "content": ""}
    assert final["eval_count"] == 4  # reasoning tokens count as generated tokens


async def test_think_levels_and_their_errors_as_ollama_answers_them(
    fake: FakeOllama, client: ollama.AsyncClient
) -> None:
    for value in ("low", "medium", "high", "max"):  # any level on a non-thinking model: 400
        with pytest.raises(ollama.ResponseError) as caught:
            await client.chat("llama3.2", USER, think=value)
        assert (caught.value.status_code, caught.value.error) == (
            400,
            '"llama3.2" does not support thinking',
        )
    with pytest.raises(ollama.ResponseError) as caught:
        await client.chat("qwen3", USER, think="extreme")
    assert (caught.value.status_code, caught.value.error) == (
        400,
        'invalid think value: "extreme" (must be "high", "medium", "low", "max", true, or false)',
    )


async def test_gpt_oss_thinks_whatever_a_boolean_think_says(
    fake: FakeOllama, client: ollama.AsyncClient
) -> None:
    fake.add_model(gpt_oss_model())
    fake.script(Script(thinking="Reasoning.", reply="Blue."))
    response = await client.chat("gpt-oss:20b", USER, think=False)
    assert (response.message.thinking, response.message.content) == ("Reasoning.", "Blue.")
    shown = await client.show("gpt-oss:20b")
    assert "thinking" in (shown.capabilities or [])
    assert shown.details is not None and shown.details.family == "gptoss"


async def test_an_older_reasoning_model_writes_think_tags_into_its_content(
    fake: FakeOllama, client: ollama.AsyncClient
) -> None:
    fake.add_model(think_tags_model())
    fake.script(Script(thinking="Hmm, blue.", reply="Blue."))
    parts = await collect(await client.chat("deepseek-r1:7b", USER, stream=True))
    assert all(not p.message.thinking for p in parts)
    text = "".join(p.message.content for p in parts)
    assert text == "<think>\nHmm, blue.\n</think>\n\nBlue."
    assert "thinking" not in ((await client.show("deepseek-r1:7b")).capabilities or [])
    with pytest.raises(ollama.ResponseError) as caught:
        await client.chat("deepseek-r1:7b", USER, think=True)
    assert caught.value.error == '"deepseek-r1:7b" does not support thinking'


async def test_tool_calls_are_emitted_when_the_request_has_tools(
    fake: FakeOllama, client: ollama.AsyncClient
) -> None:
    def get_weather(city: str) -> str:
        """Get the weather.

        Args:
          city: The city.
        """
        return "sunny"

    call = {"function": {"name": "get_weather", "arguments": {"city": "Tokyo"}}}
    fake.script(Script(reply="", tool_calls=[call]))
    response = await client.chat("llama3.2", USER, tools=[get_weather])
    assert response.message.tool_calls is not None
    (tool_call,) = response.message.tool_calls
    assert tool_call.function.name == "get_weather"
    assert tool_call.function.arguments == {"city": "Tokyo"}
    sent = fake.chat_requests()[-1]
    assert sent["tools"][0]["function"]["name"] == "get_weather"


async def test_load_and_unload_requests(fake: FakeOllama, http: httpx.AsyncClient) -> None:
    loaded = await http.post("/api/chat", json={"model": "llama3.2"})
    assert loaded.status_code == 200
    assert loaded.headers["content-type"] == "application/json; charset=utf-8"
    assert loaded.json()["done_reason"] == "load"
    assert loaded.json()["message"] == {"role": "assistant", "content": ""}
    assert [m["name"] for m in (await http.get("/api/ps")).json()["models"]] == ["llama3.2:latest"]

    unloaded = await http.post(
        "/api/chat", json={"model": "llama3.2", "messages": [], "keep_alive": 0}
    )
    assert unloaded.json()["done_reason"] == "unload"
    assert (await http.get("/api/ps")).json() == {"models": []}


# ---- chat: errors -------------------------------------------------------------------------------


async def test_unknown_model_is_404_with_exact_text(client: ollama.AsyncClient) -> None:
    with pytest.raises(ollama.ResponseError) as caught:
        await collect(await client.chat("nope", USER, stream=True))
    assert caught.value.status_code == 404
    assert caught.value.error == "model 'nope' not found"
    assert str(caught.value) == "model 'nope' not found (status code: 404)"


async def test_busy_is_503_with_two_space_text(
    fake: FakeOllama, client: ollama.AsyncClient
) -> None:
    fake.busy = True
    with pytest.raises(ollama.ResponseError) as caught:
        await client.chat("llama3.2", USER)
    assert caught.value.status_code == 503
    assert caught.value.error == BUSY_MESSAGE
    assert "again.  maximum" in BUSY_MESSAGE
    fake.busy = False
    assert (await client.chat("llama3.2", USER)).message.content == DEFAULT_REPLY


async def test_mid_stream_error_raises_with_status_minus_one(
    fake: FakeOllama, client: ollama.AsyncClient
) -> None:
    fake.script(Script(error_after=2))
    received: list[ollama.ChatResponse] = []
    with pytest.raises(ollama.ResponseError) as caught:
        await collect(await client.chat("llama3.2", USER, stream=True), received)
    assert [p.message.content for p in received] == ["Hello", " from"]
    assert caught.value.status_code == -1
    assert caught.value.error == "an error was encountered while running the model: unexpected EOF"
    assert fake.requests[-1].status == 200


async def test_scripted_status_answers_before_streaming(
    fake: FakeOllama, client: ollama.AsyncClient
) -> None:
    fake.script(Script(status=500, error_message="boom"))
    with pytest.raises(ollama.ResponseError) as caught:
        await collect(await client.chat("llama3.2", USER, stream=True))
    assert (caught.value.status_code, caught.value.error) == (500, "boom")


async def test_die_after_makes_the_client_raise_remote_protocol_error(
    fake: FakeOllama, client: ollama.AsyncClient
) -> None:
    fake.script(Script(die_after=2))
    received: list[ollama.ChatResponse] = []
    with pytest.raises(httpx.RemoteProtocolError, match="incomplete chunked read"):
        await collect(await client.chat("llama3.2", USER, stream=True), received)
    assert [p.message.content for p in received] == ["Hello", " from"]

    fake.script(Script(die_after=1))  # non-streaming: no response at all
    with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
        await client.chat("llama3.2", USER)
    assert fake.cancelled == 0  # a crash is not a client cancellation
    assert fake.active_generations == 0


async def test_down_drops_connections(fake: FakeOllama, client: ollama.AsyncClient) -> None:
    fake.down = True
    with pytest.raises(httpx.RemoteProtocolError):
        await client.chat("llama3.2", USER)
    fake.down = False
    assert (await client.chat("llama3.2", USER)).done


async def test_connection_refused_after_close_and_restart_on_same_port(
    fake: FakeOllama, client: ollama.AsyncClient
) -> None:
    url = fake.url
    await fake.close()
    with pytest.raises(ConnectionError, match="Failed to connect to Ollama"):
        await client.chat("llama3.2", USER)
    with pytest.raises(httpx.ConnectError):  # streaming calls are not wrapped by the client
        await collect(await client.chat("llama3.2", USER, stream=True))
    await fake.start()
    assert fake.url == url
    assert (await client.chat("llama3.2", USER)).message.content == DEFAULT_REPLY


async def test_capability_checks(client: ollama.AsyncClient) -> None:
    with pytest.raises(ollama.ResponseError) as caught:
        await client.chat("llava", USER, tools=[{"type": "function", "function": {"name": "f"}}])
    assert caught.value.status_code == 400
    assert caught.value.error == "registry.ollama.ai/library/llava:latest does not support tools"

    with pytest.raises(ollama.ResponseError) as caught:
        await client.chat("llama3.2", USER, think=True)
    assert (caught.value.status_code, caught.value.error) == (
        400,
        '"llama3.2" does not support thinking',
    )
    assert (await client.chat("llama3.2", USER, think=False)).done  # allowed since 0.12.5


async def test_images_plain_base64_only_and_only_for_vision_models(
    client: ollama.AsyncClient, http: httpx.AsyncClient, fake: FakeOllama
) -> None:
    message = {"role": "user", "content": "What is this?", "images": [PNG_1PX]}
    assert (await client.chat("llava", [message])).message.content == DEFAULT_REPLY
    raw_bytes = {"role": "user", "content": "And this?", "images": [base64.b64decode(PNG_1PX)]}
    assert (await client.chat("llava", [raw_bytes])).done  # the client base64-encodes bytes

    data_uri = {**message, "images": ["data:image/png;base64," + PNG_1PX]}
    # ollama-python usually refuses this itself (its lenient b64decode check fails) ...
    with pytest.raises(ValueError, match="Invalid image data"):
        await client.chat("llava", [data_uri])
    # ... and the server answers what Go's base64 decoder says
    raw = await http.post("/api/chat", json={"model": "llava", "messages": [data_uri]})
    assert (raw.status_code, raw.json()) == (400, {"error": "illegal base64 data at input byte 4"})

    with pytest.raises(ollama.ResponseError) as caught:
        await client.chat("llama3.2", [message])
    assert caught.value.status_code == 500
    assert caught.value.error.endswith("this model is missing data required for image input")
    # every request's images are kept as received, the refused ones too
    assert fake.chat_images() == [
        [PNG_1PX],
        [PNG_1PX],
        ["data:image/png;base64," + PNG_1PX],
        [PNG_1PX],
    ]


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ("", 400, "missing request body"),
        ('{"model":', 400, "unexpected EOF"),
        ("x", 400, "invalid character 'x' looking for beginning of value"),
        ('{"model":"a" "b"}', 400, "invalid character '\"' after object key:value pair"),
        ("[1]", 400, "json: cannot unmarshal array into Go value of type api.ChatRequest"),
        ('{"messages":[]}', 400, "model is required"),
        (
            '{"model":"llama3.2","stream":"yes"}',
            400,
            "json: cannot unmarshal string into Go struct field ChatRequest.stream of type bool",
        ),
        (
            '{"model":"llama3.2","messages":[{"role":"user","content":5}]}',
            400,
            "json: cannot unmarshal number into Go struct field Message.messages.content "
            "of type string",
        ),
        (
            '{"model":"llama3.2","messages":{}}',
            400,
            "json: cannot unmarshal object into Go struct field ChatRequest.messages "
            "of type []api.Message",
        ),
        (
            '{"model":"llama3.2","think":"x"}',
            400,
            'invalid think value: "x" (must be "high", "medium", "low", "max", true, or false)',
        ),
        ('{"model":"llama3.2","keep_alive":"10"}', 400, 'time: missing unit in duration "10"'),
        ('{"model":"llama3.2","keep_alive":true}', 400, "Unsupported type: 'bool'"),
        (
            '{"model":"llama3.2","messages":[{"role":"user","content":"x"}],'
            '"options":{"temperature":"hot"}}',
            500,
            'option "temperature" must be of type float32',
        ),
        (
            '{"model":"llama3.2","messages":[{"role":"user","content":"x"}],'
            '"options":{"stop":"x"}}',
            500,
            'option "stop" must be of type array',
        ),
        (
            '{"model":"llama3.2","messages":[{"role":"user","content":"x"}],"format":"xml"}',
            500,
            'invalid format: "\\"xml\\""; expected "json" or a valid JSON Schema object',
        ),
    ],
)
async def test_request_validation_texts(
    http: httpx.AsyncClient, body: str, status: int, error: str
) -> None:
    response = await http.post("/api/chat", content=body.encode())
    assert response.status_code == status
    assert response.json() == {"error": error}


async def test_bodies_the_real_client_sends_are_accepted(
    fake: FakeOllama, client: ollama.AsyncClient
) -> None:
    history = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}],
        },
        {"role": "tool", "content": "sunny", "tool_name": "get_weather"},
    ]
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    fake.script(Script(reply='{"answer": "sunny"}'))
    response = await client.chat(
        "qwen3",
        history,
        tools=[{"type": "function", "function": {"name": "get_weather", "parameters": schema}}],
        format=schema,
        options={"temperature": 0.2, "num_ctx": 8192, "stop": ["###"], "min_p": 0.05},
        keep_alive="10m",
        think="low",
    )
    assert json.loads(response.message.content) == {"answer": "sunny"}
    for fmt in ("json", ""):
        assert (await client.chat("llama3.2", USER, format=fmt, keep_alive=-1)).done
    sent = fake.chat_requests()[0]
    assert sent["stream"] is False
    assert sent["messages"][2]["tool_calls"][0]["function"]["arguments"] == {"city": "Oslo"}


# ---- streaming wire format --------------------------------------------------------------------


async def test_raw_ndjson_framing(http: httpx.AsyncClient) -> None:
    async with http.stream("POST", "/api/chat", json={"model": "llama3.2", "messages": USER}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"] == "application/x-ndjson"
        assert r.headers["transfer-encoding"] == "chunked"
        raw = b"".join([chunk async for chunk in r.aiter_raw()])
    text = raw.decode()
    assert text.endswith("\n")
    lines = text[:-1].split("\n")
    assert all(lines), "no blank lines"
    objects = [json.loads(line) for line in lines]
    assert list(objects[0]) == ["model", "created_at", "message", "done"]
    assert objects[0]["created_at"].endswith("Z")
    assert objects[-1]["done"] is True
    assert list(objects[-1])[:5] == ["model", "created_at", "message", "done", "done_reason"]
    assert all(isinstance(objects[-1][k], int) for k in ("total_duration", "eval_duration"))


TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


async def test_tool_calls_stream_as_one_chunk_with_empty_content(
    fake: FakeOllama, http: httpx.AsyncClient
) -> None:
    """As Ollama streams them: the calls in one done:false chunk with content "", an id and an
    index on each, then the final chunk without them."""
    call = {"function": {"name": "get_weather", "arguments": {"city": "Tokyo"}}}
    fake.script(Script(reply="", tool_calls=[call, call]))
    body = {"model": "llama3.2", "messages": USER, "tools": [TOOL]}
    async with http.stream("POST", "/api/chat", json=body) as r:
        lines = [json.loads(line) async for line in r.aiter_lines() if line]
    calls_chunk, final = lines
    assert calls_chunk["done"] is False
    message = calls_chunk["message"]
    assert message["role"] == "assistant" and message["content"] == ""
    assert [c["function"]["index"] for c in message["tool_calls"]] == [0, 1]
    assert message["tool_calls"][0]["function"]["arguments"] == {"city": "Tokyo"}
    assert message["tool_calls"][0]["id"].startswith("call_")
    assert final["done"] is True and "tool_calls" not in final["message"]


async def test_scripted_tool_calls_need_tools_in_the_request(
    fake: FakeOllama, client: ollama.AsyncClient
) -> None:
    call = {"function": {"name": "get_weather", "arguments": {}}}
    fake.script(Script(reply="No tools offered.", tool_calls=[call]))
    response = await client.chat("llama3.2", USER)
    assert response.message.tool_calls is None
    assert response.message.content == "No tools offered."


async def test_tool_results_come_back_with_the_tool_role_and_tool_name(
    fake: FakeOllama, client: ollama.AsyncClient
) -> None:
    call = {"function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}
    fake.script(Script(reply="", tool_calls=[call]), Script(reply="Sunny in Oslo."))
    first = [c async for c in await client.chat("llama3.2", USER, tools=[TOOL], stream=True)]
    (asked,) = [c for c in first if c.message.tool_calls]
    history = [
        *USER,
        {"role": "assistant", "content": "", "tool_calls": asked.message.tool_calls},
        {"role": "tool", "content": "sunny", "tool_name": "get_weather"},
    ]
    second = [c async for c in await client.chat("llama3.2", history, tools=[TOOL], stream=True)]
    assert "".join(c.message.content or "" for c in second) == "Sunny in Oslo."
    sent = fake.chat_requests()[-1]["messages"]
    assert sent[2] == {"role": "tool", "content": "sunny", "tool_name": "get_weather"}
    seen = fake.requests[-1].prompt_messages
    assert seen is not None and seen[-1]["role"] == "tool"


async def test_a_streamed_request_with_tools_to_a_model_without_them_is_refused(
    http: httpx.AsyncClient,
) -> None:
    body = {"model": "llava", "messages": USER, "tools": [TOOL]}
    response = await http.post("/api/chat", json=body)
    assert response.status_code == 400
    assert response.json() == {
        "error": "registry.ollama.ai/library/llava:latest does not support tools"
    }


async def test_go_style_json_escapes_html(fake: FakeOllama, http: httpx.AsyncClient) -> None:
    fake.script(Script(reply=["<b>", "&"]))
    response = await http.post(
        "/api/chat", json={"model": "llama3.2", "messages": USER, "stream": False}
    )
    assert "\\u003cb\\u003e\\u0026" in response.text
    assert not response.text.endswith("\n")
    assert response.json()["message"]["content"] == "<b>&"


async def test_cancelled_when_the_client_stops_reading(
    fake: FakeOllama, client: ollama.AsyncClient
) -> None:
    fake.script(Script(reply=["tok"] * 200, token_interval=0.01))
    stream = await client.chat("llama3.2", USER, stream=True)
    seen = 0
    async for _ in stream:
        seen += 1
        if seen == 3:
            break
    assert fake.active_generations == 1
    await stream.aclose()  # closes the HTTP response, i.e. the connection
    await fake.wait_until(lambda: fake.cancelled == 1 and fake.active_generations == 0)

    fake.script(Script(first_token_delay=10))  # a non-streaming request cancelled while waiting
    task = asyncio.create_task(client.chat("llama3.2", USER))
    await fake.wait_until(lambda: fake.active_generations == 1)
    task.cancel()
    await fake.wait_until(lambda: fake.cancelled == 2 and fake.active_generations == 0)


# ---- other endpoints --------------------------------------------------------------------------


async def test_root_version_and_router_errors(http: httpx.AsyncClient) -> None:
    root = await http.get("/")
    assert (root.status_code, root.text) == (200, "Ollama is running")
    assert root.headers["content-type"] == "text/plain; charset=utf-8"
    head = await http.head("/")
    assert (head.status_code, head.content) == (200, b"")
    assert (await http.get("/api/version")).json() == {"version": "0.12.6"}
    assert (await http.head("/api/version")).status_code == 200

    missing = await http.get("/api/nope")
    assert (missing.status_code, missing.text) == (404, "404 page not found")
    assert missing.headers["content-type"] == "text/plain"
    wrong = await http.get("/api/chat")
    assert (wrong.status_code, wrong.text) == (405, "405 method not allowed")
    assert wrong.headers["content-type"] == "text/plain"


async def test_show_parses_and_has_model_info(client: ollama.AsyncClient) -> None:
    show = await client.show("llama3.2")
    assert show.modelinfo is not None
    assert show.modelinfo["general.architecture"] == "llama"
    assert show.modelinfo["llama.context_length"] == 131072
    assert show.modelinfo["llama.embedding_length"] == 3072
    assert show.capabilities == ["completion", "tools"]
    assert show.details is not None and show.details.family == "llama"
    assert show.parameters is not None
    assert show.parameters.splitlines()[0] == "stop" + " " * 27 + '"<|start_header_id|>"'

    vision = await client.show("llava")
    assert vision.capabilities is not None and "vision" in vision.capabilities
    assert vision.details is not None and vision.details.families == ["llama", "clip"]

    with pytest.raises(ollama.ResponseError) as caught:
        await client.show("nope:7b")
    assert (caught.value.status_code, caught.value.error) == (404, "model 'nope:7b' not found")


async def test_show_parameters_text_and_system(fake: FakeOllama, http: httpx.AsyncClient) -> None:
    fake.add_model(
        FakeModel(
            "mybot",
            parameters={"num_ctx": 4096, "stop": ["<|eot_id|>", "User:"], "temperature": 0.7},
            system="You are terse.",
        )
    )
    body = (await http.post("/api/show", json={"model": "MyBot"})).json()
    assert body["parameters"].split("\n") == [
        "num_ctx                        4096",
        'stop                           "<|eot_id|>"',
        'stop                           "User:"',
        "temperature                    0.7",
    ]
    assert body["system"] == "You are terse."
    assert "messages" not in body and "license" not in body
    empty = await http.post("/api/show", json={})
    assert (empty.status_code, empty.json()) == (400, {"error": "model is required"})


async def test_tags_and_ps_parse(fake: FakeOllama, client: ollama.AsyncClient) -> None:
    listed = await client.list()
    assert [m.model for m in listed.models] == [
        "llama3.2:latest",
        "llava:latest",
        "qwen3:latest",
        "nomic-embed-text:latest",
    ]
    assert listed.models[0].details is not None
    assert listed.models[0].details.quantization_level == "Q4_K_M"

    assert (await client.ps()).models == []
    await client.chat("qwen3", USER, options={"num_ctx": 8192})
    (running,) = (await client.ps()).models
    assert running.model == "qwen3:latest"
    assert running.context_length == 8192
    assert running.expires_at is not None and running.expires_at.tzinfo is not None

    fake.remove_model("qwen3")
    assert "qwen3:latest" not in fake.models
    assert (await client.ps()).models == []


async def test_generate_streams_response(fake: FakeOllama, client: ollama.AsyncClient) -> None:
    parts = await collect(await client.generate("llama3.2", "Why?", stream=True))
    assert "".join(p.response for p in parts) == DEFAULT_REPLY
    assert parts[-1].done and parts[-1].context
    single = await client.generate("llama3.2", "Why?")
    assert single.response == DEFAULT_REPLY
    loaded = await client.generate("llama3.2")
    assert loaded.done_reason == "load"


async def test_recording(fake: FakeOllama, client: ollama.AsyncClient) -> None:
    await client.chat("llama3.2", USER)
    with pytest.raises(ollama.ResponseError):
        await client.chat("nope", USER)
    chat = [r for r in fake.requests if r.path == "/api/chat"]
    assert [(r.method, r.status) for r in chat] == [("POST", 200), ("POST", 404)]
    assert chat[0].json == fake.chat_requests()[0]
    assert fake.chat_requests()[0]["messages"] == USER
    assert chat[0].headers["User-Agent"].startswith("ollama-python/")
    assert chat[0].t <= chat[1].t


# ---- model management ---------------------------------------------------------------------------


async def test_create_from_existing_model(fake: FakeOllama, client: ollama.AsyncClient) -> None:
    statuses = [
        p.status
        async for p in await client.create(
            "mybot",
            from_="llama3.2",
            system="You are terse.",
            parameters={"temperature": 0.3},
            stream=True,
        )
    ]
    assert statuses[0].startswith("using existing layer sha256:")
    assert any(s.startswith("creating new layer sha256:") for s in statuses)
    assert statuses[-2:] == ["writing manifest", "success"]
    show = await client.show("mybot")
    assert show.capabilities == ["completion", "tools"]
    assert "You are terse." in (show.modelfile or "")
    assert fake.models["mybot:latest"].parameters["temperature"] == 0.3

    again = await client.create("mybot2", from_="llama3.2", system="You are terse.")
    assert again.status == "success"

    with pytest.raises(ollama.ResponseError) as caught:
        await client.create("broken")
    assert (caught.value.status_code, caught.value.error) == (
        400,
        "neither 'from' or 'files' was specified",
    )


async def test_create_records_its_body_and_keeps_unknown_parameters(
    fake: FakeOllama, client: ollama.AsyncClient
) -> None:
    # The server does not check parameter names (the CLI does, before sending): see §14.5.
    await client.create("typo", from_="llama3.2", parameters={"termperature": 0.3})
    body = [r.json for r in fake.requests if r.path == "/api/create"][-1]
    assert body == {
        "model": "typo",
        "stream": False,
        "parameters": {"termperature": 0.3},
        "from": "llama3.2",
    }
    assert fake.models["typo:latest"].parameters["termperature"] == 0.3


async def test_create_from_an_unknown_model_fails_while_pulling_it(
    fake: FakeOllama, client: ollama.AsyncClient
) -> None:
    seen: list[str] = []

    async def create() -> None:
        async for progress in await client.create("ghost", from_="nosuchmodel", stream=True):
            seen.append(progress.status or "")

    with pytest.raises(ollama.ResponseError) as caught:
        await create()
    assert seen == ["pulling manifest"]
    assert (caught.value.status_code, caught.value.error) == (
        -1,
        "pull model manifest: file does not exist",
    )
    assert "ghost:latest" not in fake.models


async def test_pull_delete_copy(fake: FakeOllama, client: ollama.AsyncClient) -> None:
    fake.add_pullable(
        FakeModel("gemma3:1b", family="gemma3", size=1_000_000), bytes_per_second=50_000_000
    )
    progress = await collect(await client.pull("gemma3:1b", stream=True))
    assert progress[0].status == "pulling manifest"
    downloads = [p for p in progress if p.status and p.status.startswith("pulling ")][1:]
    assert downloads and all(p.digest and p.total for p in downloads)
    assert downloads[-1].completed == downloads[-1].total
    assert [p.status for p in progress[-3:]] == [
        "verifying sha256 digest",
        "writing manifest",
        "success",
    ]
    assert "gemma3:1b" in fake.models

    with pytest.raises(ollama.ResponseError) as caught:
        await collect(await client.pull("does-not-exist", stream=True))
    assert (caught.value.status_code, caught.value.error) == (
        -1,
        "pull model manifest: file does not exist",
    )
    with pytest.raises(ollama.ResponseError) as caught:
        await client.pull("does-not-exist")
    assert caught.value.status_code == 500

    assert (await client.copy("llama3.2", "backup")).status == "success"
    assert (await client.delete("backup")).status == "success"
    with pytest.raises(ollama.ResponseError) as caught:
        await client.delete("backup")
    assert (caught.value.status_code, caught.value.error) == (404, "model 'backup' not found")
    with pytest.raises(ollama.ResponseError) as caught:
        await client.copy("zzz", "y")
    assert (caught.value.status_code, caught.value.error) == (404, 'model "zzz" not found')


# ---- helpers ------------------------------------------------------------------------------------


def test_go_helpers() -> None:
    assert base64_error(PNG_1PX) is None
    assert base64_error("AAAA\nAAAA") is None
    assert base64_error("data:image/png;base64,AAAA") == "illegal base64 data at input byte 4"
    assert base64_error("AAA") == "illegal base64 data at input byte 0"
    assert base64_error("AA-A") == "illegal base64 data at input byte 2"
    assert parse_go_duration("1h30m") == 5400e9
    assert parse_go_duration("0") == 0
    with pytest.raises(ValueError, match='unknown unit "x"'):
        parse_go_duration("10x")


async def test_null_values_are_accepted_like_go(http: httpx.AsyncClient) -> None:
    body = {
        "model": "llava",
        "messages": [None, {"role": "user", "content": None}],
        "stream": None,
        "images": None,
        "options": None,
        "messages_extra": 1,
    }
    response = await http.post("/api/chat", json=body)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-ndjson"  # stream null: default on


async def test_client_disconnect_during_pull_is_quiet(
    fake: FakeOllama, client: ollama.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    fake.add_pullable(
        FakeModel("big:1b", size=10**9), bytes_per_second=10**8, progress_interval=0.01
    )
    stream = await client.pull("big:1b", stream=True)
    async for progress in stream:
        if progress.completed:
            break
    await stream.aclose()
    await asyncio.sleep(0.05)
    assert "big:1b" not in fake.models
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


# ---- num_ctx: the window Ollama runs a model with ----------------------------------------------


def said(text: str, n: int) -> list[dict[str, str]]:
    """`n` user/assistant messages of about 100 tokens each (400 characters)."""
    roles = ("user", "assistant")
    return [{"role": roles[i % 2], "content": f"{text}{i} " + "x" * 396} for i in range(n)]


async def test_num_ctx_request_else_server_default_capped_by_the_model(
    client: ollama.AsyncClient,
) -> None:
    async with FakeOllama(context_length=2048) as small:
        small_client = ollama.AsyncClient(host=small.url)
        await small_client.chat("llama3.2", USER)
        await small_client.chat("llava", USER, options={"num_ctx": 65536})
        await small_client.chat("qwen3", USER, options={"num_ctx": 8192})
        await small_client.close()
        assert [r.num_ctx for r in small.chat_records()] == [2048, 32768, 8192]
        windows = {m["name"]: m["context_length"] for m in (await small_ps(small))["models"]}
        assert windows == {"llama3.2:latest": 2048, "llava:latest": 32768, "qwen3:latest": 8192}
    fake_default = FakeOllama()
    assert fake_default.context_length == 4096  # OLLAMA_CONTEXT_LENGTH's default


async def small_ps(fake: FakeOllama) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=fake.url) as raw:
        return (await raw.get("/api/ps")).json()  # type: ignore[no-any-return]


async def test_a_prompt_longer_than_the_window_loses_its_oldest_non_system_messages(
    fake: FakeOllama, client: ollama.AsyncClient
) -> None:
    system = {"role": "system", "content": "You are terse."}
    messages = [system, *said("turn", 60), {"role": "user", "content": "And now?"}]
    reply = await client.chat("llama3.2", messages)  # 60 x 104 tokens: more than 4096

    record = fake.chat_records()[-1]
    assert record.num_ctx == 4096
    kept = record.prompt_messages
    assert kept is not None
    assert kept[0] == system  # kept, although older than everything else
    assert kept[-1] == {"role": "user", "content": "And now?"}  # the latest always stays
    assert kept[1:-1] == messages[-len(kept) + 1 : -1]  # the newest ones, in order
    assert record.dropped == len(messages) - len(kept) > 0
    assert reply.prompt_eval_count is not None
    assert reply.prompt_eval_count <= 4096
    assert reply.prompt_eval_count == record.prompt_eval_count
    assert reply.prompt_eval_count > 4096 - 104  # as many as fit, no fewer

    await client.chat("llama3.2", messages, options={"num_ctx": 16384})
    assert fake.chat_records()[-1].dropped == 0  # a larger window takes them all


async def test_the_latest_message_stays_even_when_it_alone_overflows(
    fake: FakeOllama, client: ollama.AsyncClient
) -> None:
    huge = {"role": "user", "content": "y" * 40_000}  # 10,004 tokens
    reply = await client.chat("llama3.2", [*said("old", 3), huge])
    assert fake.chat_records()[-1].prompt_messages == [huge]
    assert reply.prompt_eval_count == 4096  # never more than the window


async def test_the_models_own_system_prompt_comes_first_and_is_kept(
    fake: FakeOllama, client: ollama.AsyncClient
) -> None:
    fake.add_model(FakeModel(name="terse", system="Be terse."))
    await client.chat("terse", [*said("t", 60), {"role": "user", "content": "Q"}])
    kept = fake.chat_records()[-1].prompt_messages
    assert kept is not None
    assert kept[0] == {"role": "system", "content": "Be terse."}
    assert kept[-1]["content"] == "Q"


async def test_another_num_ctx_reloads_a_loaded_model(
    fake: FakeOllama, client: ollama.AsyncClient
) -> None:
    first = await client.chat("llama3.2", USER)
    again = await client.chat("llama3.2", USER)
    assert (fake.loads, fake.reloads) == (1, 0)
    assert first.load_duration is not None and again.load_duration is not None
    assert first.load_duration > again.load_duration > 0

    reloaded = await client.chat("llama3.2", USER, options={"num_ctx": 8192})
    assert (fake.loads, fake.reloads) == (2, 1)
    assert [r.reloaded for r in fake.chat_records()] == [True, False, True]
    assert reloaded.load_duration == first.load_duration
    ps = (await client.ps()).models
    assert [m.context_length for m in ps] == [8192]


async def test_cjk_text_costs_a_token_a_character(
    fake: FakeOllama, client: ollama.AsyncClient
) -> None:
    reply = await client.chat("llama3.2", [{"role": "user", "content": "空はなぜ青いのですか"}])
    assert reply.prompt_eval_count == 10 + 4  # ten characters, four for the framing
    assert count_tokens("abcdefgh") == 2 and count_tokens("日本abcd") == 3


async def test_num_predict_cuts_the_reply_with_done_reason_length(
    fake: FakeOllama, client: ollama.AsyncClient
) -> None:
    fake.script(Script(reply="one two three four five six"), Script(reply="one two"))
    parts = await collect(
        await client.chat("llama3.2", USER, stream=True, options={"num_predict": 3})
    )
    assert "".join(p.message.content for p in parts) == "one two three"
    assert parts[-1].done_reason == "length"
    assert parts[-1].eval_count == 3
    short = await client.chat("llama3.2", USER, options={"num_predict": 3})
    assert (short.message.content, short.done_reason) == ("one two", "stop")


# ---- parallelism and the queue ----------------------------------------------------------------


async def test_one_generation_at_a_time_by_default_the_next_waits_without_headers(
    fake: FakeOllama, http: httpx.AsyncClient
) -> None:
    fake.script(Script(reply="first reply here", token_interval=0.05), Script(reply="second reply"))
    body = {"model": "llama3.2", "messages": USER}
    first = await http.send(http.build_request("POST", "/api/chat", json=body), stream=True)
    second_task = asyncio.create_task(
        http.send(http.build_request("POST", "/api/chat", json=body), stream=True)
    )
    await fake.wait_until(lambda: fake.queued == 1)
    await asyncio.sleep(0.05)
    assert not second_task.done()  # no status line, no headers while it waits
    assert fake.active_generations == 1
    first_lines = [json.loads(line) async for line in first.aiter_lines()]
    second = await asyncio.wait_for(second_task, 5)
    second_lines = [json.loads(line) async for line in second.aiter_lines()]
    assert "".join(x["message"]["content"] for x in first_lines) == "first reply here"
    assert "".join(x["message"]["content"] for x in second_lines) == "second reply"
    assert second.status_code == 200
    assert second.headers["content-type"] == "application/x-ndjson"
    assert fake.max_active_generations == 1 and fake.max_queued == 1
    assert second_lines[-1]["load_duration"] < first_lines[-1]["load_duration"]  # warm
    await first.aclose()
    await second.aclose()


async def test_parallel_lets_that_many_run_and_a_model_can_have_its_own(
    client: ollama.AsyncClient,
) -> None:
    async with FakeOllama(parallel=2) as fake:
        api = ollama.AsyncClient(host=fake.url)
        fake.script(*[Script(token_interval=0.02) for _ in range(3)])
        await asyncio.gather(*(api.chat("llama3.2", USER) for _ in range(3)))
        assert (fake.max_active_generations, fake.max_queued) == (2, 1)

        fake.add_model(FakeModel(name="solo", parallel=1))
        fake.max_active_generations = fake.max_queued = 0
        fake.script(*[Script(token_interval=0.02, model="solo") for _ in range(2)])
        await asyncio.gather(*(api.chat("solo", USER) for _ in range(2)))
        assert (fake.max_active_generations, fake.max_queued) == (1, 1)
        await api.close()
        assert not fake.server_errors


async def test_a_full_queue_answers_503_with_the_exact_busy_text(
    client: ollama.AsyncClient,
) -> None:
    async with FakeOllama(max_queue=1) as fake:
        api = ollama.AsyncClient(host=fake.url)
        fake.script(Script(first_token_delay=0.3))
        running = asyncio.create_task(api.chat("llama3.2", USER))
        await fake.wait_until(lambda: fake.active_generations == 1)
        waiting = asyncio.create_task(api.chat("llama3.2", USER))
        await fake.wait_until(lambda: fake.queued == 1)
        with pytest.raises(ollama.ResponseError) as caught:
            await api.chat("llama3.2", USER)
        assert (caught.value.status_code, caught.value.error) == (503, BUSY_MESSAGE)
        answers = await asyncio.gather(running, waiting)
        assert [a.message.content for a in answers] == [DEFAULT_REPLY] * 2
        await api.close()


async def test_a_request_that_leaves_the_queue_gives_its_place_up(
    fake: FakeOllama, client: ollama.AsyncClient
) -> None:
    fake.script(Script(first_token_delay=0.2), Script(reply="gone"), Script(reply="third"))
    running = asyncio.create_task(client.chat("llama3.2", USER))
    await fake.wait_until(lambda: fake.active_generations == 1)
    leaving = asyncio.create_task(client.chat("llama3.2", USER))
    await fake.wait_until(lambda: fake.queued == 1)
    third = asyncio.create_task(client.chat("llama3.2", USER))
    await fake.wait_until(lambda: fake.queued == 2)
    leaving.cancel()
    await fake.wait_until(lambda: fake.queued == 1 and fake.cancelled == 1)
    assert (await running).message.content == DEFAULT_REPLY
    assert (await third).message.content == "third"
    assert fake.queued == 0 and fake.active_generations == 0


# ---- text in the final chunk ------------------------------------------------------------------


async def test_scripted_final_text_arrives_in_the_done_chunk(
    fake: FakeOllama, client: ollama.AsyncClient
) -> None:
    fake.script(Script(reply="The sky is", final_text=" blue."))
    parts = await collect(await client.chat("llama3.2", USER, stream=True))
    assert parts[-1].done and parts[-1].message.content == " blue."
    assert "".join(p.message.content for p in parts) == "The sky is blue."
    assert parts[-1].eval_count == 4

    fake.script(Script(reply="The sky is", final_text=" blue."))
    whole = await client.chat("llama3.2", USER)
    assert whole.message.content == "The sky is blue."

    fake.script(Script(reply="Hi", final_text=" there"))
    generated = await collect(await client.generate("llama3.2", "hi", stream=True))
    assert generated[-1].done and generated[-1].response == " there"


async def test_final_chunk_text_holds_back_the_last_piece_of_unscripted_replies(
    fake: FakeOllama, client: ollama.AsyncClient
) -> None:
    parts = await collect(await client.chat("llama3.2", USER, stream=True))
    assert parts[-1].message.content == ""  # llama3.2 has no output parser here

    parts = await collect(await client.chat("qwen3", USER, stream=True, think=False))
    assert parts[-1].message.content == " model."  # qwen3 flushes on done
    assert "".join(p.message.content for p in parts) == DEFAULT_REPLY

    fake.final_chunk_text = True
    parts = await collect(await client.chat("llama3.2", USER, stream=True))
    assert parts[-1].message.content == " model."
    assert "".join(p.message.content for p in parts) == DEFAULT_REPLY
    fake.script(Script(final_text=""))  # a script can still end with an empty chunk
    parts = await collect(await client.chat("llama3.2", USER, stream=True))
    assert parts[-1].message.content == ""


# ---- create, error texts, delays, response schemas -------------------------------------------


async def test_create_with_an_empty_system_keeps_the_bases(
    fake: FakeOllama, client: ollama.AsyncClient, http: httpx.AsyncClient
) -> None:
    await client.create("base", from_="llama3.2", system="You are the base.")
    await client.create("child", from_="base", system="")  # the client sends "system": ""
    assert json.loads(fake.requests[-1].raw)["system"] == ""
    shown = (await http.post("/api/show", json={"model": "child"})).json()
    assert shown["system"] == "You are the base."
    await client.create("other", from_="base", system="Other.")
    assert (await http.post("/api/show", json={"model": "other"})).json()["system"] == "Other."


async def test_chat_not_found_text_follows_the_servers_version(
    client: ollama.AsyncClient,
) -> None:
    async with FakeOllama(version="0.11.4") as old:
        api = ollama.AsyncClient(host=old.url)
        with pytest.raises(ollama.ResponseError) as caught:
            await api.chat("x", USER)
        assert caught.value.status_code == 404
        assert caught.value.error == 'model "x" not found, try pulling it first'
        with pytest.raises(ollama.ResponseError) as shown:
            await api.show("x")
        assert shown.value.error == "model 'x' not found"  # show never changed
        await api.close()
    with pytest.raises(ollama.ResponseError) as current:
        await client.chat("x", USER)
    assert current.value.error == "model 'x' not found"


async def test_a_delay_per_path_comes_before_the_answer(
    fake: FakeOllama, client: ollama.AsyncClient
) -> None:
    fake.delays["/api/tags"] = 0.3
    started = time.monotonic()
    await client.list()
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    await client.ps()
    assert time.monotonic() - started < 0.3


async def test_a_response_that_breaks_the_openapi_schema_is_a_bug_of_the_double(
    fake: FakeOllama, client: ollama.AsyncClient, http: httpx.AsyncClient
) -> None:
    fake.add_model(FakeModel(name="odd", capabilities=["completion", 7]))  # type: ignore[list-item]
    await http.post("/api/show", json={"model": "odd"})
    assert len(fake.server_errors) == 1
    assert "ShowResponse at capabilities/1" in fake.server_errors[0]

    fake.script(Script(reply=["fine", 3]))  # type: ignore[list-item]
    await http.post("/api/chat", json={"model": "llama3.2", "messages": USER})
    assert "ChatStreamEvent at message/content" in fake.server_errors[-1]
    fake.server_errors.clear()  # the fixture asserts the list empty


# ---- loading, GPU memory and keep_alive ------------------------------------------------------


async def test_a_model_that_is_not_loaded_loads_before_its_first_token() -> None:
    async with FakeOllama(load_delay=0.3) as fake:
        client = ollama.AsyncClient(host=fake.url)
        try:
            started = time.monotonic()
            cold = await client.chat("llama3.2", USER)
            cold_took = time.monotonic() - started
            assert (await client.ps()).models[0].model == "llama3.2:latest"
            started = time.monotonic()
            warm = await client.chat("llama3.2", USER)
            warm_took = time.monotonic() - started
        finally:
            await client.close()
    assert cold_took >= 0.3 > warm_took
    assert cold.load_duration == 300_000_000
    assert warm.load_duration is not None and warm.load_duration < 1_000_000
    assert cold.total_duration is not None and cold.total_duration > cold.load_duration
    assert fake.loads == 1


async def test_a_model_loading_is_not_in_ps_and_a_second_request_waits_for_the_same_load() -> None:
    async with FakeOllama(load_delay=0.3, parallel=2) as fake:
        client = ollama.AsyncClient(host=fake.url)
        try:
            first = asyncio.create_task(client.chat("llama3.2", USER))
            await asyncio.sleep(0.1)
            assert (await client.ps()).models == []  # Ollama lists a runner once it is loaded
            second = await client.chat("llama3.2", USER)
            await first
        finally:
            await client.close()
    assert fake.loads == 1
    assert second.load_duration is not None and second.load_duration >= 100_000_000


async def test_gpu_memory_evicts_idle_models_then_spills_to_the_cpu() -> None:
    small, big = FakeModel(name="small", size=1000), FakeModel(name="big", size=3000)
    async with FakeOllama(models=[small, big], gpu_memory=2500) as fake:
        client = ollama.AsyncClient(host=fake.url)
        try:
            await client.chat("small", USER)
            (loaded,) = (await client.ps()).models
            assert (loaded.size, loaded.size_vram) == (1000, 1000)
            await client.chat("big", USER)  # does not fit beside small: small goes
            (loaded,) = (await client.ps()).models
            assert (loaded.model, loaded.size, loaded.size_vram) == ("big:latest", 3000, 2500)
        finally:
            await client.close()
    assert fake.evictions == 1


async def test_max_loaded_models_evicts_the_model_that_expires_soonest() -> None:
    async with FakeOllama(max_loaded_models=2) as fake:
        client = ollama.AsyncClient(host=fake.url)
        try:
            await client.chat("llama3.2", USER, keep_alive="1h")
            await client.chat("qwen3", USER, keep_alive="1m")
            await client.chat("llava", USER)
            names = sorted(m.model for m in (await client.ps()).models)
        finally:
            await client.close()
    assert names == ["llama3.2:latest", "llava:latest"]
    assert fake.loaded_models() == ["llama3.2:latest", "llava:latest"]


async def test_keep_alive_sets_when_a_model_unloads_and_zero_unloads_after_the_request(
    fake: FakeOllama, client: ollama.AsyncClient
) -> None:
    await client.chat("llama3.2", USER, keep_alive="10m")
    (loaded,) = (await client.ps()).models
    assert loaded.expires_at is not None
    left = loaded.expires_at.timestamp() - time.time()
    assert 590 < left <= 600
    await client.chat("llama3.2", USER)  # no keep_alive: the runner keeps its 10 minutes
    (loaded,) = (await client.ps()).models
    assert loaded.expires_at is not None and loaded.expires_at.timestamp() - time.time() > 590
    await client.chat("llama3.2", USER, keep_alive=0)
    assert (await client.ps()).models == []
    await client.chat("llama3.2", USER, keep_alive=-1)
    (loaded,) = (await client.ps()).models
    assert loaded.expires_at is not None and loaded.expires_at.year > 2300


# ---- /api/embed ------------------------------------------------------------------------------


def _cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


async def test_embed_batch_in_order_normalised_and_similar_texts_near(
    client: ollama.AsyncClient,
) -> None:
    texts = [
        "Members must be 18 or older to join the voice channels.",
        "To join the voice channels, members must be at least 18.",
        "The server's pizza night is on Fridays.",
    ]
    response = await client.embed(model="nomic-embed-text", input=texts)
    assert response.model == "nomic-embed-text"
    assert len(response.embeddings) == 3
    assert all(len(v) == 768 for v in response.embeddings)
    assert all(abs(_cosine(v, v) - 1.0) < 1e-6 for v in response.embeddings)
    near = _cosine(response.embeddings[0], response.embeddings[1])
    far = _cosine(response.embeddings[0], response.embeddings[2])
    assert near > 0.5 > far
    assert response.prompt_eval_count == sum(len(t) // 4 for t in texts)
    single = await client.embed(model="nomic-embed-text", input=texts[0])
    assert single.embeddings == [response.embeddings[0]]  # deterministic


async def test_embed_dimensions_truncate_and_renormalise(client: ollama.AsyncClient) -> None:
    response = await client.embed(model="nomic-embed-text", input="hello world", dimensions=64)
    (vector,) = response.embeddings
    assert len(vector) == 64
    assert abs(_cosine(vector, vector) - 1.0) < 1e-6


async def test_embed_empty_input_gives_no_vectors(http: httpx.AsyncClient) -> None:
    for empty in ("", []):
        answer = await http.post("/api/embed", json={"model": "nomic-embed-text", "input": empty})
        assert answer.status_code == 200
        assert answer.json() == {"model": "nomic-embed-text", "embeddings": []}


async def test_embed_truncate_false_refuses_a_long_input(
    client: ollama.AsyncClient, http: httpx.AsyncClient
) -> None:
    long = "word " * 3000  # 3,750 tokens in a 2,048-token context
    with pytest.raises(ollama.ResponseError) as refused:
        await client.embed(model="nomic-embed-text", input=long, truncate=False)
    assert refused.value.status_code == 400
    assert refused.value.error == "the input length exceeds the context length"
    answer = await http.post("/api/embed", json={"model": "nomic-embed-text", "input": long})
    assert answer.status_code == 200
    assert answer.json()["prompt_eval_count"] == 2048  # truncated to the context by default


async def test_embed_errors_as_ollama_words_them(
    client: ollama.AsyncClient, http: httpx.AsyncClient
) -> None:
    with pytest.raises(ollama.ResponseError) as missing:
        await client.embed(model="mxbai-embed-large", input="x")
    assert missing.value.status_code == 404
    assert missing.value.error == 'model "mxbai-embed-large" not found, try pulling it first'
    answer = await http.post("/api/embed", json={"model": "", "input": "x"})
    assert (answer.status_code, answer.json()) == (404, {"error": "model '' not found"})
    answer = await http.post("/api/embed", json={"model": "nomic-embed-text", "input": ["a", 1]})
    assert (answer.status_code, answer.json()) == (400, {"error": "invalid input type"})
    with pytest.raises(ollama.ResponseError) as chat_model:
        await client.embed(model="llama3.2", input="x")
    assert chat_model.value.status_code == 400
    assert chat_model.value.error == "this model does not support embeddings"


async def test_an_embedding_model_cannot_chat(client: ollama.AsyncClient) -> None:
    with pytest.raises(ollama.ResponseError) as refused:
        await client.chat(model="nomic-embed-text", messages=USER)
    assert refused.value.status_code == 400
    assert refused.value.error == '"nomic-embed-text" does not support chat'
