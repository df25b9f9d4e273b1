"""The Modelfile parser: Ollama's lexical rules and the CLI's parameter checks, a hypothesis test
that nothing but a ModelfileError ever comes out, and the round trip through the renderer."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.errors import InputError
from bot.personas.modelfile import (
    DEPRECATED_PARAMETERS,
    INVALID_COMMAND,
    INVALID_ROLE,
    PARAMETER_TYPES,
    Message,
    Modelfile,
    ModelfileError,
    is_model_name,
    parse,
    render,
)

SEED = 'FROM llama3.2\nPARAMETER temperature 0.3\nSYSTEM """You are James, a butler."""\n'

# (case id, Modelfile text, expected fields of the parsed Modelfile)
PARSES: list[tuple[str, str, dict[str, Any]]] = [
    (
        "seed",
        SEED,
        {
            "base": "llama3.2",
            "parameters": {"temperature": 0.3},
            "system": "You are James, a butler.",
        },
    ),
    ("instructions ignore case", "from llama3.2\nSyStEm hi\n", {"system": "hi"}),
    ("last FROM wins", "FROM a\nFROM b\n", {"base": "b"}),
    ("tab after the instruction", "FROM\tllama3.2\n", {"base": "llama3.2"}),
    ("no final newline", "FROM llama3.2", {"base": "llama3.2"}),
    ("blank lines and indentation", "\n\n   FROM llama3.2\n\n\t SYSTEM  hi  \n", {"system": "hi"}),
    (
        "comment lines",
        "# a persona\n  # indented comment\nFROM llama3.2\n#SYSTEM no\n",
        {"system": None},
    ),
    (
        "# later in a line is text",
        "FROM llama3.2\nSYSTEM be brief # really\n",
        {"system": "be brief # really"},
    ),
    (
        "inner spaces kept",
        "FROM llama3.2\nSYSTEM  you   are   terse \n",
        {"system": "you   are   terse"},
    ),
    ("double quotes stripped", 'FROM llama3.2\nSYSTEM "be brief"\n', {"system": "be brief"}),
    ("empty quoted value", 'FROM llama3.2\nSYSTEM ""\n', {"system": ""}),
    ("triple quotes", 'FROM llama3.2\nSYSTEM """be brief"""\n', {"system": "be brief"}),
    (
        "triple quotes over lines keep the newlines",
        'FROM llama3.2\nSYSTEM """\nYou are James.\n\nBe brief.\n"""\n',
        {"system": "\nYou are James.\n\nBe brief.\n"},
    ),
    (
        "quotes inside triple quotes",
        'FROM llama3.2\nSYSTEM """Say "hello" and "bye"."""\n',
        {"system": 'Say "hello" and "bye".'},
    ),
    (
        "a quote just before the closing triple",
        'FROM llama3.2\nSYSTEM """say "hi""""\n',
        {"system": 'say "hi"'},
    ),
    ("a single quote may span lines", 'FROM llama3.2\nSYSTEM "one\ntwo"\n', {"system": "one\ntwo"}),
    ("single quotes mean nothing", "FROM llama3.2\nSYSTEM 'hi'\n", {"system": "'hi'"}),
    ("last SYSTEM wins", "FROM llama3.2\nSYSTEM a\nSYSTEM b\n", {"system": "b"}),
    (
        "last TEMPLATE wins",
        'FROM llama3.2\nTEMPLATE {{ .Prompt }}\nTEMPLATE """{{ .System }} {{ .Prompt }}"""\n',
        {"template": "{{ .System }} {{ .Prompt }}"},
    ),
    (
        "repeated PARAMETER stop builds a list",
        'FROM llama3.2\nPARAMETER stop "<|eot_id|>"\nPARAMETER stop User:\nPARAMETER stop "a b"\n',
        {"parameters": {"stop": ("<|eot_id|>", "User:", "a b")}},
    ),
    (
        "other repeated parameters: the last wins",
        "FROM llama3.2\nPARAMETER temperature 0.3\nPARAMETER temperature 0.9\n",
        {"parameters": {"temperature": 0.9}},
    ),
    (
        "typed parameters",
        "FROM llama3.2\nPARAMETER num_ctx 8192\nPARAMETER top_p .95\nPARAMETER use_mmap F\n"
        "PARAMETER seed -1\nPARAMETER repeat_penalty 1\nPARAMETER min_p 5e-2\n",
        {
            "parameters": {
                "num_ctx": 8192,
                "top_p": 0.95,
                "use_mmap": False,
                "seed": -1,
                "repeat_penalty": 1.0,
                "min_p": 0.05,
            }
        },
    ),
    (
        "float32 precision, Go's shortest form",
        "FROM m\nPARAMETER temperature 0.30000001\n",
        {"parameters": {"temperature": 0.3}},
    ),
    ("hex float", "FROM m\nPARAMETER temperature 0x1p-2\n", {"parameters": {"temperature": 0.25}}),
    (
        "quoted number",
        'FROM m\nPARAMETER temperature "0.3"\n',
        {"parameters": {"temperature": 0.3}},
    ),
    ("int with leading zeros", "FROM m\nPARAMETER top_k 0040\n", {"parameters": {"top_k": 40}}),
    (
        "deprecated parameters are dropped with a warning",
        "FROM m\nPARAMETER mirostat 2\nPARAMETER penalize_newline nonsense\n",
        {
            "parameters": {},
            "warnings": (
                "warning: parameter mirostat is deprecated",
                "warning: parameter penalize_newline is deprecated",
            ),
        },
    ),
    (
        "MESSAGE roles",
        'FROM m\nMESSAGE system Be kind.\nMESSAGE user Hi\nMESSAGE assistant """Hello:\nthere"""\n',
        {
            "messages": (
                Message("system", "Be kind."),
                Message("user", "Hi"),
                Message("assistant", "Hello:\nthere"),
            )
        },
    ),
    (
        "message text with a colon",
        "FROM m\nMESSAGE user a: b\n",
        {"messages": (Message("user", "a: b"),)},
    ),
    (
        "LICENSE lines collect",
        'FROM m\nLICENSE MIT\nLICENSE """Apache\n2.0"""\n',
        {"license": ("MIT", "Apache\n2.0")},
    ),
    ("REQUIRES", "FROM m\nREQUIRES 0.14.0\n", {"requires": "0.14.0"}),
    ("REQUIRES with v and shorthand", "FROM m\nREQUIRES v0.14\n", {"requires": "0.14"}),
    ("REQUIRES prerelease", "FROM m\nREQUIRES 0.33.0-rc2\n", {"requires": "0.33.0-rc2"}),
    (
        "CRLF line ends",
        'FROM m\r\nSYSTEM """a\r\nb"""\r\nPARAMETER top_k 1\r\n',
        {"system": "a\nb", "parameters": {"top_k": 1}},
    ),
    ("a byte-order mark is dropped", "\ufeffFROM llama3.2\n", {"base": "llama3.2"}),
    (
        "control characters are dropped",
        "\x00FROM llama3.2\nSYSTEM a\x07b\u200bc\n",
        {"system": "abc"},
    ),
    ("tabs inside a value are kept", "FROM m\nSYSTEM a\tb\n", {"system": "a\tb"}),
    (
        "namespaced and tagged FROM",
        "FROM library/llama3.2:3b-instruct-q4_K_M\n",
        {"base": "library/llama3.2:3b-instruct-q4_K_M"},
    ),
    (
        "registry host with port",
        "FROM localhost:5000/team/model:v1\n",
        {"base": "localhost:5000/team/model:v1"},
    ),
    ("a persona building on a persona", "FROM persona-1-james\n", {"base": "persona-1-james"}),
]

# (case id, Modelfile text, line, words the message must contain)
FAILS: list[tuple[str, str, int, list[str]]] = [
    (
        "the seed's typo",
        "FROM llama3.2\nPARAMETER termperature 0.3\n",
        2,
        ["unknown parameter 'termperature'", "did you mean 'temperature'"],
    ),
    (
        "parameter names are case-sensitive",
        "FROM m\nPARAMETER Temperature 0.7\n",
        2,
        ["unknown parameter 'Temperature'", "'temperature'"],
    ),
    (
        "removed parameter",
        "FROM m\n\nPARAMETER tfs_z 1\n",
        3,
        ["unknown parameter 'tfs_z'", "no longer"],
    ),
    (
        "unknown parameter, nothing close",
        "FROM m\nPARAMETER banana 1\n",
        2,
        ["unknown parameter 'banana'", "known parameters: num_ctx"],
    ),
    (
        "PARAMETER system is not SYSTEM",
        "FROM m\nPARAMETER system hi\n",
        2,
        ["unknown parameter 'system'", "SYSTEM instruction"],
    ),
    ("bad float", "FROM m\nPARAMETER temperature hot\n", 2, ["invalid float value [hot]"]),
    (
        "comment after a value",
        "FROM m\nPARAMETER temperature 0.3 # note\n",
        2,
        ["invalid float value [0.3 # note]"],
    ),
    (
        "float out of float32 range",
        "FROM m\nPARAMETER temperature 1e39\n",
        2,
        ["invalid float value [1e39]"],
    ),
    (
        "infinity cannot travel as JSON",
        "FROM m\nPARAMETER temperature inf\n",
        2,
        ["invalid float value [inf]"],
    ),
    (
        "int written as a float",
        "FROM m\nPARAMETER num_ctx 4096.0\n",
        2,
        ["invalid int value [4096.0]"],
    ),
    (
        "int out of int64 range",
        "FROM m\nPARAMETER seed 9223372036854775808\n",
        2,
        ["invalid int value"],
    ),
    ("bad bool", "FROM m\nPARAMETER use_mmap yes\n", 2, ["invalid bool value [yes]"]),
    (
        "illegal character in a parameter name",
        "FROM m\nPARAMETER top-k 40\n",
        2,
        ["unexpected EOF: top", "letters, digits and _"],
    ),
    (
        "parameter without a value",
        "FROM m\nPARAMETER temperature\n",
        2,
        ["unexpected EOF: temperature", "needs a value"],
    ),
    (
        "parameter without a value at the end",
        "FROM m\nPARAMETER temperature",
        2,
        ["unexpected EOF: temperature"],
    ),
    ("PARAMETER alone", "FROM m\nPARAMETER\n", 2, ["PARAMETER needs a name and a value"]),
    ("unknown instruction", "FROM m\nFOO bar\n", 2, [INVALID_COMMAND]),
    ("misspelt instruction", "FORM llama3.2\n", 1, [INVALID_COMMAND, "did you mean FROM?"]),
    ("instruction with a digit", "FROM m\nSYS7EM x\n", 2, [INVALID_COMMAND]),
    ("instruction without a value", "FROM\n", 1, ["FROM needs a value"]),
    (
        "instruction without a value at the end",
        "FROM m\nSYSTEM",
        2,
        ["unexpected EOF", "SYSTEM needs a value"],
    ),
    ("missing FROM", "SYSTEM hi\nPARAMETER termperature 1\n", 1, ["no FROM line"]),
    ("empty file", "", 1, ["no FROM line"]),
    ("only comments", "# nothing here\n", 1, ["no FROM line"]),
    ("FROM with an empty value", 'FROM ""\n', 1, ["FROM needs a model name"]),
    (
        "invalid model name with a # comment",
        "FROM llama3.2 # base\n",
        1,
        ["invalid model name 'llama3.2 # base'", "comment"],
    ),
    (
        "invalid model name with spaces",
        "FROM lemons make lemonade\n",
        1,
        ["invalid model name", "no spaces"],
    ),
    (
        "unterminated triple quote",
        'FROM m\nSYSTEM """never\nclosed\n',
        2,
        ["unexpected EOF", '"""'],
    ),
    ("unterminated quote", 'FROM m\n\nSYSTEM "open\n', 3, ["unexpected EOF"]),
    ("text after a closing triple quote", 'FROM m\nSYSTEM """a""" b\n', 2, ["unexpected EOF"]),
    ("MESSAGE role tool", "FROM m\nMESSAGE tool {}\n", 2, [INVALID_ROLE]),
    (
        "MESSAGE roles are lower case",
        "FROM m\nMESSAGE User hi\n",
        2,
        [INVALID_ROLE, "did you mean 'user'"],
    ),
    ("MESSAGE without text", "FROM m\nMESSAGE system\n", 2, ["unexpected EOF: system"]),
    ("MESSAGE role with a digit", "FROM m\nMESSAGE us3r hi\n", 2, ["unexpected EOF: us"]),
    (
        "bad REQUIRES",
        "FROM m\nREQUIRES banana\n",
        2,
        ["requires must be a valid semver (e.g. 0.14.0)"],
    ),
    ("REQUIRES with a leading zero", "FROM m\nREQUIRES 0.014.0\n", 2, ["semver"]),
    ("ADAPTER", "FROM m\nADAPTER ./lora.gguf\n", 2, ["ADAPTER is not supported from Discord"]),
    ("DRAFT", "FROM m\ndraft /models/small\n", 2, ["DRAFT is not supported from Discord"]),
    ("RENDERER", "FROM m\nRENDERER qwen3\n", 2, ["RENDERER is not supported"]),
    ("PARSER", "FROM m\nPARSER qwen3\n", 2, ["PARSER is not supported"]),
    (
        "FROM an absolute path",
        "FROM /models/llama.gguf\n",
        1,
        ["local file", "not supported from Discord"],
    ),
    ("FROM a relative path", "# base\nFROM ./weights\n", 2, ["local file"]),
    ("FROM a parent path", "FROM ../weights\n", 1, ["local file"]),
    ("FROM the home directory", "FROM ~/models/x\n", 1, ["local file"]),
    ("FROM the current directory", "FROM .\n", 1, ["local file"]),
    ("FROM a GGUF file name", "FROM model.GGUF\n", 1, ["local file"]),
    ("FROM a safetensors file", "FROM model.safetensors\n", 1, ["local file"]),
    ("FROM a Windows path", "FROM C:\\models\\x\n", 1, ["local file"]),
    (
        "errors are found in order",
        "FROM m\nPARAMETER top_k x\nPARAMETER termperature 1\n",
        2,
        ["invalid int value [x]"],
    ),
    (
        "a lexer error wins over a value error",
        'FROM m\nPARAMETER top_k x\nSYSTEM "open\n',
        3,
        ["unexpected EOF"],
    ),
    (
        "CRLF counts as one line break",
        "FROM m\r\n\r\nPARAMETER top_k x\r\n",
        3,
        ["invalid int value"],
    ),
]


