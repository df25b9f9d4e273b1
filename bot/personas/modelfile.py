"""Modelfiles, read the way `ollama create -f` reads them.

The lexer follows the rules of Ollama's `parser.ParseFile`: instructions are matched without regard
to case, `#` starts a comment only at the beginning of a line, a value runs to the end of its line
unless it starts with `"` or `\"\"\"`, in which case it runs on over newlines until the trimmed text
so far ends with the same quote. Characters that are not printable are dropped outside a quoted
value's line breaks, spaces and tabs. `PARAMETER` values are then typed the way the CLI types them
(`api.FormatParams`), with the same error texts, before anything is sent to the server.

Every failure is a `ModelfileError` that names a line. Where the bot knowingly differs from Ollama
(CRLF counted as one line break, local files refused, ...) the README's persona section says so.
"""

from __future__ import annotations

import difflib
import math
import re
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum, auto

from bot.errors import InputError

ParameterValue = int | float | bool | tuple[str, ...]

INSTRUCTIONS = (
    "from",
    "license",
    "template",
    "system",
    "adapter",
    "draft",
    "renderer",
    "parser",
    "parameter",
    "message",
    "requires",
)
"""Every instruction Ollama's parser knows, in the order of its error message."""

ROLES = ("system", "user", "assistant")

PARAMETER_TYPES: Mapping[str, type] = {
    "num_ctx": int,
    "num_batch": int,
    "num_gpu": int,
    "main_gpu": int,
    "use_mmap": bool,
    "num_thread": int,
    "draft_num_predict": int,
    "num_keep": int,
    "seed": int,
    "num_predict": int,
    "top_k": int,
    "top_p": float,
    "min_p": float,
    "typical_p": float,
    "repeat_last_n": int,
    "temperature": float,
    "repeat_penalty": float,
    "presence_penalty": float,
    "frequency_penalty": float,
    "stop": tuple,
}
"""The options `api.Options` and `api.Runner` accept (Ollama v0.33), with their types."""

DEPRECATED_PARAMETERS = frozenset(
    {
        "penalize_newline",
        "low_vram",
        "f16_kv",
        "logits_all",
        "vocab_only",
        "use_mlock",
        "mirostat",
        "mirostat_tau",
        "mirostat_eta",
    }
)
"""Accepted with a warning and dropped, as the CLI does."""

REMOVED_PARAMETERS = frozenset({"numa", "tfs_z", "num_gqa"})
"""Gone from Ollama without a deprecation warning: unknown parameters now."""

INVALID_COMMAND = (
    'command must be one of "from", "license", "template", "system", "adapter", "draft", '
    '"renderer", "parser", "parameter", "message", or "requires"'
)
INVALID_ROLE = 'message role must be one of "system", "user", or "assistant"'

_FLOAT32_MAX = struct.unpack("<f", b"\xff\xff\x7f\x7f")[0]
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_HEX_FLOAT = re.compile(r"[+-]?0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)[pP][+-]?[0-9]+")
_INTEGER = re.compile(r"[+-]?[0-9]+")
_GO_BOOLS = {
    **dict.fromkeys(("1", "t", "T", "TRUE", "true", "True"), True),
    **dict.fromkeys(("0", "f", "F", "FALSE", "false", "False"), False),
}
_NAME_PARTS = {
    "host": re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:-]{0,349}"),
    "namespace": re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,79}"),
    "model": re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}"),
    "tag": re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}"),
}
_SEMVER_NUMBER = r"(?:0|[1-9][0-9]*)"
_SEMVER_PRE_ID = r"(?:0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)"
_SEMVER = re.compile(
    rf"v{_SEMVER_NUMBER}(?:\.{_SEMVER_NUMBER}(?:\.{_SEMVER_NUMBER}"
    rf"(?:-{_SEMVER_PRE_ID}(?:\.{_SEMVER_PRE_ID})*)?"
    r"(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?)?)?"
)
_LOCAL_SUFFIXES = (".gguf", ".safetensors", ".bin")
_WINDOWS_DRIVE = re.compile(r"[A-Za-z]:[\\/]")
_SPACE = " \t"
_NEWLINE = "\r\n"
_TRIMMED = " \t\r\n"  # the only whitespace a value's buffer can hold (the rest is dropped)


