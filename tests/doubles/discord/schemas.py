"""Discord's own OpenAPI document (tests/data/discord-openapi.json): request bodies are checked
against its request schemas (errors answered like Discord's 50035 form errors), and every JSON
answer of the double against its response schemas (a mismatch is a bug of the double)."""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

from tests.doubles.discord.records import _add_error

OPENAPI_PATH = Path(__file__).resolve().parents[2] / "data" / "discord-openapi.json"


@functools.cache
def _openapi() -> dict[str, Any]:
    """Discord's OpenAPI document, loaded once per process.

    Snowflakes are accepted as integers too (the real API does, and discord.py sends
    ``attachments[].id`` and ``message_reference.message_id`` as integers).
    """
    spec: dict[str, Any] = json.loads(OPENAPI_PATH.read_text(encoding="utf-8"))
    spec["components"]["schemas"]["SnowflakeType"] = {
        "anyOf": [
            {"type": "string", "pattern": "^(0|[1-9][0-9]*)$"},
            {"type": "integer", "minimum": 0},
        ]
    }
    return spec


@functools.cache
def _request_validator(path: str, method: str) -> Draft202012Validator | None:
    """A validator for the JSON request body of one OpenAPI operation (None without one)."""
    spec = _openapi()
    operation = spec["paths"].get(path, {}).get(method.lower(), {})
    content = operation.get("requestBody", {}).get("content", {})
    schema = content.get("application/json", {}).get("schema")
    if schema is None:
        return None
    return Draft202012Validator({**schema, "components": spec["components"]})


@functools.cache
def _spec_paths() -> list[tuple[re.Pattern[str], str]]:
    """Each OpenAPI path as a regex over real paths, literal segments (``@me``, ``@original``)
    tried before parameters."""
    table: list[tuple[int, re.Pattern[str], str]] = []
    for spec_path in _openapi()["paths"]:
        segments = spec_path.strip("/").split("/")
        regex = "/" + "/".join(
            "[^/]+" if seg.startswith("{") else re.escape(seg) for seg in segments
        )
        literal = sum(1 for seg in segments if not seg.startswith("{"))
        table.append((-literal, re.compile(regex), spec_path))
    table.sort(key=lambda row: row[0])
    return [(pattern, spec_path) for _, pattern, spec_path in table]


@functools.cache
def _spec_path_of(path: str) -> str | None:
    for pattern, spec_path in _spec_paths():
        if pattern.fullmatch(path):
            return spec_path
    return None


@functools.cache
def _response_validator(spec_path: str, method: str, status: int) -> Draft202012Validator | None:
    """A validator for the JSON answer of one OpenAPI operation and status (None: no schema)."""
    spec = _openapi()
    operation = spec["paths"].get(spec_path, {}).get(method.lower())
    if operation is None:
        return None
    responses = operation.get("responses", {})
    answer = responses.get(str(status)) or responses.get(f"{str(status)[0]}XX")
    if answer is None:
        return None
    if "$ref" in answer:
        answer = spec["components"]["responses"][answer["$ref"].rsplit("/", 1)[1]]
    schema = (answer.get("content") or {}).get("application/json", {}).get("schema")
    if schema is None:
        return None
    return Draft202012Validator({**schema, "components": spec["components"]})


def _response_mismatch(method: str, path: str, status: int, raw: bytes) -> str | None:
    """Why a JSON answer breaks Discord's OpenAPI response schema (None when it fits)."""
    if not raw:
        return None
    spec_path = _spec_path_of(re.sub(r"/\d+", "/0", path))
    if spec_path is None:
        if status in (404, 405):  # Discord's own answer to a route it does not have
            return None
        return f"{method} {path}: no such route in Discord's OpenAPI document"
    validator = _response_validator(spec_path, method, status)
    if validator is None:
        return f"{method} {path}: Discord's OpenAPI document has no JSON answer with {status}"
    body = json.loads(raw)
    if status >= 400 and isinstance(body, dict):
        # The document types the codes under `errors` as integers; Discord's docs (and its
        # answers) use strings such as "BASE_TYPE_REQUIRED" there, so only the envelope counts.
        body = {key: value for key, value in body.items() if key != "errors"}
    first = next(iter(validator.iter_errors(body)), None)
    if first is None:
        return None
    error = _leaf_errors(first)[0]
    where = "/".join(str(part) for part in error.absolute_path)
    return (
        f"{method} {path} -> {status}: answer breaks {spec_path}'s schema at {where!r}: "
        + (error.message[:300])
    )


@functools.cache
def _schema_validator(name: str) -> Draft202012Validator:
    """A validator for one named schema of ``components.schemas``."""
    spec = _openapi()
    return Draft202012Validator(
        {"$ref": f"#/components/schemas/{name}", "components": spec["components"]}
    )


