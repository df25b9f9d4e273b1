"""A protocol-faithful test double of the Ollama HTTP server.

`FakeOllama` is a real aiohttp server on 127.0.0.1 that speaks Ollama's native ``/api/*`` wire
format (NDJSON streaming, exact status codes and error texts, Go-style JSON) so that the project's
tests can drive it through the real ``ollama.AsyncClient(host=fake.url)`` or plain httpx.

Behaviour follows Ollama ~v0.12 (the default ``version``) with a few newer additions that clients
ignore (``capabilities`` in ``/api/tags``). Request bodies of ``/api/chat`` and ``/api/generate``
are type-checked against the request schemas of Ollama's own OpenAPI description, copied to
``tests/data/ollama-openapi.yaml``.

Like Ollama (each rule has its own test in ``test_fake_ollama.py``):

* ``num_ctx``: a generation runs with ``options.num_ctx``, else the model's ``num_ctx``
  parameter, else the server default ``context_length`` (``OLLAMA_CONTEXT_LENGTH``, 4096),
  capped by the model's trained context. A chat prompt longer than that window loses its oldest
  non-system messages as ``server/prompt.go`` drops them (the latest message always stays, and
  the system messages before the cut), and ``prompt_eval_count`` never exceeds the window. Each
  request's record says what the model saw (``RecordedRequest.prompt_messages``, ``dropped``,
  ``num_ctx``). A loaded model asked for another ``num_ctx`` is reloaded (``reloads``; a larger
  ``load_duration``), after its running generations ended.
* Tokens are estimated, deterministically: four characters a token (rounded down) plus four per
  message for the template's framing, 768 per image for vision models (as prompt.go counts
  them); a generated token is one ``tokenize()`` piece. CJK characters (kana, hangul, han) count
  one token each, as real tokenizers spend about one on each (``count_tokens``).
* ``num_predict`` (when positive) caps the generated pieces (thinking and text); a reply cut
  by it ends with ``done_reason: "length"``.
* Parallelism: at most ``parallel`` generations per model at once (``OLLAMA_NUM_PARALLEL``,
  default 1; ``FakeModel.parallel`` overrides it per model); the others wait in FIFO order with
  no bytes sent (gin writes the 200 headers with the first line), and more than ``max_queue``
  waiting (``OLLAMA_MAX_QUEUE``, 512) are answered 503 with Ollama's "server busy" text. ``busy``
  answers that 503 to every generation.
* Text in the final ``done: true`` chunk, as the server's output parsers flush held-back text
  there: ``Script(final_text=...)``, or for unscripted text the last piece of the reply held back
  when ``final_chunk_text`` is set or the model has ``flushes_on_done`` (qwen3 here).
* ``delays[path]``: seconds to wait before answering that path (``fake.delays["/api/tags"] = 3``).
* Every response (JSON bodies and each NDJSON line) is checked against the response schemas of
  ``tests/data/ollama-openapi.yaml``; a mismatch is a bug in the double and is kept in
  ``server_errors`` (fixtures assert it stays empty).

Simplifications (documented, deliberate):

* the queue limit counts every waiting generation (Ollama lets requests for an already-loaded
  model wait on the runner without counting them); load-only requests never wait;
* ``down = True`` drops every new connection without answering; for "connection refused" call
  ``await fake.close()`` (and ``await fake.start()`` to come back on the same port);
* ``/api/push``, ``/api/blobs``, the legacy ``/api/embeddings`` and the OpenAI ``/v1`` routes are
  not served (404).

``/api/embed`` (Ollama's current embedding endpoint) is served as Ollama does: ``input`` a string
or an array of strings (one L2-normalised float32 vector each, in order; ``""`` or ``[]`` gives
``{"model", "embeddings": []}``), ``truncate`` (default true; false and too long: 400 "the input
length exceeds the context length"), ``dimensions`` (truncates, then normalises again),
``prompt_eval_count`` the tokens of all inputs; 404 ``model "<name>" not found, try pulling it
first`` for a missing model, ``model '' not found`` for an empty name, 400 ``invalid input type``
for an element that is not a string. The vectors are deterministic and make similar texts near:
a hashed bag of words and character trigrams (``embed_text``) in the model's
``embedding_length`` dimensions. ``nomic-embed-text`` (capabilities ``["embedding"]``, 768
dimensions, a 2,048-token context) is installed by default. A model without the ``embedding``
capability is refused with 400 ``this model does not support embeddings`` (Ollama has no
capability check there; its runner refuses a model without pooling: the text is inferred).

What ollama-python 0.6.3 raises against this double (as against a real Ollama):

* HTTP error before streaming (404, 400, 500, 503, ``Script(status=...)``):
  ``ollama.ResponseError`` with ``.status_code`` = HTTP status, ``.error`` = the text;
* ``{"error": ...}`` line mid-stream (``Script(error_after=N)``): ``ResponseError``, status -1;
* server died mid-stream (``Script(die_after=N)``): ``httpx.RemoteProtocolError`` - "peer closed
  connection without sending complete message body (incomplete chunked read)" once chunks were
  sent, "Server disconnected without sending a response." before any (also for ``down``);
* nothing listening (after ``close()``): builtin ``ConnectionError`` for non-streaming calls,
  but ``httpx.ConnectError`` for streaming ones (the client does not wrap those).
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import functools
import hashlib
import inspect
import json
import math
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from aiohttp import web

__all__ = [
    "BUSY_MESSAGE",
    "DEFAULT_REPLY",
    "FakeModel",
    "FakeOllama",
    "PullableModel",
    "RecordedRequest",
    "Script",
]

DEFAULT_REPLY = "Hello from the fake model."
BUSY_MESSAGE = "server busy, please try again.  maximum pending requests exceeded"
MID_STREAM_ERROR = "an error was encountered while running the model: unexpected EOF"
VISION_ERROR = (
    "Failed to create new sequence: failed to process inputs: "
    "this model is missing data required for image input"
)
PULL_NOT_FOUND = "pull model manifest: file does not exist"
DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_KEEP_ALIVE = 300.0  # seconds (OLLAMA_KEEP_ALIVE default 5m)
DEFAULT_NUM_CTX = 4096  # OLLAMA_CONTEXT_LENGTH's default on a machine with < 23 GiB of VRAM
DEFAULT_NUM_PARALLEL = 1  # OLLAMA_NUM_PARALLEL since v0.10
DEFAULT_MAX_QUEUE = 512  # OLLAMA_MAX_QUEUE
IMAGE_TOKENS = 768  # server/prompt.go: imageNumTokens, per image, for models with a projector
OPENAPI_PATH = Path(__file__).resolve().parent.parent / "data" / "ollama-openapi.yaml"

LLAMA3_TEMPLATE = """<|start_header_id|>system<|end_header_id|>

Cutting Knowledge Date: December 2023

{{ if .System }}{{ .System }}
{{- end }}
{{- if .Tools }}When you receive a tool call response, use the output to format an answer.

You are a helpful assistant with tool calling capabilities.
{{- end }}<|eot_id|>
{{- range $i, $_ := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 }}
{{- if eq .Role "user" }}<|start_header_id|>user<|end_header_id|>

{{ .Content }}<|eot_id|>{{ if $last }}<|start_header_id|>assistant<|end_header_id|>

{{ end }}
{{- else if eq .Role "assistant" }}<|start_header_id|>assistant<|end_header_id|>

{{ .Content }}{{ if not $last }}<|eot_id|>{{ end }}
{{- end }}
{{- end }}"""

LLAVA_TEMPLATE = "[INST] {{ if .System }}{{ .System }} {{ end }}{{ .Prompt }} [/INST]"

QWEN3_TEMPLATE = """{{- if .System }}<|im_start|>system
{{ .System }}<|im_end|>
{{ end }}
{{- range $i, $_ := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 -}}
<|im_start|>{{ .Role }}
{{ if and $.IsThinkSet (not $.Think) }}/no_think {{ end }}{{ .Content }}<|im_end|>
{{ if $last }}<|im_start|>assistant
{{ if .Thinking }}<think>{{ .Thinking }}</think>{{ end }}{{ end }}
{{- end }}"""


# --------------------------------------------------------------------------------------------
# Go-flavoured formatting helpers
# --------------------------------------------------------------------------------------------


def go_json(obj: Any) -> str:
    """Serialise like Go's ``json.Marshal``: compact, UTF-8, HTML characters escaped."""
    text = _GO_ENCODER.encode(obj)
    if _GO_ESCAPED.search(text) is None:  # most lines: one scan instead of five replaces
        return text
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(char, escaped)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


_GO_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_GO_ESCAPED = re.compile("[<>&\u2028\u2029]")