class ModelfileError(InputError):
    """The Modelfile cannot be used; `line` is the line the problem is on (1-based)."""

    def __init__(self, line: int, message: str) -> None:
        self.line = line
        self.message = message
        super().__init__(f"Modelfile line {line}: {message}")


@dataclass(frozen=True, slots=True)
class Message:
    role: str
    content: str


@dataclass(frozen=True, slots=True)
class Command:
    """One instruction as the lexer read it."""

    instruction: str  # lower case, one of INSTRUCTIONS
    value: str
    line: int
    parameter: str = ""  # PARAMETER: the parameter's name (case kept)
    role: str = ""  # MESSAGE: the role


@dataclass(frozen=True, slots=True)
class Modelfile:
    """A parsed Modelfile: what `/api/create` is sent, plus what Ollama only shows or checks."""

    base: str
    """`FROM`: the model the persona builds on."""
    system: str | None = None
    template: str | None = None
    parameters: Mapping[str, ParameterValue] = field(default_factory=dict)
    messages: tuple[Message, ...] = ()
    license: tuple[str, ...] = ()
    requires: str | None = None
    """`REQUIRES`: the Ollama version the author asks for (informational)."""
    warnings: tuple[str, ...] = field(default=(), compare=False)
    """Deprecated parameters that were dropped, as the CLI's `warning: ...` lines."""

    @property
    def num_ctx(self) -> int | None:
        value = self.parameters.get("num_ctx")
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def options(self) -> dict[str, int | float | bool | list[str]]:
        """The parameters as JSON values (`stop` as a list), for `/api/create`."""
        return {
            key: list(value) if isinstance(value, tuple) else value
            for key, value in self.parameters.items()
        }


# ---------------------------------------------------------------------------------------- lexer


class _State(Enum):
    IDLE = auto()  # between instructions
    COMMENT = auto()
    NAME = auto()  # reading the instruction's name
    PARAMETER = auto()  # reading a PARAMETER's name
    ROLE = auto()  # reading a MESSAGE's role
    VALUE = auto()


class _Value:
    """A value's characters, with what the end-of-value test needs kept up to date, so that a
    long quoted value is read in linear time."""

    __slots__ = ("chars", "end", "start")

    def __init__(self) -> None:
        self.chars: list[str] = []
        self.start: int | None = None  # index of the first character that is not whitespace
        self.end = 0  # index after the last character that is not whitespace

    def add(self, char: str) -> None:
        self.chars.append(char)
        if char not in _TRIMMED:
            if self.start is None:
                self.start = len(self.chars) - 1
            self.end = len(self.chars)

    def complete(self) -> bool:
        """Whether the trimmed text so far is a whole value (its quotes, if any, are closed)."""
        if self.start is None:
            return True
        length = self.end - self.start
        head = "".join(self.chars[self.start : self.start + 3])
        if length >= 3 and head == '"""':
            return length >= 6 and "".join(self.chars[self.end - 3 : self.end]) == '"""'
        if head.startswith('"'):
            return length >= 2 and self.chars[self.end - 1] == '"'
        return True

    def text(self) -> str:
        """The value with its quotes taken off (only valid when `complete()`)."""
        if self.start is None:
            return ""
        trimmed = "".join(self.chars[self.start : self.end])
        if trimmed.startswith('"""'):
            return trimmed[3:-3]
        if trimmed.startswith('"'):
            return trimmed[1:-1]
        return trimmed