@pytest.mark.parametrize(
    ("text", "expected"), [(t, e) for _, t, e in PARSES], ids=[c for c, _, _ in PARSES]
)
def test_modelfile_parses_like_ollama(text: str, expected: dict[str, Any]) -> None:
    modelfile = parse(text)
    for name, value in expected.items():
        assert getattr(modelfile, name) == value, name


@pytest.mark.parametrize(
    ("text", "line", "words"), [(t, n, w) for _, t, n, w in FAILS], ids=[c for c, _, _, _ in FAILS]
)
def test_modelfile_errors_name_the_line_and_the_problem(
    text: str, line: int, words: list[str]
) -> None:
    with pytest.raises(ModelfileError) as caught:
        parse(text)
    error = caught.value
    assert error.line == line
    for word in words:
        assert word in error.message
    assert isinstance(error, InputError)
    assert error.user_message.startswith(f"Modelfile line {line}: ")


def test_modelfile_options_are_the_create_parameters() -> None:
    modelfile = parse(
        'FROM m\nPARAMETER stop "<|eot_id|>"\nPARAMETER num_ctx 2048\nPARAMETER temperature 0.3\n'
    )
    assert modelfile.options() == {"stop": ["<|eot_id|>"], "num_ctx": 2048, "temperature": 0.3}
    assert modelfile.num_ctx == 2048
    assert parse("FROM m\n").num_ctx is None