def _rfc3339(dt: datetime, ns: int) -> str:
    """RFC3339Nano as Go prints it: trailing zeros of the fraction trimmed, ``Z`` for UTC."""
    fraction = f"{ns % 1_000_000_000:09d}".rstrip("0")
    text = dt.strftime("%Y-%m-%dT%H:%M:%S") + (f".{fraction}" if fraction else "")
    offset = dt.utcoffset() or timedelta(0)
    if offset == timedelta(0):
        return text + "Z"
    minutes = int(offset.total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    return f"{text}{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def created_at() -> str:
    """``time.Now().UTC()`` in RFC3339Nano, as in every chat/generate chunk."""
    ns = time.time_ns()
    fraction = f"{ns % 1_000_000_000:09d}".rstrip("0")
    return _utc_second(ns // 1_000_000_000) + (f".{fraction}Z" if fraction else "Z")


@functools.lru_cache(maxsize=4)
def _utc_second(seconds: int) -> str:
    """``2006-01-02T15:04:05`` of a Unix second in UTC (made once a second, not per chunk)."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def local_time(dt: datetime | None = None) -> str:
    """Local time with offset, as Ollama prints ``modified_at`` / ``expires_at``."""
    dt = (dt or datetime.now(UTC)).astimezone()
    return _rfc3339(dt.replace(microsecond=0), dt.microsecond * 1000)


def _go_quote(text: str) -> str:
    """Approximation of Go's ``%q`` / ``strconv.Quote``."""
    return json.dumps(text, ensure_ascii=False)


def _version_tuple(version: str) -> tuple[int, ...]:
    """``"0.12.6"`` -> ``(0, 12, 6)`` (pre-release suffixes ignored)."""
    return tuple(int(re.match(r"\d*", part).group(0) or 0) for part in version.split(".")[:3])  # type: ignore[union-attr]


def _go_sharp_v(value: Any) -> str:
    """Go ``%#v`` for the JSON-decoded values found in a model's parameters."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        number = float(value)
        if number.is_integer() and abs(number) < 1e21:
            return str(int(number))
        return repr(number)
    if isinstance(value, str):
        return _go_quote(value)
    return go_json(value)


def tokenize(text: str) -> list[str]:
    """Split text into word-ish tokens that keep their whitespace: ``"".join(...) == text``."""
    tokens = re.findall(r"\s*\S+", text)
    tail = text[len("".join(tokens)) :]
    if tail:
        if tokens:
            tokens[-1] += tail
        else:
            tokens = [tail]
    return tokens


CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")


def count_tokens(text: str) -> int:
    """The double's token count of a text: one per CJK character, one per four other
    characters (rounded down)."""
    cjk = len(CJK.findall(text))
    return cjk + (len(text) - cjk) // 4


def _json_kind(value: Any) -> str:
    """The word Go's decoder uses for a JSON value in ``cannot unmarshal <kind>``."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _go_reflect_type(value: Any) -> str:
    """``reflect.TypeOf`` of a value decoded into ``any``."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "float64"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "[]interface {}"
    return "map[string]interface {}"


_DURATION_UNITS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "μs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}


def parse_go_duration(text: str) -> float:
    """Port of Go's ``time.ParseDuration``; returns nanoseconds or raises ValueError(Go text)."""
    quoted = _go_quote(text)
    rest = text
    negative = False
    if rest[:1] in ("-", "+"):
        negative = rest[0] == "-"
        rest = rest[1:]
    if rest == "0":
        return 0.0
    if not rest:
        raise ValueError(f"time: invalid duration {quoted}")
    total = 0.0
    while rest:
        number = re.match(r"(\d*)(\.(\d*))?", rest)
        assert number is not None
        if not number.group(1) and not number.group(3):
            raise ValueError(f"time: invalid duration {quoted}")
        rest = rest[number.end() :]
        unit = re.match(r"[^\d.]*", rest)
        assert unit is not None
        if not unit.group(0):
            raise ValueError(f"time: missing unit in duration {quoted}")
        if unit.group(0) not in _DURATION_UNITS:
            raise ValueError(f"time: unknown unit {_go_quote(unit.group(0))} in duration {quoted}")
        total += float(number.group(0) or 0) * _DURATION_UNITS[unit.group(0)]
        rest = rest[unit.end() :]
    return -total if negative else total


_B64_ALPHABET = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")


def base64_error(text: str) -> str | None:
    """Go ``base64.StdEncoding.Decode`` validation (port of ``decodeQuantum``), or None if valid.

    Standard alphabet with padding; ``\\r``/``\\n`` are skipped, as in Go.
    """
    src = text.encode()
    size = len(src)
    si = 0

    def corrupt(at: int) -> str:
        return f"illegal base64 data at input byte {at}"

    def skip_newlines(i: int) -> int:
        while i < size and src[i] in (10, 13):
            i += 1
        return i

    while si < size:
        j = 0
        while j < 4:
            if si == size:
                return None if j == 0 else corrupt(si - j)
            char = src[si]
            si += 1
            if char in _B64_ALPHABET:
                j += 1
                continue
            if char in (10, 13):
                continue
            if char != ord("=") or j in (0, 1):
                return corrupt(si - 1)
            if j == 2:
                si = skip_newlines(si)
                if si == size:
                    return corrupt(size)
                if src[si] != ord("="):
                    return corrupt(si - 1)
                si += 1
            si = skip_newlines(si)
            return corrupt(si) if si < size else None
    return None


# --------------------------------------------------------------------------------------------
# Model names
# --------------------------------------------------------------------------------------------

_PART_RE = {
    "host": re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,349}$"),
    "namespace": re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,79}$"),
    "model": re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}$"),
    "tag": re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}$"),
}


@dataclass(frozen=True)
class ModelName:
    """A parsed ``[host/][namespace/]model[:tag]`` name with Ollama's defaults filled in."""

    host: str
    namespace: str
    model: str
    tag: str

    @property
    def full(self) -> str:
        return f"{self.host}/{self.namespace}/{self.model}:{self.tag}"

    @property
    def short(self) -> str:
        """The display form used by /api/tags and /api/ps (``llama3.2:latest``)."""
        if self.host == DEFAULT_HOST and self.namespace == "library":
            return f"{self.model}:{self.tag}"
        if self.host == DEFAULT_HOST:
            return f"{self.namespace}/{self.model}:{self.tag}"
        return self.full

    @property
    def key(self) -> str:
        """Case-insensitive identity."""
        return self.full.lower()


@functools.lru_cache(maxsize=1024)  # every lookup parses each installed model's name
def parse_model_name(name: str) -> ModelName | None:
    """Parse like Ollama's ``model.ParseName``; None when the name is empty or invalid."""
    rest = name.split("@", 1)[0]
    tag = "latest"
    slash, colon = rest.rfind("/"), rest.rfind(":")
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1 :]
    parts = rest.split("/")
    if len(parts) > 3:
        return None
    parsed = ModelName(
        host=parts[-3] if len(parts) == 3 else DEFAULT_HOST,
        namespace=parts[-2] if len(parts) >= 2 else "library",
        model=parts[-1],
        tag=tag,
    )
    for part, pattern in _PART_RE.items():
        if not pattern.match(getattr(parsed, part)):
            return None
    return parsed


def canonical_name(name: str) -> str:
    """``"LLama3.2"`` -> ``"LLama3.2:latest"``; raises ValueError for invalid names."""
    parsed = parse_model_name(name)
    if parsed is None:
        raise ValueError(f"invalid model name: {name!r}")
    return parsed.short


# --------------------------------------------------------------------------------------------
# Request decoding (Go encoding/json + gin behaviour) and OpenAPI type checks
# --------------------------------------------------------------------------------------------


class HTTPError(Exception):
    """An error answered as ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _go_char(char: str) -> str:
    if char == "'":
        return "'\\''"
    if char == '"':
        return "'\"'"
    return "'" + json.dumps(char, ensure_ascii=False)[1:-1] + "'"


def _innermost_container(doc: str, pos: int) -> str:
    stack: list[str] = []
    in_string = escaped = False
    for char in doc[:pos]:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            stack.append(char)
        elif char in "]}" and stack:
            stack.pop()
    return stack[-1] if stack else ""


def _go_syntax_error(doc: str, error: json.JSONDecodeError) -> str:
    """Map Python's JSON error to the text Go's decoder would give (approximate)."""
    if error.pos >= len(doc.rstrip()) or error.msg.startswith("Unterminated string"):
        return "unexpected EOF"
    char = _go_char(doc[error.pos])
    if error.msg.startswith("Expecting ':'"):
        return f"invalid character {char} after object key"
    if error.msg.startswith("Expecting ','"):
        where = (
            "object key:value pair"
            if _innermost_container(doc, error.pos) == "{"
            else "array element"
        )
        return f"invalid character {char} after {where}"
    if error.msg.startswith("Expecting property name"):
        return f"invalid character {char} looking for beginning of object key string"
    if error.msg.startswith("Invalid control character"):
        return f"invalid character {char} in string literal"
    if "escape" in error.msg:
        return f"invalid character {char} in string escape code"
    return f"invalid character {char} looking for beginning of value"


def _reject_constant(name: str) -> Any:
    raise json.JSONDecodeError("Expecting value", name, 0)


_GO_DECODER = json.JSONDecoder(parse_constant=_reject_constant)  # made once: not cheap


def decode_body(raw: bytes, go_type: str) -> dict[str, Any]:
    """gin ``ShouldBindJSON``: decode the first JSON value of the body into a struct.

    Like Go's ``json.Decoder`` trailing data after the first value is ignored.
    """
    doc = raw.decode("utf-8", errors="replace").lstrip(" \t\r\n")
    if not doc:
        raise HTTPError(400, "missing request body")
    try:
        value, _ = _GO_DECODER.raw_decode(doc)
    except json.JSONDecodeError as exc:
        if exc.doc != doc:  # NaN / Infinity
            raise HTTPError(
                400, f"invalid character {_go_char(doc[0])} looking for beginning of value"
            ) from None
        raise HTTPError(400, _go_syntax_error(doc, exc)) from None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise HTTPError(
            400, f"json: cannot unmarshal {_json_kind(value)} into Go value of type {go_type}"
        )
    return value


# Go struct names and Go types along the paths of ChatRequest / GenerateRequest ("[]" = any index)
_GO_STRUCTS: dict[tuple[str, ...], str] = {
    ("messages", "[]"): "Message",
    ("messages", "[]", "tool_calls", "[]"): "ToolCall",
    ("messages", "[]", "tool_calls", "[]", "function"): "ToolCallFunction",
    ("tools", "[]"): "Tool",
    ("tools", "[]", "function"): "ToolFunction",
}
_GO_TYPES: dict[tuple[str, ...], str] = {
    ("messages",): "[]api.Message",
    ("messages", "[]"): "api.Message",
    ("messages", "[]", "images"): "[]api.ImageData",
    ("messages", "[]", "images", "[]"): "api.ImageData",
    ("messages", "[]", "tool_calls"): "[]api.ToolCall",
    ("messages", "[]", "tool_calls", "[]"): "api.ToolCall",
    ("messages", "[]", "tool_calls", "[]", "function"): "api.ToolCallFunction",
    ("messages", "[]", "tool_calls", "[]", "function", "arguments"): (
        "api.ToolCallFunctionArguments"
    ),
    ("images",): "[]api.ImageData",
    ("images", "[]"): "api.ImageData",
    ("tools",): "api.Tools",
    ("tools", "[]"): "api.Tool",
    ("tools", "[]", "function"): "api.ToolFunction",
    ("tools", "[]", "function", "parameters"): "api.ToolFunctionParameters",
    ("options",): "map[string]interface {}",
    ("context",): "[]int",
}
_GO_SCALARS = {"string": "string", "boolean": "bool", "integer": "int", "number": "float64"}
# Schemas that are Go map[string]any: only the container type is checked while decoding.
_GO_MAPS = frozenset({"ModelOptions"})


@functools.cache
def openapi_spec() -> dict[str, Any]:
    """Ollama's OpenAPI description, loaded once per process."""
    spec: dict[str, Any] = yaml.safe_load(OPENAPI_PATH.read_text(encoding="utf-8"))
    return spec


@functools.cache
def _decode_validator(schema_name: str) -> jsonschema.protocols.Validator:
    """A validator for *JSON types only*, derived from the spec's request schema.

    Go's decoder only rejects wrong JSON types while decoding; ``required``/``enum`` are not
    enforced by the server (and ollama-python omits empty ``content``), and the ``oneOf`` fields
    (``format``, ``think``, ``keep_alive``) have their own server-side checks, so those
    keywords are dropped.
    """
    schemas = openapi_spec()["components"]["schemas"]

    def types_only(node: Mapping[str, Any]) -> dict[str, Any]:
        if "$ref" in node:
            name = node["$ref"].rsplit("/", 1)[-1]
            return {"type": "object"} if name in _GO_MAPS else types_only(schemas[name])
        out: dict[str, Any] = {}
        if "type" in node:
            out["type"] = node["type"]
        if "properties" in node:
            out["properties"] = {k: types_only(v) for k, v in node["properties"].items()}
        if "items" in node:
            out["items"] = types_only(node["items"])
        return out

    schema = types_only(schemas[schema_name])
    validator: jsonschema.protocols.Validator = jsonschema.Draft202012Validator(schema)
    return validator


def _document_order(body: Any, path: list[str | int]) -> tuple[int, ...]:
    order: list[int] = []
    node = body
    for step in path:
        if isinstance(node, dict):
            order.append(list(node).index(step))
        else:
            order.append(int(step))
        node = node[step]
    return tuple(order)