def lex(text: str) -> list[Command]:
    """Split a Modelfile into its instructions; raises ModelfileError."""
    text = text.replace("\r\n", "\n")  # one line break, whatever the editor wrote
    commands: list[Command] = []
    state = _State.IDLE
    line = 1
    word: list[str] = []  # instruction name, parameter name or role being read
    instruction = parameter = role = ""
    value = _Value()
    started = 1  # the line the current instruction started on

    for char in text:
        if state is _State.IDLE:
            if char == "#":
                state = _State.COMMENT
            elif char not in _SPACE and char not in _NEWLINE:
                state, started = _State.NAME, line
                word = [char] if char.isprintable() else []
        elif state is _State.COMMENT:
            if char in _NEWLINE:
                state = _State.IDLE
        elif state is _State.NAME:
            if _is_letter(char):
                word.append(char)
            elif char in _SPACE:
                instruction = "".join(word).lower()
                if instruction not in INSTRUCTIONS:
                    raise ModelfileError(line, _invalid_command("".join(word)))
                word, value = [], _Value()
                state = {"parameter": _State.PARAMETER, "message": _State.ROLE}.get(
                    instruction, _State.VALUE
                )
            else:
                raise ModelfileError(line, _broken_name("".join(word), char))
        elif state is _State.PARAMETER:
            if _is_letter(char) or (char.isdigit() and char.isascii()) or char == "_":
                word.append(char)
            elif char in _SPACE:
                parameter, word, state = "".join(word), [], _State.VALUE
            else:
                raise ModelfileError(line, _broken_parameter("".join(word), char))
        elif state is _State.ROLE:
            if _is_letter(char):
                word.append(char)
            elif char in _SPACE:
                role = "".join(word)
                if role not in ROLES:
                    raise ModelfileError(line, _invalid_role(role))
                word, state = [], _State.VALUE
            else:
                raise ModelfileError(line, f"unexpected EOF: {''.join(word)} — {_ROLE_HINT}")
        elif char in _NEWLINE and value.complete():
            commands.append(Command(instruction, value.text(), started, parameter, role))
            instruction = parameter = role = ""
            state = _State.IDLE
        elif char in _SPACE or char in _NEWLINE or char.isprintable():
            value.add(char)
        if char in _NEWLINE:
            line += 1

    if state is _State.VALUE:
        if not value.complete():
            quote = '"""' if _opens_triple(value) else '"'
            raise ModelfileError(
                started, f"unexpected EOF — the {quote} opened on this line is never closed"
            )
        commands.append(Command(instruction, value.text(), started, parameter, role))
    elif state is not _State.IDLE and state is not _State.COMMENT:
        raise ModelfileError(started, _cut_short(state, "".join(word), instruction))
    return commands


def _opens_triple(value: _Value) -> bool:
    start = value.start or 0
    return "".join(value.chars[start : start + 3]) == '"""'


def _is_letter(char: str) -> bool:
    return char.isascii() and char.isalpha()


_ROLE_HINT = 'write `MESSAGE <role> <text>` with role "system", "user" or "assistant"'


def _invalid_command(word: str) -> str:
    close = difflib.get_close_matches(word.lower(), INSTRUCTIONS, n=1, cutoff=0.6)
    hint = f" — did you mean {close[0].upper()}?" if close else ""
    return f"{INVALID_COMMAND}{hint}"


def _broken_name(word: str, char: str) -> str:
    if word.lower() in INSTRUCTIONS and char in _NEWLINE:
        what = "a name and a value" if word.lower() == "parameter" else "a value"
        return f"{word.upper()} needs {what} on the same line"
    return _invalid_command(word + (char if char.isprintable() else ""))


def _broken_parameter(name: str, char: str) -> str:
    if char in _NEWLINE:
        hint = f"{name} needs a value" if name else "PARAMETER needs a name and a value"
    else:
        hint = "parameter names use only letters, digits and _"
    return f"unexpected EOF: {name} — {hint}"


def _invalid_role(role: str) -> str:
    close = difflib.get_close_matches(role.lower(), ROLES, n=1, cutoff=0.6)
    hint = f" — did you mean '{close[0]}'? (roles are lower case)" if close else ""
    return f"{INVALID_ROLE}{hint}"


def _cut_short(state: _State, word: str, instruction: str) -> str:
    if state is _State.NAME:
        if word.lower() in INSTRUCTIONS:
            return f"unexpected EOF — {word.upper()} needs a value"
        return f"unexpected EOF — {_invalid_command(word)}"
    if state is _State.PARAMETER:
        return f"unexpected EOF: {word} — " + (
            f"{word} needs a value" if word else "PARAMETER needs a name and a value"
        )
    return f"unexpected EOF: {word} — {_ROLE_HINT}"


# ---------------------------------------------------------------------------------------- parser