def test_every_known_parameter_parses() -> None:
    values = {int: "1", float: "0.5", bool: "true", tuple: "x"}
    text = "FROM m\n" + "".join(f"PARAMETER {n} {values[t]}\n" for n, t in PARAMETER_TYPES.items())
    assert set(parse(text).parameters) == set(PARAMETER_TYPES)
    assert not DEPRECATED_PARAMETERS & set(PARAMETER_TYPES)


def test_model_names_follow_ollama() -> None:
    assert is_model_name("llama3.2")
    assert is_model_name("hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M")
    assert is_model_name("llama3.2@sha256:abc")
    assert not is_model_name("")
    assert not is_model_name("a/b/c/d")
    assert not is_model_name("-leading-dash")
    assert not is_model_name("x" * 81)


# ------------------------------------------------------------------------- hypothesis

FRAGMENTS = [
    "FROM ",
    "from ",
    "PARAMETER ",
    "parameter ",
    "SYSTEM ",
    "TEMPLATE ",
    "MESSAGE ",
    "LICENSE ",
    "ADAPTER ",
    "REQUIRES ",
    "RENDERER ",
    "FOO ",
    "user ",
    "assistant ",
    "tool ",
    "stop ",
    "temperature ",
    "termperature ",
    "num_ctx ",
    "use_mmap ",
    "top-k ",
    "llama3.2",
    "./x.gguf",
    '"',
    '"""',
    "#",
    " ",
    "\t",
    "\n",
    "\r\n",
    "\r",
    "0.3",
    "4096",
    "true",
    "1e39",
    "0x1p3",
    "-",
    "_",
    ":",
    "\x00",
    "\ufeff",
    "é",
    "{{ .Prompt }}",
    "9" * 25,
]
modelfile_like = st.lists(st.sampled_from(FRAGMENTS), max_size=40).map("".join)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(), modelfile_like))
def test_any_text_parses_or_raises_a_modelfile_error_with_a_line(text: str) -> None:
    failure: ModelfileError | None = None
    try:
        modelfile = parse(text)
    except ModelfileError as error:
        failure = error
    if failure is None:
        assert isinstance(modelfile, Modelfile)
        assert modelfile.base
        return
    normalised = text.replace("\r\n", "\n")
    lines = normalised.count("\n") + normalised.count("\r") + 1
    assert 1 <= failure.line <= lines
    assert failure.message


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(modelfile_like)
def test_whatever_parses_survives_the_round_trip(text: str) -> None:
    try:
        modelfile = parse(text)
    except ModelfileError:
        return
    assert parse(render(modelfile)) == modelfile