def type_error(body: dict[str, Any], schema_name: str, root_struct: str) -> str | None:
    """The Go ``UnmarshalTypeError`` text for the first wrongly typed field, if any."""
    errors = [
        e
        for e in _decode_validator(schema_name).iter_errors(body)
        if e.validator == "type" and e.instance is not None  # Go accepts null anywhere
    ]
    if not errors:
        return None
    first = min(errors, key=lambda e: _document_order(body, list(e.absolute_path)))
    path = ["[]" if isinstance(p, int) else str(p) for p in first.absolute_path]
    last_field = max(i for i, p in enumerate(path) if p != "[]")
    struct = _GO_STRUCTS.get(tuple(path[:last_field]), root_struct)
    field_path = ".".join(p for p in path if p != "[]")
    expected = first.validator_value if isinstance(first.validator_value, str) else "object"
    go_type = _GO_TYPES.get(tuple(path), _GO_SCALARS.get(expected, "map[string]interface {}"))
    kind = _json_kind(first.instance)
    if go_type == "int" and isinstance(first.instance, float):
        kind = f"number {first.instance!r}"
    target = f"Go struct field {struct}.{field_path} of type {go_type}"
    return f"json: cannot unmarshal {kind} into {target}"


def _check_fields(body: Mapping[str, Any], struct: str, fields: Mapping[str, str]) -> None:
    """Hand-written Go type checks for the small management requests (show, create, ...)."""
    checks: dict[str, Callable[[Any], bool]] = {
        "string": lambda v: isinstance(v, str),
        "bool": lambda v: isinstance(v, bool),
        "map[string]string": lambda v: isinstance(v, dict),
        "map[string]interface {}": lambda v: isinstance(v, dict),
        "[]api.Message": lambda v: isinstance(v, list),
    }
    for name, go_type in fields.items():
        value = body.get(name)
        if value is not None and not checks[go_type](value):
            raise HTTPError(
                400,
                f"json: cannot unmarshal {_json_kind(value)} into Go struct field "
                f"{struct}.{name} of type {go_type}",
            )


def _parse_think(value: Any) -> bool | str | None:
    """``api.ThinkValue.UnmarshalJSON``."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        if value not in ("high", "medium", "low", "max"):
            raise HTTPError(
                400,
                f"invalid think value: {_go_quote(value)} "
                '(must be "high", "medium", "low", "max", true, or false)',
            )
        return value
    raise HTTPError(
        400, 'think must be a boolean or string ("high", "medium", "low", "max", true, or false)'
    )


def _parse_keep_alive(value: Any) -> float | None:
    """``api.Duration.UnmarshalJSON``: seconds, ``math.inf`` for "forever", None when absent."""
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return math.inf if value < 0 else float(value)
    if isinstance(value, str):
        try:
            ns = parse_go_duration(value)
        except ValueError as exc:
            raise HTTPError(400, str(exc)) from None
        return math.inf if ns < 0 else ns / 1e9
    raise HTTPError(400, f"Unsupported type: '{_go_reflect_type(value)}'")


# Request-time option types (api.Options + api.Runner JSON tags)
_OPTION_TYPES: dict[str, str] = {
    **dict.fromkeys(
        (
            "num_ctx",
            "num_batch",
            "num_gpu",
            "main_gpu",
            "num_thread",
            "draft_num_predict",
            "num_keep",
            "seed",
            "num_predict",
            "top_k",
            "repeat_last_n",
        ),
        "integer",
    ),
    **dict.fromkeys(
        (
            "top_p",
            "min_p",
            "typical_p",
            "temperature",
            "repeat_penalty",
            "presence_penalty",
            "frequency_penalty",
        ),
        "float32",
    ),
    "use_mmap": "boolean",
    "stop": "array",
}


def option_error(options: Mapping[str, Any]) -> str | None:
    """``Options.FromMap``: the first wrongly typed option (unknown keys are ignored)."""
    for key, value in options.items():
        expected = _OPTION_TYPES.get(key)
        if expected is None or value is None:
            continue
        is_number = isinstance(value, int | float) and not isinstance(value, bool)
        ok = {
            "integer": is_number,
            "float32": is_number,
            "boolean": isinstance(value, bool),
            "array": isinstance(value, list),
        }[expected]
        if not ok:
            return f"option {_go_quote(key)} must be of type {expected}"
        if expected == "array" and not all(isinstance(v, str) for v in value):
            return f"option {_go_quote(key)} must be of an array of strings"
    return None


def _format_error(value: Any) -> str | None:
    """The llm server's ``format`` check: "json", a schema object, or ""/null."""
    if value is None or value in ("", "json") or isinstance(value, dict):
        return None
    raw = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return f'invalid format: {_go_quote(raw)}; expected "json" or a valid JSON Schema object'


# --------------------------------------------------------------------------------------------
# Public data classes
# --------------------------------------------------------------------------------------------


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _parameter_count(size: str) -> int:
    match = re.fullmatch(r"([\d.]+)\s*([KMBT]?)", size.strip(), re.IGNORECASE)
    if not match:
        return 0
    scale = {"": 1, "K": 10**3, "M": 10**6, "B": 10**9, "T": 10**12}[match.group(2).upper()]
    return int(float(match.group(1)) * scale)


def _num_predict(options: Mapping[str, Any]) -> int:
    value = options.get("num_predict")
    return int(value) if isinstance(value, int | float) and value > 0 else 0


@dataclass
class FakeModel:
    """An installed model as /api/tags, /api/show and /api/ps describe it."""

    name: str  # canonicalised on creation: "llama3.2" -> "llama3.2:latest"
    family: str = "llama"  # also the GGUF architecture in model_info
    parameter_size: str = "3.2B"
    quantization_level: str = "Q4_K_M"
    context_length: int = 131072
    embedding_length: int = 3072
    capabilities: list[str] = field(default_factory=lambda: ["completion", "tools"])
    parameters: dict[str, Any] = field(default_factory=dict)
    system: str | None = None
    template: str = LLAMA3_TEMPLATE
    license: str | None = None
    messages: list[dict[str, Any]] = field(default_factory=list)
    size: int = 2019393189
    digest: str = ""  # manifest digest, bare 64 hex; derived from the name when empty
    modified_at: str = ""  # local time with offset; "now" when empty
    # Extras (not in the brief): details.families, vision projector metadata, weights layer.
    families: list[str] | None = None  # defaults to [family]
    projector_info: dict[str, Any] | None = None
    weights_digest: str = field(default="", repr=False)
    parallel: int | None = None
    """Generations at once for this model (None: the server's ``parallel``); Ollama forces 1
    for some architectures."""
    flushes_on_done: bool = False
    """The model's output parser holds text back and flushes it on the ``done: true`` chunk."""
    think_tags: bool = False
    """An older reasoning model whose template does not separate thinking (no ``thinking``
    capability): a script's ``thinking`` arrives in the content, between ``<think>`` and
    ``</think>``, whatever ``think`` says (only ``think: true`` is refused, as for any model
    without the capability)."""

    def __post_init__(self) -> None:
        self.name = canonical_name(self.name)
        if not self.digest:
            self.digest = _sha256(f"manifest:{self.name}")
        if not self.modified_at:
            self.modified_at = local_time()
        if self.families is None:
            self.families = [self.family]
        if not self.weights_digest:
            self.weights_digest = _sha256(f"weights:{self.name}")

    @property
    def modified(self) -> datetime:
        return datetime.fromisoformat(self.modified_at.replace("Z", "+00:00"))

    def details(self) -> dict[str, Any]:
        return {
            "parent_model": "",
            "format": "gguf",
            "family": self.family,
            "families": self.families,
            "parameter_size": self.parameter_size,
            "quantization_level": self.quantization_level,
        }

    def model_info(self) -> dict[str, Any]:
        arch = self.family
        return {
            "general.architecture": arch,
            "general.file_type": 15,
            "general.parameter_count": _parameter_count(self.parameter_size),
            "general.quantization_version": 2,
            f"{arch}.attention.head_count": 32,
            f"{arch}.attention.head_count_kv": 8,
            f"{arch}.block_count": 28,
            f"{arch}.context_length": self.context_length,
            f"{arch}.embedding_length": self.embedding_length,
            f"{arch}.rope.freq_base": 500000,
            f"{arch}.vocab_size": 128256,
            "tokenizer.ggml.model": "gpt2",
            "tokenizer.ggml.merges": None,
            "tokenizer.ggml.token_type": None,
            "tokenizer.ggml.tokens": None,
        }

    def parameters_text(self) -> str:
        """``parameters`` of /api/show: key padded to 30 columns, Go %#v value, lists repeated."""
        lines: list[str] = []
        for key, value in self.parameters.items():
            for item in value if isinstance(value, list) else [value]:
                lines.append(f"{key:<30} {_go_sharp_v(item)}")
        return "\n".join(lines)

    def modelfile(self) -> str:
        lines = [
            '# Modelfile generated by "ollama show"',
            "# To build a new Modelfile based on this, replace FROM with:",
            f"# FROM {self.name}",
            "",
            f"FROM /root/.ollama/models/blobs/sha256-{self.weights_digest}",
            f'TEMPLATE """{self.template}"""',
        ]
        if self.system:
            lines.append(f'SYSTEM """{self.system}"""')
        for key, value in self.parameters.items():
            for item in value if isinstance(value, list) else [value]:
                lines.append(f"PARAMETER {key} {item if isinstance(item, str) else go_json(item)}")
        if self.license:
            lines.append(f'LICENSE """{self.license}"""')
        lines.extend(f"MESSAGE {m.get('role')} {m.get('content', '')}" for m in self.messages)
        return "\n".join(lines) + "\n"

    def layers(self) -> list[tuple[str, int]]:
        """(digest, size) of each blob, the weights first; used by create/pull status lines."""
        small: list[str] = [self.template]
        small += [self.license] if self.license else []
        small += [self.system] if self.system else []
        small += [go_json(self.parameters)] if self.parameters else []
        small += [go_json(self.messages)] if self.messages else []
        if self.projector_info:
            small.append(go_json(self.projector_info))
        blobs = [(f"sha256:{_sha256(text)}", len(text.encode())) for text in small]
        weights = max(1, self.size - sum(size for _, size in blobs))
        return [(f"sha256:{self.weights_digest}", weights), *blobs]


@dataclass
class Script:
    """How the next generation answers (queued with ``FakeOllama.script``)."""

    reply: str | list[str] = DEFAULT_REPLY  # a str is split with tokenize(); a list is the tokens
    thinking: str | list[str] | None = None  # only on thinking models with think not false
    first_token_delay: float = 0.0
    token_interval: float = 0.0
    error_after: int | None = None  # after N content chunks: {"error": ...} line, status 200
    error_message: str = MID_STREAM_ERROR
    status: int | None = None  # answer up front with this status and {"error": error_message}
    die_after: int | None = None  # after N chunks (any kind) abort the TCP connection
    done_reason: str = "stop"
    eval_tokens_per_second: float | None = None
    model: str | None = None  # only consumed by requests for this model (None = any)
    # Seconds between the last line and the end of the body. Ollama's handler returns after
    # its last flushed line and net/http then ends the chunked body in a write of its own, so a
    # client that stops at the last line may close the response before the end has arrived.
    end_delay: float = 0.0
    # Extra: tool calls emitted in one chunk after the content (only when the request had tools),
    # e.g. [{"function": {"name": "get_weather", "arguments": {"city": "Tokyo"}}}].
    tool_calls: list[dict[str, Any]] | None = None
    # Text that arrives in the final done:true chunk (after every other piece), as Ollama's
    # output parsers flush held-back text there. None: the double decides (see FakeOllama's
    # ``final_chunk_text`` and FakeModel.flushes_on_done); "" never puts text there.
    final_text: str | None = None

    def content_tokens(self) -> list[str]:
        return tokenize(self.reply) if isinstance(self.reply, str) else list(self.reply)

    def thinking_tokens(self) -> list[str]:
        if self.thinking is None:
            return []
        return tokenize(self.thinking) if isinstance(self.thinking, str) else list(self.thinking)