def parse(text: str) -> Modelfile:
    """Read a Modelfile as `ollama create` would; raises ModelfileError naming the line."""
    commands = lex(text)
    if not any(command.instruction == "from" for command in commands):
        raise ModelfileError(
            1, "no FROM line — a Modelfile names the model it builds on, e.g. `FROM llama3.2`"
        )
    base = ""
    system: str | None = None
    template: str | None = None
    requires: str | None = None
    parameters: dict[str, ParameterValue] = {}
    messages: list[Message] = []
    licenses: list[str] = []
    warnings: list[str] = []
    for command in commands:
        value = command.value
        match command.instruction:
            case "from":
                base = _base_model(value, command.line)
            case "system":
                system = value
            case "template":
                template = value
            case "license":
                licenses.append(value)
            case "message":
                messages.append(Message(command.role, value))
            case "requires":
                requires = _requires(value, command.line)
            case "adapter" | "draft":
                raise ModelfileError(
                    command.line,
                    f"{command.instruction.upper()} is not supported from Discord: it needs a "
                    "file on the Ollama server's disk. Create that model with `ollama create` "
                    "on the server, then build a persona on it with FROM.",
                )
            case "renderer" | "parser":
                raise ModelfileError(
                    command.line,
                    f"{command.instruction.upper()} is not supported by this bot. Create a "
                    "model that sets it with `ollama create` on the server, then build a persona "
                    "on it with FROM.",
                )
            case _:
                name = command.parameter
                if name in DEPRECATED_PARAMETERS:
                    warnings.append(f"warning: parameter {name} is deprecated")
                    continue
                typed = _typed(name, value, command.line)
                previous = parameters.get(name)
                if isinstance(typed, tuple) and isinstance(previous, tuple):
                    typed = previous + typed
                parameters[name] = typed
    return Modelfile(
        base=base,
        system=system,
        template=template,
        parameters=parameters,
        messages=tuple(messages),
        license=tuple(licenses),
        requires=requires,
        warnings=tuple(warnings),
    )


def _typed(name: str, value: str, line: int) -> ParameterValue:
    kind = PARAMETER_TYPES.get(name)
    if kind is None:
        raise ModelfileError(line, _unknown_parameter(name))
    if kind is tuple:
        return (value,)
    if kind is bool:
        if value not in _GO_BOOLS:
            raise ModelfileError(line, f"invalid bool value [{value}] — use true or false")
        return _GO_BOOLS[value]
    if kind is int:
        whole = _int64(value)
        if whole is None:
            raise ModelfileError(line, f"invalid int value [{value}] — {name} is a whole number")
        return whole
    number = _float32(value)
    if number is None:
        raise ModelfileError(line, f"invalid float value [{value}] — {name} is a number")
    return number


def _unknown_parameter(name: str) -> str:
    message = f"unknown parameter '{name}'"
    close = difflib.get_close_matches(name, PARAMETER_TYPES, n=1, cutoff=0.6) or [
        known for known in PARAMETER_TYPES if known == name.lower()
    ]
    if close:
        return f"{message} — did you mean '{close[0]}'?"
    if name in REMOVED_PARAMETERS:
        return f"{message} — Ollama no longer has this parameter"
    if name in ("system", "template", "license", "adapter", "message", "model"):
        return f"{message} — use the {name.upper()} instruction instead"
    return f"{message} — known parameters: {', '.join(PARAMETER_TYPES)}"


def _int64(text: str) -> int | None:
    """Parse like Go's `strconv.ParseInt(text, 10, 64)`; None where Go errors."""
    if not _INTEGER.fullmatch(text):
        return None
    digits = text.lstrip("+-").lstrip("0")
    if len(digits) > 19:  # out of range, and too long for int() to convert quickly
        return None
    number = int(text)
    return number if -(2**63) <= number < 2**63 else None


def _float32(text: str) -> float | None:
    """Parse like Go's `strconv.ParseFloat(text, 32)`; None where Go errors. Infinities and NaN,
    which Go parses but which JSON cannot carry to the server, are refused too."""
    if _DECIMAL.fullmatch(text):
        number = float(text)
    elif _HEX_FLOAT.fullmatch(text):
        try:
            number = float.fromhex(text)
        except OverflowError:
            return None
    else:
        return None  # also "inf" and "nan"
    if math.isinf(number):
        return None
    try:
        single = struct.unpack("<f", struct.pack("<f", number))[0]
    except OverflowError:
        return None
    if abs(single) > _FLOAT32_MAX:
        return None
    # The shortest decimal that names the same float32, as Go's encoder prints a float32.
    for digits in range(1, 10):
        shortest = float(f"{single:.{digits}g}")
        if struct.unpack("<f", struct.pack("<f", shortest))[0] == single:
            return shortest
    return float(single)