def _leaf_errors(error: ValidationError) -> list[ValidationError]:
    """The errors that matter under a oneOf/anyOf failure.

    The union branches are grouped; a branch that fails on the value's JSON type or on a
    ``type`` discriminator (``{"type": 1}`` vs ``enum: [18]``) is not what the sender meant, so
    the errors come from the closest remaining branch.
    """
    if not error.context:
        return [error]
    if all(e.validator in ("const", "enum") and not e.relative_path for e in error.context):
        return [error]  # a union of constants: one 'choices' error
    branches: dict[Any, list[ValidationError]] = {}
    for sub in error.context:
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)

    def mismatched(errors: list[ValidationError]) -> bool:
        return any(
            (e.validator == "type" and not e.relative_path)
            or (e.validator in ("enum", "const") and list(e.relative_path) == ["type"])
            for e in errors
        )

    candidates = [b for b in branches.values() if not mismatched(b)]
    if not candidates:
        return [best_match(error.context)]
    closest = min(candidates, key=lambda b: (len(b), -max(len(e.absolute_path) for e in b)))
    return [leaf for sub in closest for leaf in _leaf_errors(sub)]


def _describe_error(error: ValidationError) -> tuple[list[str | int], str, str]:
    """(path, Discord error code, message) for one jsonschema error."""
    path: list[str | int] = list(error.absolute_path)
    schema = error.schema if isinstance(error.schema, dict) else {}
    value = error.instance
    match error.validator:
        case "maxLength" | "maxItems":
            return (
                path,
                "BASE_TYPE_MAX_LENGTH",
                f"Must be {error.validator_value} or fewer in length.",
            )
        case "minLength" | "minItems":
            high = schema.get("maxLength", schema.get("maxItems"))
            low = error.validator_value
            if high is not None:
                return path, "BASE_TYPE_BAD_LENGTH", f"Must be between {low} and {high} in length."
            return path, "BASE_TYPE_MIN_LENGTH", f"Must be {low} or more in length."
        case "required":
            match = re.match(r"'(.+)' is a required property", error.message)
            if match:
                path.append(match.group(1))
            return path, "BASE_TYPE_REQUIRED", "This field is required"
        case "enum" | "const" | "oneOf" | "anyOf":
            choices = error.validator_value
            if error.validator in ("oneOf", "anyOf"):
                choices = [c.get("const", c.get("enum")) for c in choices if isinstance(c, dict)]
            choices = choices if isinstance(choices, list) else [choices]
            shown = ", ".join(repr(c) for c in choices)
            return path, "BASE_TYPE_CHOICES", f"Value must be one of {{{shown}}}."
        case "maximum":
            return (
                path,
                "NUMBER_TYPE_MAX",
                f"int value should be less than or equal to {error.validator_value}.",
            )
        case "minimum":
            return (
                path,
                "NUMBER_TYPE_MIN",
                f"int value should be greater than or equal to {error.validator_value}.",
            )
        case "pattern":
            return path, "STRING_TYPE_REGEX", "String value did not match validation regex."
        case "type":
            wanted = error.validator_value
            wanted = wanted if isinstance(wanted, list) else [wanted]
            if "integer" in wanted or "number" in wanted:
                return path, "NUMBER_TYPE_COERCE", f'Value "{value}" is not int.'
            if "boolean" in wanted:
                return path, "BASE_TYPE_BOOLEAN", "Must be either true or false."
            if "string" in wanted:
                return path, "BASE_TYPE_STRING", f'Could not interpret "{value}" as string.'
            if "array" in wanted:
                return path, "BASE_TYPE_LIST", "Must be a list."
            return path, "MODEL_TYPE_CONVERT", "Only dictionaries may be used in a ModelType"
        case _:
            return path, "BASE_TYPE_INVALID", error.message[:200]


def _schema_errors(validator: Draft202012Validator | None, body: Any) -> dict[str, Any]:
    """Discord-shaped ``errors`` for a body that breaks the schema ({} when it fits)."""
    errors: dict[str, Any] = {}
    if validator is None:
        return errors
    for error in validator.iter_errors(body):
        for leaf in _leaf_errors(error):
            _add_error(errors, *_describe_error(leaf))
    return errors


def _merge_errors(into: dict[str, Any], other: dict[str, Any]) -> None:
    """Add ``other``'s errors to ``into``; a field that already has errors keeps those only
    (Discord names one error a field; the hand-written checks and the schema may both catch one)."""
    for key, value in other.items():
        if key == "_errors":
            if "_errors" not in into:
                into["_errors"] = list(value)
        else:
            _merge_errors(into.setdefault(key, {}), value)