@dataclass
class RecordedRequest:
    """One request as the fake saw it; ``status`` is 0 until answered (or if never answered)."""

    method: str
    path: str
    t: float
    status: int
    headers: dict[str, str]
    raw: bytes = field(default=b"", repr=False)
    """The body as received."""
    sent: list[float] = field(default_factory=list)
    """time.monotonic() at which each streamed line was written (for benchmarks)."""
    client: str = ""
    """The client's end of the TCP connection ("host:port"): which requests shared one."""
    num_ctx: int | None = None
    """Generations: the context window the model ran with."""
    prompt_messages: list[dict[str, Any]] | None = None
    """Chat: the messages the model saw (the model's own MESSAGEs and SYSTEM added, the oldest
    dropped to fit ``num_ctx``)."""
    dropped: int = 0
    """Chat: how many messages were dropped to fit the window."""
    prompt_eval_count: int | None = None
    """Generations: the prompt tokens evaluated (at most ``num_ctx``)."""
    reloaded: bool = False
    """The model was (re)loaded for this request: not loaded, or loaded with another num_ctx."""
    metrics: dict[str, int] | None = None
    """Generations: the final chunk's metrics as sent (total_duration, eval_count, ...)."""

    @functools.cached_property
    def json(self) -> Any:
        """The JSON body, None without one or when it is not JSON; decoded when first read (a
        bench records thousands of long conversations and reads few of them)."""
        if not self.raw:
            return None
        try:
            return json.loads(self.raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None


@dataclass
class PullableModel:
    """A model that /api/pull can fetch from the fake registry."""

    model: FakeModel
    layers: list[tuple[str, int]] | None = None  # (digest "sha256:<hex>", bytes); default: blobs
    bytes_per_second: float | None = None  # None: each layer completes in one progress line
    progress_interval: float = 0.01  # seconds between progress lines when rate-limited

    def layer_list(self) -> list[tuple[str, int]]:
        return self.layers if self.layers is not None else self.model.layers()


def default_models() -> list[FakeModel]:
    """llama3.2 (tools), llava (vision), qwen3 (tools, thinking) and nomic-embed-text
    (embedding), newest first."""
    now = datetime.now(UTC)
    return [
        FakeModel(
            name="llama3.2:latest",
            parameters={"stop": ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]},
            license="LLAMA 3.2 COMMUNITY LICENSE AGREEMENT\nLlama 3.2 Version Release Date: "
            "September 25, 2024",
            digest="a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72",
            modified_at=local_time(now - timedelta(hours=1)),
        ),
        FakeModel(
            name="llava:latest",
            parameter_size="7B",
            quantization_level="Q4_0",
            context_length=32768,
            embedding_length=4096,
            capabilities=["completion", "vision"],
            parameters={"stop": ["[INST]", "[/INST]"]},
            template=LLAVA_TEMPLATE,
            license="Apache License\nVersion 2.0, January 2004",
            size=4733363377,
            digest="8dd30f6b0cb19f555f2c7a7ebda861449ea2cc76bf1f44e262931f45fc81d081",
            modified_at=local_time(now - timedelta(days=1)),
            families=["llama", "clip"],
            projector_info={
                "clip.has_text_encoder": False,
                "clip.has_vision_encoder": True,
                "clip.projector_type": "mlp",
                "clip.vision.block_count": 23,
                "clip.vision.embedding_length": 1024,
                "clip.vision.image_size": 336,
                "clip.vision.patch_size": 14,
                "general.architecture": "clip",
            },
        ),
        FakeModel(
            name="qwen3:latest",
            family="qwen3",
            parameter_size="8.2B",
            context_length=40960,
            embedding_length=4096,
            capabilities=["completion", "tools", "thinking"],
            parameters={
                "repeat_penalty": 1,
                "stop": ["<|im_start|>", "<|im_end|>"],
                "temperature": 0.6,
                "top_k": 20,
                "top_p": 0.95,
            },
            template=QWEN3_TEMPLATE,
            license="Apache License\nVersion 2.0, January 2004",
            size=5225388164,
            digest="500a1f067a9f782620b40bee6f7b0c89e17ae61f686b92c24933e4ca4b2b8b41",
            modified_at=local_time(now - timedelta(days=2)),
            flushes_on_done=True,
        ),
        FakeModel(
            name="nomic-embed-text:latest",
            family="nomic-bert",
            parameter_size="137M",
            quantization_level="F16",
            context_length=2048,
            embedding_length=768,
            capabilities=["embedding"],
            template="{{ .Prompt }}",
            license="Apache License\nVersion 2.0, January 2004",
            size=274302450,
            digest="0a109f422b47e3a30ba2b10eca18548e944e8a23073ee3f3e947efcf3c45e59f",
            modified_at=local_time(now - timedelta(days=3)),
        ),
    ]


def gpt_oss_model() -> FakeModel:
    """gpt-oss: a thinking model that reasons in levels (low/medium/high); `think: true/false`
    is accepted and ignored (it thinks anyway)."""
    return FakeModel(
        name="gpt-oss:20b",
        family="gptoss",
        parameter_size="20.9B",
        quantization_level="MXFP4",
        context_length=131072,
        embedding_length=2880,
        capabilities=["completion", "tools", "thinking"],
        size=13780173839,
    )


def think_tags_model() -> FakeModel:
    """An older reasoning model (deepseek-r1 before Ollama parsed its thinking): no `thinking`
    capability, and its reasoning in the content between `<think>` tags."""
    return FakeModel(
        name="deepseek-r1:7b",
        family="qwen2",
        parameter_size="7.6B",
        context_length=131072,
        embedding_length=3584,
        capabilities=["completion"],
        size=4683075271,
        think_tags=True,
    )


# --------------------------------------------------------------------------------------------
# Responses
# --------------------------------------------------------------------------------------------

JSON_CONTENT_TYPE = "application/json; charset=utf-8"


def json_response(
    obj: Any, status: int = 200, content_type: str = JSON_CONTENT_TYPE
) -> web.Response:
    """gin ``c.JSON``: one object, no trailing newline."""
    return web.Response(
        status=status, body=go_json(obj).encode(), headers={"Content-Type": content_type}
    )


def _text_response(text: str, status: int, content_type: str) -> web.Response:
    return web.Response(status=status, body=text.encode(), headers={"Content-Type": content_type})


class _StreamError(Exception):
    """An error item in a progress/generation stream."""

    def __init__(self, message: str, status: int = 500) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class _NdjsonStream:
    """gin ``streamResponse``: headers go out with the first line; errors before it are plain."""

    def __init__(
        self,
        request: web.Request,
        record: RecordedRequest,
        check: Callable[[Any], None] | None = None,
    ) -> None:
        self.request = request
        self.record = record
        self.response: web.StreamResponse | None = None
        self.check = check  # validates each line against the response schema

    async def send(self, obj: Any) -> None:
        if self.response is None:
            response = web.StreamResponse(
                status=200, headers={"Content-Type": "application/x-ndjson"}
            )
            response.enable_chunked_encoding()
            await response.prepare(self.request)
            self.record.status = 200
            self.response = response
        if self.check is not None:
            self.check(obj)
        await self.response.write((go_json(obj) + "\n").encode())
        self.record.sent.append(time.monotonic())

    async def finish(self) -> web.StreamResponse:
        assert self.response is not None
        await self.response.write_eof()
        return self.response

    async def fail(self, message: str, status: int = 500) -> web.StreamResponse:
        if self.response is None:  # nothing written yet: a normal HTTP error
            return json_response({"error": message}, status, content_type="application/json")
        await self.send({"error": message})
        return await self.finish()


RECORD_KEY = web.RequestKey("fake_ollama_record", RecordedRequest)
ABORTED_KEY = web.RequestKey("fake_ollama_aborted", bool)


@dataclass
class _Loaded:
    keep_alive: float  # seconds; math.inf = forever
    expires: datetime
    context_length: int
    size_vram: int = 0
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once the load is done: /api/ps lists only loaded runners, and a request for a model
    that is loading waits for it."""


@dataclass
class _Runner:
    """A model's generation slots and the FIFO line of requests waiting for one."""

    active: int = 0
    num_ctx: int = 0  # the window the running generations use
    waiting: deque[tuple[asyncio.Future[None], int]] = field(default_factory=deque)


# The response schema of each path, by (path, streamed); errors use ErrorResponse.
_RESPONSE_SCHEMAS: dict[tuple[str, bool], str] = {
    ("/api/chat", False): "ChatResponse",
    ("/api/chat", True): "ChatStreamEvent",
    ("/api/generate", False): "GenerateResponse",
    ("/api/generate", True): "GenerateStreamEvent",
    ("/api/tags", False): "ListResponse",
    ("/api/ps", False): "PsResponse",
    ("/api/show", False): "ShowResponse",
    ("/api/version", False): "VersionResponse",
    ("/api/create", False): "StatusResponse",
    ("/api/create", True): "StatusEvent",
    ("/api/pull", False): "StatusResponse",
    ("/api/pull", True): "StatusEvent",
    ("/api/embed", False): "EmbedResponse",
}

EMBED_NOT_SUPPORTED = "this model does not support embeddings"
EMBED_TOO_LONG = "the input length exceeds the context length"
_WORD = re.compile(r"[a-z0-9]+")


@functools.lru_cache(maxsize=65536)
def _feature(feature: str, dims: int) -> tuple[int, float]:
    """Where a feature lands in the vector, and its sign (a stable hash, not Python's)."""
    digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
    value = int.from_bytes(digest, "little")
    return value % dims, (1.0 if (value >> 63) & 1 else -1.0)


def embed_text(text: str, dims: int = 768) -> list[float]:
    """A deterministic embedding that makes similar texts near: each word (lowercased, a plural
    "s" dropped) adds 1 at its hashed place, each of its character trigrams 0.3; then L2
    normalised. Texts that share words have a high cosine similarity; unrelated ones near 0."""
    vector = [0.0] * dims
    for word in _WORD.findall(text.lower()):
        if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
            word = word[:-1]
        index, sign = _feature("w:" + word, dims)
        vector[index] += sign
        padded = f"^{word}$"
        for i in range(len(padded) - 2):
            index, sign = _feature("t:" + padded[i : i + 3], dims)
            vector[index] += 0.3 * sign
    return _normalised(vector)


def _normalised(vector: list[float]) -> list[float]:
    norm = math.sqrt(sum(v * v for v in vector))
    if norm == 0:  # an empty text: a fixed unit vector (models never answer zeros either)
        return [1.0] + [0.0] * (len(vector) - 1)
    return [v / norm for v in vector]


@functools.cache
def _response_validator(schema_name: str) -> jsonschema.protocols.Validator:
    """A validator of one response schema, its ``$ref``s resolved within the spec."""
    spec = openapi_spec()
    schema = {"$ref": f"#/components/schemas/{schema_name}", "components": spec["components"]}
    validator: jsonschema.protocols.Validator = jsonschema.Draft202012Validator(schema)
    return validator


# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------