def _base_model(value: str, line: int) -> str:
    if not value:
        raise ModelfileError(line, "FROM needs a model name, e.g. `FROM llama3.2`")
    if _is_local_path(value):
        raise ModelfileError(
            line,
            f"FROM {value} names a local file, which is not supported from Discord: a persona "
            "builds on a model the Ollama server has or can pull, e.g. `FROM llama3.2`.",
        )
    if not is_model_name(value):
        hint = ""
        if "#" in value:
            hint = " — a # starts a comment only at the beginning of a line"
        elif any(char in value for char in _SPACE):
            hint = " — model names have no spaces"
        raise ModelfileError(line, f"invalid model name '{value}'{hint}")
    return value


def _is_local_path(value: str) -> bool:
    lowered = value.lower()
    return (
        value in (".", "..")
        or value.startswith(("/", "./", "../", "~", "\\", ".\\", "..\\"))
        or bool(_WINDOWS_DRIVE.match(value))
        or lowered.endswith(_LOCAL_SUFFIXES)
    )


def is_model_name(name: str) -> bool:
    """Whether Ollama accepts `name` as `[host/][namespace/]model[:tag][@digest]`."""
    rest = name.split("@", 1)[0]
    tag = "latest"
    slash, colon = rest.rfind("/"), rest.rfind(":")
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1 :]
    parts = rest.split("/")
    if len(parts) > 3:
        return False
    named = {
        "host": parts[-3] if len(parts) == 3 else "registry.ollama.ai",
        "namespace": parts[-2] if len(parts) >= 2 else "library",
        "model": parts[-1],
        "tag": tag,
    }
    return all(_NAME_PARTS[part].fullmatch(text) for part, text in named.items())


def _requires(value: str, line: int) -> str:
    version = value if value.startswith("v") else f"v{value}"
    if not _SEMVER.fullmatch(version):
        raise ModelfileError(line, "requires must be a valid semver (e.g. 0.14.0)")
    return version.removeprefix("v")


# -------------------------------------------------------------------------------------- renderer


def render(modelfile: Modelfile) -> str:
    """Modelfile text that parses back to `modelfile` (the round trip of the tests)."""
    lines = [f"FROM {_quoted('FROM', modelfile.base)}"]
    if modelfile.requires is not None:
        lines.append(f"REQUIRES {modelfile.requires}")
    for name, value in modelfile.parameters.items():
        for item in _parameter_texts(value):
            lines.append(f"PARAMETER {name} {_quoted(f'PARAMETER {name}', item)}")
    if modelfile.template is not None:
        lines.append(f"TEMPLATE {_quoted('TEMPLATE', modelfile.template)}")
    if modelfile.system is not None:
        lines.append(f"SYSTEM {_quoted('SYSTEM', modelfile.system)}")
    lines.extend(f"LICENSE {_quoted('LICENSE', text)}" for text in modelfile.license)
    for message in modelfile.messages:
        prefix = f"MESSAGE {message.role}"
        lines.append(f"{prefix} {_quoted(prefix, message.content)}")
    return "\n".join(lines) + "\n"


def _parameter_texts(value: ParameterValue) -> Iterable[str]:
    if isinstance(value, tuple):
        return value
    if isinstance(value, bool):
        return ["true" if value else "false"]
    return [repr(value)]


def _quoted(prefix: str, value: str) -> str:
    """The first way of writing `value` that the lexer reads back as `value`."""
    if not value:
        return '""'
    single, triple = f'"{value}"', f'"""{value}"""'
    # Like Ollama's own `quote()`: plain if possible, "..." unless the text holds a quote.
    for candidate in (value, *((triple, single) if '"' in value else (single, triple))):
        try:
            commands = lex(f"{prefix} {candidate}\n")
        except ModelfileError:
            continue
        if len(commands) == 1 and commands[0].value == value:
            return candidate
    raise ValueError(f"{value!r} cannot be written as a Modelfile value")