values = st.text(
    alphabet=st.sampled_from(['"', " ", "\t", "\n", "a", "b", "#", ":", "é", "{", "}"]), max_size=30
)
printable = values.filter(lambda v: all(c.isprintable() or c in " \t\n" for c in v))


@st.composite
def modelfiles(draw: st.DrawFn) -> Modelfile:
    parameters: dict[str, Any] = {}
    if draw(st.booleans()):
        parameters["temperature"] = draw(st.sampled_from([0.0, 0.3, 1.5, 1e-05, 2.5e20]))
    if draw(st.booleans()):
        parameters["num_ctx"] = draw(st.integers(-(2**63), 2**63 - 1))
    if draw(st.booleans()):
        parameters["use_mmap"] = draw(st.booleans())
    stops = draw(st.lists(printable, max_size=3))
    if stops:
        parameters["stop"] = tuple(stops)
    return Modelfile(
        base=draw(st.sampled_from(["llama3.2", "qwen3:8b", "library/llava:latest"])),
        system=draw(st.none() | printable),
        template=draw(st.none() | printable),
        parameters=parameters,
        messages=tuple(
            draw(
                st.lists(
                    st.builds(Message, st.sampled_from(["system", "user", "assistant"]), printable),
                    max_size=3,
                )
            )
        ),
        license=tuple(draw(st.lists(printable, max_size=2))),
        requires=draw(st.none() | st.sampled_from(["0.14.0", "1.2", "0.33.0-rc2"])),
    )


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(modelfiles())
def test_render_then_parse_gives_the_same_persona(modelfile: Modelfile) -> None:
    try:
        text = render(modelfile)
    except ValueError:
        # A few strings (say 'a"""\nb"\n') cannot be written in Modelfile syntax at all; the
        # parser never produces them.
        return
    assert parse(text) == modelfile


def test_the_seed_round_trips_to_readable_text() -> None:
    assert render(parse(SEED)) == (
        "FROM llama3.2\nPARAMETER temperature 0.3\nSYSTEM You are James, a butler.\n"
    )
    multi = parse('FROM m\nSYSTEM """\nline "one"\n"""\nPARAMETER stop "<|eot_id|>"\n')
    assert render(multi) == ('FROM m\nPARAMETER stop <|eot_id|>\nSYSTEM """\nline "one"\n"""\n')
    assert parse(render(multi)) == multi


def test_values_that_need_quotes_get_them() -> None:
    spaced = Modelfile(base="m", system="  padded  ", messages=(Message("user", '"quoted"'),))
    text = render(spaced)
    assert 'SYSTEM "  padded  "' in text
    assert 'MESSAGE user """"quoted""""' in text
    assert parse(text) == spaced