class FakeOllama:
    """An in-process Ollama server. ``await start()``, use ``url``, ``await close()``."""

    def __init__(
        self,
        *,
        version: str = "0.12.6",
        models: list[FakeModel] | None = None,
        validate_schemas: bool = True,
        context_length: int = DEFAULT_NUM_CTX,
        parallel: int = DEFAULT_NUM_PARALLEL,
        max_queue: int = DEFAULT_MAX_QUEUE,
        final_chunk_text: bool = False,
        load_delay: float = 0.0,
        gpu_memory: int | None = None,
        max_loaded_models: int | None = None,
    ) -> None:
        """``validate_schemas=False`` skips the OpenAPI checks of chat and generate requests and
        of all responses (milliseconds each, which bench/ must not count as the bot's time).
        ``context_length``, ``parallel`` and ``max_queue`` are the server's
        OLLAMA_CONTEXT_LENGTH, OLLAMA_NUM_PARALLEL and OLLAMA_MAX_QUEUE; ``final_chunk_text``
        makes every unscripted reply end with text in its done:true chunk.

        ``load_delay``: seconds a model that is not loaded takes to load, before its first token
        (reported as ``load_duration``; the model shows in /api/ps once loaded).
        ``gpu_memory``: bytes of GPU memory (None: every model fits); a model that does not fit
        beside the loaded ones evicts idle ones first (the soonest to expire), then runs partly
        on the CPU (``size_vram`` < ``size``). ``max_loaded_models`` (OLLAMA_MAX_LOADED_MODELS;
        None: no limit) evicts the same way. A model in use is never evicted (the double then
        loads beyond the limits, where Ollama would wait)."""
        self.load_delay = load_delay
        self.gpu_memory = gpu_memory
        self.max_loaded_models = max_loaded_models
        self.evictions = 0
        """Models unloaded to make room for another."""
        self.validate_schemas = validate_schemas
        self.context_length = context_length
        self.parallel = parallel
        self.max_queue = max_queue
        self.final_chunk_text = final_chunk_text
        self.delays: dict[str, float] = {}
        """Seconds to wait before answering a path, e.g. ``delays["/api/tags"] = 3.0``."""
        self.server_errors: list[str] = []
        """Bugs of the double itself (a response that breaks the OpenAPI schema); fixtures
        assert that this stays empty."""
        self.loads = 0
        """Generations that had to load their model (cold, or reloaded for another num_ctx)."""
        self.reloads = 0
        """Of those, loads of a model that was loaded with another num_ctx."""
        self.max_queued = 0
        """The most generations that waited for a slot at the same time."""
        for schema in ("ChatRequest", "GenerateRequest"):  # fail here if the spec file is missing
            _decode_validator(schema)
        self.version = version
        self.models: dict[str, FakeModel] = {}
        for model in default_models() if models is None else models:
            self.add_model(model)
        # the fake registry for /api/pull (and create from a model that is not local)
        self.registry: dict[str, PullableModel] = {
            name: PullableModel(copy.deepcopy(model)) for name, model in self.models.items()
        }
        self.busy = False
        self.down = False
        self.create_stall = 0.0
        """Seconds /api/create goes quiet after its first status line (a server that hangs
        while creating, as one does on a slow disk), for stall timeouts."""
        # /api/tags entries carry `capabilities` only since Ollama 0.30; False answers like the
        # older servers do (clients then read them from /api/show).
        self.tags_capabilities = True
        self.requests: list[RecordedRequest] = []
        self.active_generations = 0
        self.max_active_generations = 0
        """The most generations that ran at the same time."""
        self.cancelled = 0
        self.url = ""
        self._scripts: list[Script] = []
        self._loaded: dict[str, _Loaded] = {}
        self._runners: dict[str, _Runner] = {}
        self._queued = 0
        self._blobs: set[str] = {d for m in self.models.values() for d, _ in m.layers()}
        self._runner: web.AppRunner | None = None
        self._port = 0
        self._closing = False
        self._tool_call_counter = 0

    # ---- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen on 127.0.0.1 (a free port; the same port again after a close())."""
        app = web.Application(middlewares=[self._middleware], client_max_size=2**31)
        app.router.add_get("/", self._root)
        app.router.add_get("/api/version", self._version)
        app.router.add_get("/api/tags", self._tags)
        app.router.add_get("/api/ps", self._ps, allow_head=False)
        app.router.add_post("/api/show", self._show)
        app.router.add_post("/api/chat", self._chat)
        app.router.add_post("/api/generate", self._generate)
        app.router.add_post("/api/create", self._create)
        app.router.add_post("/api/pull", self._pull)
        app.router.add_delete("/api/delete", self._delete)
        app.router.add_post("/api/copy", self._copy)
        app.router.add_post("/api/embed", self._embed)
        runner = web.AppRunner(
            app, handler_cancellation=True, shutdown_timeout=0.2, access_log=None
        )
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self._port)
        await site.start()
        self._port = runner.addresses[0][1]
        self._runner = runner
        self._closing = False
        self.url = f"http://127.0.0.1:{self._port}"

    async def close(self) -> None:
        """Stop listening and drop all connections (clients then get "connection refused")."""
        if self._runner is not None:
            self._closing = True
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> FakeOllama:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # ---- test controls ---------------------------------------------------------------------

    def add_model(self, model: FakeModel) -> None:
        """Install (or replace, matching names case-insensitively) a model."""
        existing = self._lookup(model.name)
        if existing is not None:
            del self.models[existing.name]
        self.models[model.name] = model

    def remove_model(self, name: str) -> None:
        found = self._lookup(name)
        if found is None:
            raise KeyError(name)
        del self.models[found.name]
        self._loaded.pop(found.name, None)

    def add_pullable(
        self,
        model: FakeModel,
        *,
        layers: list[tuple[str, int]] | None = None,
        bytes_per_second: float | None = None,
        progress_interval: float = 0.01,
    ) -> None:
        """Make ``model`` available to /api/pull (and to /api/create ``from``)."""
        self.registry[model.name] = PullableModel(
            model, layers, bytes_per_second, progress_interval
        )

    def script(self, *scripts: Script) -> None:
        """Queue answers (FIFO); unscripted requests get ``Script()``."""
        self._scripts.extend(scripts)

    def chat_requests(self) -> list[dict[str, Any]]:
        """JSON bodies of POST /api/chat requests (decodable ones), in arrival order."""
        return [
            r.json
            for r in self.requests
            if r.method == "POST" and r.path == "/api/chat" and isinstance(r.json, dict)
        ]

    def chat_images(self) -> list[list[str]]:
        """The images each /api/chat request carried (base64 strings exactly as received, all
        messages in order), so tests can see which images were sent, and sent again."""
        return [
            [
                image
                for message in body.get("messages") or []
                if isinstance(message, dict)
                for image in message.get("images") or []
            ]
            for body in self.chat_requests()
        ]

    @property
    def queued(self) -> int:
        """Generations waiting for a slot now (see ``parallel``)."""
        return self._queued

    def chat_records(self) -> list[RecordedRequest]:
        """The records of POST /api/chat requests, in arrival order (``prompt_messages`` says
        what the model saw)."""
        return [r for r in self.requests if r.method == "POST" and r.path == "/api/chat"]

    async def wait_until(
        self,
        predicate: Callable[[], bool | Awaitable[bool]],
        timeout: float = 5.0,
    ) -> None:
        """Poll ``predicate`` (sync or async) until true; TimeoutError after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            result = predicate()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return
            if time.monotonic() >= deadline:
                raise TimeoutError(f"condition not met within {timeout} s")
            await asyncio.sleep(0.005)

    # ---- internals: lookup, scripts, load state -------------------------------------------

    def _lookup(self, name: str) -> FakeModel | None:
        parsed = parse_model_name(name)
        if parsed is None:
            return None
        for model in self.models.values():
            other = parse_model_name(model.name)
            if other is not None and other.key == parsed.key:
                return model
        return None

    def _take_script(self, model: FakeModel) -> Script:
        for index, script in enumerate(self._scripts):
            if script.model is None or self._lookup(script.model) is model:
                return self._scripts.pop(index)
        return Script()

    def _num_ctx(self, model: FakeModel, options: Mapping[str, Any]) -> int:
        """The window: the request's, else the model's parameter, else the server default;
        never above the model's trained context, never below 4 (llm/server.go)."""
        requested = options.get("num_ctx") or model.parameters.get("num_ctx") or self.context_length
        return max(4, min(int(requested), model.context_length))

    def _load(self, model: FakeModel, keep_alive: float | None, num_ctx: int) -> bool:
        """Mark the model loaded; True when it had to be loaded: it was not loaded, or it was
        loaded with another num_ctx (Ollama then reloads it)."""
        previous = self._loaded.get(model.name)
        now = datetime.now(UTC)
        if previous is not None and previous.expires <= now:
            previous = None
        if previous is not None and previous.context_length != num_ctx:
            self.reloads += 1
            keep_alive = keep_alive if keep_alive is not None else previous.keep_alive
            previous = None
        keep = (
            keep_alive
            if keep_alive is not None
            else (previous.keep_alive if previous else DEFAULT_KEEP_ALIVE)
        )
        if previous is not None:
            previous.keep_alive = keep
            previous.expires = self._expiry(keep)
            return False
        self._loaded.pop(model.name, None)
        size_vram = self._make_room(model, now)
        loaded = _Loaded(keep, self._expiry(keep), num_ctx, size_vram)
        if not self.load_delay:
            loaded.ready.set()
        self._loaded[model.name] = loaded
        return True

    def _make_room(self, model: FakeModel, now: datetime) -> int:
        """Evict idle models (the soonest to expire first) while the new one would pass
        ``max_loaded_models`` or not fit in ``gpu_memory``; its bytes in GPU memory."""
        others = {n: s for n, s in self._loaded.items() if s.expires > now}
        for name in [n for n in self._loaded if n not in others]:
            del self._loaded[name]  # expired: unloaded already

        def idle(name: str) -> bool:
            runner = self._runners.get(name)
            return runner is None or runner.active == 0

        while True:
            used = sum(s.size_vram for s in others.values())
            crowded = self.max_loaded_models is not None and len(others) >= self.max_loaded_models
            short = self.gpu_memory is not None and self.gpu_memory - used < model.size
            victims = [n for n in others if idle(n)]
            if not (crowded or short) or not victims:
                break
            victim = min(victims, key=lambda n: others[n].expires)
            del others[victim]
            del self._loaded[victim]
            self.evictions += 1
        if self.gpu_memory is None:
            return model.size
        return max(0, min(model.size, self.gpu_memory - used))

    async def _until_loaded(self, model: FakeModel, cold: bool) -> int:
        """Wait for the model's load (``load_delay`` for the request that started it, the rest
        of it for any other); the load's duration in ns as Ollama reports it."""
        loaded = self._loaded.get(model.name)
        if loaded is None or loaded.ready.is_set():
            return 2_000_000 if cold else 100_000  # a (re)load takes longer than a warm start
        if not cold:
            started = time.monotonic()
            await loaded.ready.wait()
            return max(100_000, int((time.monotonic() - started) * 1e9))
        try:
            await asyncio.sleep(self.load_delay)
        finally:
            loaded.ready.set()
        return int(self.load_delay * 1e9)

    def loaded_models(self) -> list[str]:
        """The models /api/ps lists now."""
        now = datetime.now(UTC)
        return [n for n, s in self._loaded.items() if s.expires > now and s.ready.is_set()]

    async def _acquire(self, model: FakeModel, num_ctx: int) -> None:
        """Wait for one of the model's generation slots, in arrival order. A request for
        another window waits until the model is idle (it is then reloaded). 503 when
        ``max_queue`` requests wait already."""
        runner = self._runners.setdefault(model.name, _Runner())
        slots = model.parallel or self.parallel
        if not runner.waiting and (
            runner.active == 0 or (runner.active < slots and runner.num_ctx == num_ctx)
        ):
            runner.active += 1
            runner.num_ctx = num_ctx
            return
        if self._queued >= self.max_queue:
            raise HTTPError(503, BUSY_MESSAGE)
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        runner.waiting.append((turn, num_ctx))
        self._queued += 1
        self.max_queued = max(self.max_queued, self._queued)
        try:
            await turn
        except BaseException:
            if turn.done() and not turn.cancelled():
                self._free_slot(model)  # the slot was handed over just as the client left
            elif (turn, num_ctx) in runner.waiting:
                runner.waiting.remove((turn, num_ctx))
            if not self._closing:
                self.cancelled += 1
            raise
        finally:
            self._queued -= 1

    def _free_slot(self, model: FakeModel) -> None:
        """A generation ended: hand its slot to the next in line (and more, while they fit)."""
        runner = self._runners.get(model.name)
        if runner is None:
            return
        runner.active -= 1
        slots = model.parallel or self.parallel
        while runner.waiting:
            turn, num_ctx = runner.waiting[0]
            if turn.done():  # its client left (cancelled), not yet out of the line
                runner.waiting.popleft()
                continue
            if runner.active and (runner.active >= slots or num_ctx != runner.num_ctx):
                break
            runner.waiting.popleft()
            runner.active += 1
            runner.num_ctx = num_ctx
            turn.set_result(None)

    def _release(self, model: FakeModel) -> None:
        """The request ended: once the model is idle, restart the keep-alive timer, or unload
        it for keep_alive 0."""
        loaded = self._loaded.get(model.name)
        if loaded is None:
            return
        runner = self._runners.get(model.name)
        if runner is not None and runner.active:
            return  # the timer starts when the model goes idle
        if loaded.keep_alive == 0:
            del self._loaded[model.name]
        else:
            loaded.expires = self._expiry(loaded.keep_alive)

    @staticmethod
    def _expiry(keep_alive: float) -> datetime:
        if math.isinf(keep_alive):  # Go: now + math.MaxInt64 ns (~292 years)
            return datetime.now(UTC) + timedelta(microseconds=(2**63 - 1) // 1000)
        return datetime.now(UTC) + timedelta(seconds=keep_alive)

    # ---- middleware and trivial routes -----------------------------------------------------

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        record = RecordedRequest(
            method=request.method,
            path=request.path,
            t=time.monotonic(),
            status=0,
            headers=dict(request.headers),
        )
        peer = request.transport.get_extra_info("peername") if request.transport else None
        if peer:
            record.client = f"{peer[0]}:{peer[1]}"
        self.requests.append(record)
        request[RECORD_KEY] = record
        record.raw = await request.read()
        if self.down:
            self._abort(request)
        if delay := self.delays.get(request.path):
            await asyncio.sleep(delay)
        try:
            response = await handler(request)
        except web.HTTPNotFound:
            response = _text_response("404 page not found", 404, "text/plain")
        except web.HTTPMethodNotAllowed:
            response = _text_response("405 method not allowed", 405, "text/plain")
        except HTTPError as exc:
            response = json_response({"error": exc.message}, exc.status)
        if not record.status:
            record.status = response.status
        if (
            self.validate_schemas
            and isinstance(response, web.Response)
            and response.content_type == "application/json"
            and isinstance(response.body, bytes)
        ):
            self._check_response(request.path, response.status, json.loads(response.body))
        return response

    def _check_response(self, path: str, status: int, obj: Any, *, streamed: bool = False) -> None:
        """Check one answer (a JSON body or an NDJSON line) against the OpenAPI response
        schema; a mismatch is a bug in the double, kept in ``server_errors``."""
        is_error = status != 200 or (isinstance(obj, dict) and "error" in obj)
        name = "ErrorResponse" if is_error else _RESPONSE_SCHEMAS.get((path, streamed))
        if name is None:
            self.server_errors.append(f"{path}: no response schema for {go_json(obj)[:200]}")
            return
        if is_error and (not isinstance(obj, dict) or set(obj) != {"error"}):
            self.server_errors.append(f"{path}: an error body other than {{error}}: {obj!r}")
        for error in _response_validator(name).iter_errors(obj):
            where = "/".join(str(p) for p in error.absolute_path)
            self.server_errors.append(
                f"{path}: the answer breaks {name} at {where or '(root)'}: {error.message}"
            )

    def _line_check(self, request: web.Request) -> Callable[[Any], None] | None:
        """The check of each NDJSON line of this request's stream (None when not validating)."""
        if not self.validate_schemas:
            return None
        return functools.partial(self._check_response, request.path, 200, streamed=True)

    @staticmethod
    def _abort(request: web.Request) -> None:
        """Drop the TCP connection without an answer, like a crashed server.

        Raises CancelledError, which aiohttp treats as a (quiet) premature disconnect.
        """
        request[ABORTED_KEY] = True
        if request.transport is not None:
            request.transport.abort()
        raise asyncio.CancelledError

    async def _root(self, request: web.Request) -> web.Response:
        return _text_response("Ollama is running", 200, "text/plain; charset=utf-8")

    async def _version(self, request: web.Request) -> web.Response:
        return json_response({"version": self.version})

    async def _tags(self, request: web.Request) -> web.Response:
        models = sorted(self.models.values(), key=lambda m: m.modified, reverse=True)
        return json_response(
            {
                "models": [
                    {
                        "name": m.name,
                        "model": m.name,
                        "modified_at": m.modified_at,
                        "size": m.size,
                        "digest": m.digest,
                        "details": m.details(),
                        **(
                            {"capabilities": list(m.capabilities)} if self.tags_capabilities else {}
                        ),
                    }
                    for m in models
                ]
            }
        )

    async def _ps(self, request: web.Request) -> web.Response:
        now = datetime.now(UTC)
        running = [
            (self.models[name], state)
            for name, state in self._loaded.items()
            if state.expires > now and name in self.models and state.ready.is_set()
        ]
        running.sort(key=lambda item: item[1].expires, reverse=True)
        return json_response(
            {
                "models": [
                    {
                        "name": m.name,
                        "model": m.name,
                        "size": m.size,
                        "digest": m.digest,
                        "details": m.details(),
                        "expires_at": local_time(state.expires),
                        "size_vram": state.size_vram,
                        "context_length": state.context_length,
                    }
                    for m, state in running
                ]
            }
        )

    async def _show(self, request: web.Request) -> web.Response:
        body = decode_body(await request.read(), "api.ShowRequest")
        _check_fields(
            body, "ShowRequest", {"model": "string", "name": "string", "system": "string"}
        )
        name = body.get("model") or body.get("name") or ""
        if not name:
            raise HTTPError(400, "model is required")
        model = self._lookup(name)
        if model is None:
            raise HTTPError(404, f"model '{name}' not found")
        out: dict[str, Any] = {}
        if model.license:
            out["license"] = model.license
        out["modelfile"] = model.modelfile()
        if model.parameters:
            out["parameters"] = model.parameters_text()
        out["template"] = model.template
        system = body.get("system") or model.system
        if system:
            out["system"] = system
        out["details"] = model.details()
        if model.messages:
            out["messages"] = copy.deepcopy(model.messages)
        out["model_info"] = model.model_info()
        if model.projector_info:
            out["projector_info"] = copy.deepcopy(model.projector_info)
        out["capabilities"] = list(model.capabilities)
        out["modified_at"] = model.modified_at
        return json_response(out)

    async def _embed(self, request: web.Request) -> web.Response:
        """``EmbedHandler``: every input embedded, in order, in one answer (never streamed)."""
        body = decode_body(await request.read(), "api.EmbedRequest")
        _check_fields(
            body,
            "EmbedRequest",
            {"model": "string", "truncate": "bool", "options": "map[string]interface {}"},
        )
        dimensions = body.get("dimensions")
        if dimensions is not None and (
            isinstance(dimensions, bool) or not isinstance(dimensions, int)
        ):
            raise HTTPError(
                400,
                f"json: cannot unmarshal {_json_kind(dimensions)} into Go struct field "
                "EmbedRequest.dimensions of type int",
            )
        name: str = body.get("model") or ""
        if not name:
            raise HTTPError(404, "model '' not found")
        if parse_model_name(name) is None:
            raise HTTPError(400, "invalid model name")
        raw_input = body.get("input")
        if raw_input is None or raw_input == "":
            inputs: list[str] = []
        elif isinstance(raw_input, str):
            inputs = [raw_input]
        elif isinstance(raw_input, list):
            if any(not isinstance(item, str) for item in raw_input):
                raise HTTPError(400, "invalid input type")
            inputs = list(raw_input)
        else:
            raise HTTPError(400, "invalid input type")
        model = self._lookup(name)
        if model is None:
            raise HTTPError(404, f"model {_go_quote(name)} not found, try pulling it first")
        options: dict[str, Any] = body.get("options") or {}
        keep_alive = _parse_keep_alive(body.get("keep_alive"))
        num_ctx = self._num_ctx(model, options)
        self._load(model, keep_alive, num_ctx)
        self._release(model)
        if not inputs:
            return json_response({"model": name, "embeddings": []})
        if "embedding" not in model.capabilities:
            raise HTTPError(400, EMBED_NOT_SUPPORTED)
        truncate = body.get("truncate")
        embeddings: list[list[float]] = []
        tokens = 0
        for text in inputs:
            count = len(text) // 4
            if count > num_ctx:
                if truncate is False:
                    raise HTTPError(400, EMBED_TOO_LONG)
                text, count = text[: num_ctx * 4], num_ctx
            tokens += count
            vector = embed_text(text, model.embedding_length)
            if dimensions and 0 < dimensions < len(vector):
                vector = _normalised(vector[:dimensions])
            embeddings.append(vector)
        record = request[RECORD_KEY]
        record.prompt_eval_count = tokens
        return json_response(
            {
                "model": name,
                "embeddings": embeddings,
                "total_duration": 1_000_000 + 10_000 * tokens,
                "load_duration": 500_000,
                "prompt_eval_count": tokens,
            }
        )

    # ---- inference ---------------------------------------------------------------------------

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = decode_body(await request.read(), "api.ChatRequest")
        think = _parse_think(body.get("think"))
        keep_alive = _parse_keep_alive(body.get("keep_alive"))
        if self.validate_schemas and (message := type_error(body, "ChatRequest", "ChatRequest")):
            raise HTTPError(400, message)
        # Go decodes null into zero values: a null message is an empty one, a null image is empty
        messages: list[dict[str, Any]] = [m or {} for m in body.get("messages") or []]
        images = [img for m in messages for img in (m.get("images") or []) if img is not None]
        for image in images:
            if message := base64_error(image):
                raise HTTPError(400, message)

        name: str = body.get("model") or ""
        if not name:
            raise HTTPError(400, "model is required")
        parsed = parse_model_name(name)
        if parsed is None:
            raise HTTPError(400, "invalid model name")
        model = self._lookup(name)
        if model is None:
            raise HTTPError(404, self._chat_not_found(name))
        if not messages and keep_alive == 0:
            self._loaded.pop(model.name, None)
            return self._load_response(name, "unload", chat=True)
        thinking_on = self._check_capabilities(
            model, parsed, name, think, tools=bool(body.get("tools")), verb="chat"
        )
        options: dict[str, Any] = body.get("options") or {}
        self._check_options(model, options)
        if self.busy:
            raise HTTPError(503, BUSY_MESSAGE)
        num_ctx = self._num_ctx(model, options)
        if not messages:
            await self._until_loaded(model, self._load(model, keep_alive, num_ctx))
            self._release(model)
            return self._load_response(name, "load", chat=True)

        # routes.go: the model's SYSTEM first (unless the request starts with a system
        # message), then its Modelfile MESSAGEs, then the request's
        effective = [*copy.deepcopy(model.messages), *messages]
        if model.system and messages[0].get("role") != "system":
            effective.insert(0, {"role": "system", "content": model.system})
        kept, prompt_tokens = self._fit(model, effective, num_ctx)
        record = request[RECORD_KEY]
        record.prompt_messages = kept
        record.dropped = len(effective) - len(kept)
        return await self._run(
            request,
            model=model,
            echo=name,
            chat=True,
            stream=body.get("stream") is not False,
            thinking_on=thinking_on,
            has_tools=bool(body.get("tools")),
            format_value=body.get("format"),
            has_images=bool(images),
            prompt_tokens=prompt_tokens,
            num_ctx=num_ctx,
            keep_alive=keep_alive,
            num_predict=_num_predict(options),
        )

    def _chat_not_found(self, name: str) -> str:
        """/api/chat's 404 text: Go's %q and a hint until v0.12, single quotes since."""
        if _version_tuple(self.version) < (0, 12, 0):
            return f"model {_go_quote(name)} not found, try pulling it first"
        return f"model '{name}' not found"

    @staticmethod
    def _message_tokens(model: FakeModel, message: Mapping[str, Any]) -> int:
        """The double's token estimate of one message (see the module's docstring)."""
        images = len(message.get("images") or []) if "vision" in model.capabilities else 0
        return count_tokens(str(message.get("content") or "")) + 4 + IMAGE_TOKENS * images

    def _fit(
        self, model: FakeModel, messages: list[dict[str, Any]], num_ctx: int
    ) -> tuple[list[dict[str, Any]], int]:
        """server/prompt.go ``chatPrompt`` with truncate on: walking back from the latest
        message (always kept), take older ones while the system messages before them plus
        them fit the window; return the messages kept and the prompt tokens evaluated (the
        runner never evaluates more than the window)."""
        costs = [self._message_tokens(model, m) for m in messages]
        start = len(messages) - 1
        system: list[int] = []
        for i in range(len(messages) - 2, -1, -1):
            system = [j for j in range(i) if messages[j].get("role") == "system"]
            if sum(costs[j] for j in system) + sum(costs[i:]) > num_ctx:
                break
            start = i
        else:
            system = []
        kept = [*system, *range(start, len(messages))]
        tokens = sum(costs[j] for j in kept)
        return [messages[j] for j in kept], max(1, min(tokens, num_ctx))

    async def _generate(self, request: web.Request) -> web.StreamResponse:
        body = decode_body(await request.read(), "api.GenerateRequest")
        think = _parse_think(body.get("think"))
        keep_alive = _parse_keep_alive(body.get("keep_alive"))
        if self.validate_schemas and (
            message := type_error(body, "GenerateRequest", "GenerateRequest")
        ):
            raise HTTPError(400, message)
        _check_fields(body, "GenerateRequest", {"template": "string", "raw": "bool"})
        images: list[str] = [img for img in body.get("images") or [] if img is not None]
        for image in images:
            if message := base64_error(image):
                raise HTTPError(400, message)
        if body.get("raw") and (body.get("template") or body.get("system") or body.get("context")):
            raise HTTPError(400, "raw mode does not support template, system, or context")

        name: str = body.get("model") or ""
        parsed = parse_model_name(name)
        if name and parsed is None:
            raise HTTPError(400, "invalid model name")
        model = self._lookup(name) if name else None
        if model is None or parsed is None:
            raise HTTPError(404, f"model '{name}' not found")
        prompt: str = body.get("prompt") or ""
        if not prompt and keep_alive == 0:
            self._loaded.pop(model.name, None)
            return self._load_response(name, "unload", chat=False)
        if body.get("suffix") and "insert" not in model.capabilities:
            raise HTTPError(400, f"{parsed.full} does not support insert")
        thinking_on = self._check_capabilities(
            model, parsed, name, think, tools=False, verb="generate"
        )
        options: dict[str, Any] = body.get("options") or {}
        self._check_options(model, options)
        if self.busy:
            raise HTTPError(503, BUSY_MESSAGE)
        num_ctx = self._num_ctx(model, options)
        if not prompt:
            await self._until_loaded(model, self._load(model, keep_alive, num_ctx))
            self._release(model)
            return self._load_response(name, "load", chat=False)
        system = body.get("system") or model.system or ""
        tokens = count_tokens(system + prompt) + 4 + IMAGE_TOKENS * len(images)
        return await self._run(
            request,
            model=model,
            echo=name,
            chat=False,
            stream=body.get("stream") is not False,
            thinking_on=thinking_on,
            has_tools=False,
            format_value=body.get("format"),
            has_images=bool(images),
            prompt_tokens=max(1, min(tokens, num_ctx)),
            num_ctx=num_ctx,
            keep_alive=keep_alive,
            with_context=not body.get("raw"),
            num_predict=_num_predict(options),
        )

    def _check_capabilities(
        self,
        model: FakeModel,
        parsed: ModelName,
        name: str,
        think: bool | str | None,
        *,
        tools: bool,
        verb: str,
    ) -> bool:
        """Think/tools/completion checks; returns whether thinking output is enabled."""
        if "thinking" in model.capabilities:
            thinking_on = think is not False  # Ollama defaults think to true on these models
            if model.family == "gptoss":
                thinking_on = True  # gpt-oss reasons in levels: true/false are ignored
        else:
            if think:
                raise HTTPError(400, f"{_go_quote(name)} does not support thinking")
            thinking_on = False
        if "completion" not in model.capabilities:
            raise HTTPError(400, f"{_go_quote(name)} does not support {verb}")
        if tools and "tools" not in model.capabilities:
            raise HTTPError(400, f"{parsed.full} does not support tools")
        return thinking_on

    @staticmethod
    def _check_options(model: FakeModel, options: Any) -> None:
        for source in (model.parameters, options):
            if message := option_error(source):
                raise HTTPError(500, message)

    @staticmethod
    def _load_response(name: str, reason: str, *, chat: bool) -> web.Response:
        out: dict[str, Any] = {"model": name, "created_at": created_at()}
        if chat:
            out["message"] = {"role": "assistant", "content": ""}
        else:
            out["response"] = ""
        out |= {"done": True, "done_reason": reason}
        return json_response(out)

    def _tool_calls(self, script: Script) -> list[dict[str, Any]]:
        calls: list[dict[str, Any]] = []
        for index, call in enumerate(script.tool_calls or []):
            function = dict(call.get("function", call))
            function.setdefault("index", index)
            function.setdefault("arguments", {})
            self._tool_call_counter += 1
            call_id = call.get("id") or "call_" + _sha256(str(self._tool_call_counter))[:8]
            calls.append(
                {
                    "id": call_id,
                    "function": {
                        "index": function["index"],
                        "name": function.get("name", ""),
                        "arguments": function["arguments"],
                    },
                }
            )
        return calls

    async def _run(
        self,
        request: web.Request,
        *,
        model: FakeModel,
        echo: str,
        chat: bool,
        stream: bool,
        thinking_on: bool,
        has_tools: bool,
        format_value: Any,
        has_images: bool,
        prompt_tokens: int,
        num_ctx: int,
        keep_alive: float | None,
        with_context: bool = True,
        num_predict: int = 0,
    ) -> web.StreamResponse:
        """Play the next script for this model as a chat/generate stream or single object,
        once one of the model's slots is free."""
        record = request[RECORD_KEY]
        record.num_ctx = num_ctx
        record.prompt_eval_count = prompt_tokens
        script = self._take_script(model)  # in arrival order, before any wait
        if script.status is not None:
            return json_response({"error": script.error_message}, script.status)
        await self._acquire(model, num_ctx)
        try:
            cold = self._load(model, keep_alive, num_ctx)
            self.loads += cold
            record.reloaded = cold
            load_ns = await self._until_loaded(model, cold)
            return await self._generate_reply(
                request,
                script=script,
                model=model,
                echo=echo,
                chat=chat,
                stream=stream,
                thinking_on=thinking_on,
                has_tools=has_tools,
                format_value=format_value,
                has_images=has_images,
                prompt_tokens=prompt_tokens,
                load_ns=load_ns,
                with_context=with_context,
                num_predict=num_predict,
            )
        finally:
            self._free_slot(model)
            self._release(model)

    async def _generate_reply(
        self,
        request: web.Request,
        *,
        script: Script,
        model: FakeModel,
        echo: str,
        chat: bool,
        stream: bool,
        thinking_on: bool,
        has_tools: bool,
        format_value: Any,
        has_images: bool,
        prompt_tokens: int,
        load_ns: int,
        with_context: bool,
        num_predict: int = 0,
    ) -> web.StreamResponse:
        record = request[RECORD_KEY]
        # Errors the runner reports as the first stream item: HTTP 500 before any chunk (gin sets
        # a bare "application/json" in streamResponse, c.JSON's default otherwise)
        runner_error = _format_error(format_value) or (
            VISION_ERROR if has_images and "vision" not in model.capabilities else None
        )
        if runner_error:
            content_type = "application/json" if stream else JSON_CONTENT_TYPE
            return json_response({"error": runner_error}, 500, content_type=content_type)

        content_tokens = script.content_tokens()
        final_text = script.final_text
        if final_text is None:
            final_text = ""
            if (self.final_chunk_text or model.flushes_on_done) and content_tokens:
                final_text = content_tokens.pop()  # the parser held the last piece back
        pieces: list[tuple[str, Any]] = [
            ("thinking", t) for t in (script.thinking_tokens() if thinking_on else [])
        ]
        if model.think_tags and script.thinking is not None:
            # The reasoning is plain content to Ollama: the template does not know the tags.
            tagged = ["<think>", "\n", *script.thinking_tokens(), "\n", "</think>", "\n\n"]
            pieces += [("content", t) for t in tagged]
        pieces += [("content", c) for c in content_tokens]
        done_reason = script.done_reason
        if num_predict > 0 and len(pieces) + bool(final_text) > num_predict:
            # The runner stops at num_predict generated tokens, text held back included.
            pieces, final_text, done_reason = pieces[:num_predict], "", "length"
        if has_tools and script.tool_calls:
            pieces.append(("tool_calls", self._tool_calls(script)))

        def message(kind: str, value: Any) -> dict[str, Any]:
            if chat:
                msg: dict[str, Any] = {"role": "assistant", "content": ""}
                msg[kind] = value
                return {"message": msg}
            return {"response": value if kind == "content" else ""} | (
                {"thinking": value} if kind == "thinking" else {}
            )

        out = _NdjsonStream(request, record, self._line_check(request))
        collected: dict[str, list[Any]] = {"thinking": [], "content": [], "tool_calls": []}
        started = time.monotonic()
        first_token_at: float | None = None
        sent = content_sent = 0
        self.active_generations += 1
        self.max_active_generations = max(self.max_active_generations, self.active_generations)
        try:
            if script.first_token_delay:
                await asyncio.sleep(script.first_token_delay)
            for index, (kind, value) in enumerate([*pieces, ("done", None)]):
                if index and kind != "done" and script.token_interval:
                    await asyncio.sleep(script.token_interval)
                if script.die_after is not None and sent >= script.die_after:
                    self._abort(request)
                if (
                    script.error_after is not None
                    and kind in ("content", "done")
                    and content_sent >= script.error_after
                ):
                    if stream:
                        return await out.fail(script.error_message)
                    return json_response({"error": script.error_message}, 500)
                if kind == "done":
                    break
                first_token_at = first_token_at or time.monotonic()
                if kind == "tool_calls":
                    collected[kind].extend(value)
                else:
                    collected[kind].append(value)
                if stream:
                    chunk = {"model": echo, "created_at": created_at()}
                    await out.send(chunk | message(kind, value) | {"done": False})
                sent += 1
                content_sent += kind == "content"

            if final_text:
                first_token_at = first_token_at or time.monotonic()
                collected["content"].append(final_text)
            final: dict[str, Any] = {"model": echo, "created_at": created_at()}
            content = final_text if stream else "".join(collected["content"])
            thinking = "" if stream else "".join(collected["thinking"])
            if chat:
                msg: dict[str, Any] = {"role": "assistant", "content": content}
                if thinking:
                    msg["thinking"] = thinking
                if collected["tool_calls"] and not stream:
                    msg["tool_calls"] = collected["tool_calls"]
                final["message"] = msg
            else:
                final["response"] = content
                if thinking:
                    final["thinking"] = thinking
            final |= {"done": True, "done_reason": done_reason}
            eval_count = (
                len(collected["thinking"])
                + len(collected["content"])
                + 8 * len(collected["tool_calls"])
            )
            if not chat and with_context:
                final["context"] = list(range(1, prompt_tokens + eval_count + 1))
            record.metrics = self._metrics(
                script, started, first_token_at, prompt_tokens, eval_count, load_ns
            )
            final |= record.metrics
            if not stream:
                return json_response(final)
            await out.send(final)
            if script.end_delay:
                await asyncio.sleep(script.end_delay)
            return await out.finish()
        except (asyncio.CancelledError, ConnectionError):
            # the client went away (write failed / handler cancelled), unless we aborted or closed
            if not self._closing and not request.get(ABORTED_KEY, False):
                self.cancelled += 1
            raise asyncio.CancelledError from None
        finally:
            self.active_generations -= 1

    @staticmethod
    def _metrics(
        script: Script,
        started: float,
        first_token_at: float | None,
        prompt_tokens: int,
        eval_count: int,
        load: int,
    ) -> dict[str, int]:
        """The six final-chunk metrics (integer ns); zero values are omitted, as in Go."""
        now = time.monotonic()
        prompt_eval = (
            max(1, int(script.first_token_delay * 1e9))
            if script.first_token_delay
            else (prompt_tokens * 50_000)
        )
        if eval_count == 0:
            eval_duration = 0
        elif script.eval_tokens_per_second:
            eval_duration = max(1, int(eval_count / script.eval_tokens_per_second * 1e9))
        else:
            eval_duration = max(1, int((now - (first_token_at or now)) * 1e9))
        total = max(int((now - started) * 1e9) + load, load + prompt_eval + eval_duration + 1)
        metrics = {
            "total_duration": total,
            "load_duration": load,
            "prompt_eval_count": prompt_tokens,
            "prompt_eval_duration": prompt_eval,
            "eval_count": eval_count,
            "eval_duration": eval_duration,
        }
        return {key: value for key, value in metrics.items() if value}

    # ---- model management --------------------------------------------------------------------

    async def _progress(
        self, request: web.Request, steps: AsyncIterator[dict[str, Any]], stream: bool
    ) -> web.StreamResponse:
        """Stream ProgressResponse lines, or (stream:false) answer with the last one/the error."""
        out = _NdjsonStream(request, request[RECORD_KEY], self._line_check(request))
        last: dict[str, Any] = {}
        try:
            async for step in steps:
                last = step
                if stream:
                    await out.send(step)
        except _StreamError as exc:
            if stream:
                return await out.fail(exc.message, exc.status)
            return json_response({"error": exc.message}, exc.status)
        except ConnectionError:  # the client went away; end quietly like aiohttp does
            raise asyncio.CancelledError from None
        if not stream:
            return json_response(last)
        return await out.finish()

    def _find_pullable(self, parsed: ModelName) -> PullableModel | None:
        for name, pullable in self.registry.items():
            other = parse_model_name(name)
            if other is not None and other.key == parsed.key:
                return pullable
        return None

    async def _pull_steps(self, parsed: ModelName) -> AsyncIterator[dict[str, Any]]:
        yield {"status": "pulling manifest"}
        pullable = self._find_pullable(parsed)
        if pullable is None:
            raise _StreamError(PULL_NOT_FOUND)
        for digest, total in pullable.layer_list():
            status = f"pulling {digest[7:19]}"
            if digest in self._blobs or not pullable.bytes_per_second:
                if digest not in self._blobs:
                    yield {"status": status, "digest": digest, "total": total}
                yield {"status": status, "digest": digest, "total": total, "completed": total}
                self._blobs.add(digest)
                continue
            yield {"status": status, "digest": digest, "total": total}
            completed = 0
            step = max(1, int(pullable.bytes_per_second * pullable.progress_interval))
            while completed < total:
                await asyncio.sleep(pullable.progress_interval)
                completed = min(total, completed + step)
                yield {"status": status, "digest": digest, "total": total, "completed": completed}
            self._blobs.add(digest)
        yield {"status": "verifying sha256 digest"}
        yield {"status": "writing manifest"}
        model = copy.deepcopy(pullable.model)
        model.modified_at = local_time()
        self.add_model(model)
        yield {"status": "success"}

    async def _pull(self, request: web.Request) -> web.StreamResponse:
        body = decode_body(await request.read(), "api.PullRequest")
        _check_fields(body, "PullRequest", {"model": "string", "name": "string", "stream": "bool"})
        parsed = parse_model_name(body.get("model") or body.get("name") or "")
        if parsed is None:
            raise HTTPError(400, "invalid model name")
        return await self._progress(
            request, self._pull_steps(parsed), body.get("stream") is not False
        )

    async def _create(self, request: web.Request) -> web.StreamResponse:
        body = decode_body(await request.read(), "api.CreateRequest")
        _check_fields(
            body,
            "CreateRequest",
            {
                "model": "string",
                "name": "string",
                "from": "string",
                "template": "string",
                "system": "string",
                "quantize": "string",
                "files": "map[string]string",
                "parameters": "map[string]interface {}",
                "messages": "[]api.Message",
                "stream": "bool",
            },
        )
        parsed = parse_model_name(body.get("model") or body.get("name") or "")
        if parsed is None:
            raise HTTPError(400, "invalid model name")
        if not body.get("from") and not body.get("files"):
            raise HTTPError(400, "neither 'from' or 'files' was specified")
        template = body.get("template")
        if template and template.count("{{") != template.count("}}"):
            raise HTTPError(400, "template error: template: :1: unclosed action")
        base_parsed = parse_model_name(body["from"]) if body.get("from") else None
        if body.get("from") and base_parsed is None:
            raise HTTPError(400, "invalid model name")
        return await self._progress(
            request, self._create_steps(parsed, base_parsed, body), body.get("stream") is not False
        )

    async def _create_steps(
        self, parsed: ModelName, base_name: ModelName | None, body: dict[str, Any]
    ) -> AsyncIterator[dict[str, Any]]:
        if base_name is not None:
            base = self._lookup(base_name.full)
            if base is None:
                async for step in self._pull_steps(base_name):
                    if step["status"] != "success":
                        yield step
                base = self._lookup(base_name.full)
                assert base is not None
        else:
            yield {"status": "parsing GGUF"}
            files: dict[str, str] = body.get("files") or {}
            digest = next(iter(files.values()), "sha256:" + _sha256(parsed.short))
            base = FakeModel(name=parsed.short, weights_digest=digest.removeprefix("sha256:"))
            base.license = None
        model = copy.deepcopy(base)
        model.name = parsed.short
        if body.get("template"):
            model.template = body["template"]
            caps = [c for c in model.capabilities if c not in ("tools", "insert")]
            caps[1:1] = [
                c
                for c, var in (("tools", ".Tools"), ("insert", ".Suffix"))
                if var in model.template
            ]
            model.capabilities = caps
        if body.get("system"):  # create.go adds a system layer only for a non-empty one
            model.system = body["system"]
        if body.get("parameters"):
            model.parameters = {**model.parameters, **body["parameters"]}
        if body.get("messages"):
            model.messages = copy.deepcopy(body["messages"])
        license_value = body.get("license")
        if license_value:
            model.license = (
                "\n".join(license_value) if isinstance(license_value, list) else str(license_value)
            )
        extra = sum(len(go_json(body.get(k) or "")) for k in ("system", "parameters", "messages"))
        model.size = base.size + extra
        for index, (digest, _) in enumerate(model.layers()):
            verb = "using existing" if digest in self._blobs else "creating new"
            self._blobs.add(digest)
            yield {"status": f"{verb} layer {digest}"}
            if index == 0 and self.create_stall:
                await asyncio.sleep(self.create_stall)
        yield {"status": "writing manifest"}
        model.digest = _sha256("".join(d for d, _ in model.layers()))
        model.modified_at = local_time()
        self._loaded.pop(model.name, None)
        self.add_model(model)
        yield {"status": "success"}

    async def _delete(self, request: web.Request) -> web.Response:
        body = decode_body(await request.read(), "api.DeleteRequest")
        _check_fields(body, "DeleteRequest", {"model": "string", "name": "string"})
        name = body.get("model") or body.get("name") or ""
        if not name:
            raise HTTPError(400, "model is required")
        if parse_model_name(name) is None:
            raise HTTPError(400, f"name {_go_quote(name)} is invalid")
        model = self._lookup(name)
        if model is None:
            raise HTTPError(404, f"model '{name}' not found")
        self.remove_model(model.name)
        return web.Response(status=200)

    async def _copy(self, request: web.Request) -> web.Response:
        body = decode_body(await request.read(), "api.CopyRequest")
        _check_fields(body, "CopyRequest", {"source": "string", "destination": "string"})
        source, destination = body.get("source") or "", body.get("destination") or ""
        if parse_model_name(source) is None:
            raise HTTPError(400, f"source {_go_quote(source)} is invalid")
        target = parse_model_name(destination)
        if target is None:
            raise HTTPError(400, f"destination {_go_quote(destination)} is invalid")
        model = self._lookup(source)
        if model is None:
            raise HTTPError(404, f"model {_go_quote(source)} not found")
        duplicate = dataclasses.replace(copy.deepcopy(model), name=target.short)
        duplicate.modified_at = local_time()
        self.add_model(duplicate)
        return web.Response(status=200)
