"""The persona rules that need no server: names, attachments, the shipped Modelfiles."""

from __future__ import annotations

import pytest

from bot.cogs.personas import describe
from bot.errors import InputError
from bot.ollama.protocol import PullProgress as Progress
from bot.personas.modelfile import is_model_name, parse
from bot.personas.service import (
    BUILTIN_DIR,
    decode_modelfile,
    load_builtins,
    normalise_name,
    ollama_name,
)


@pytest.mark.parametrize(
    ("raw", "name"),
    [("james", "james"), ("  James ", "james"), ("a-b_c9", "a-b_c9"), ("x" * 32, "x" * 32)],
)
def test_persona_names_are_normalised(raw: str, name: str) -> None:
    assert normalise_name(raw) == name


@pytest.mark.parametrize("raw", ["", "  ", "x" * 33, "bad name", "émile", "a/b", "a:b", "a.b"])
def test_bad_persona_names_are_refused_with_the_rules(raw: str) -> None:
    with pytest.raises(InputError, match="lowercase letters, digits, - and _"):
        normalise_name(raw)


def test_ollama_names_never_collide_and_are_valid() -> None:
    longest = ollama_name(2**64 - 1, "x" * 32)
    assert is_model_name(longest)
    assert ollama_name(1, "butler") != ollama_name(2, "butler")
    assert ollama_name(None, "james") == "persona-builtin-james"
    assert ollama_name(None, "x") != ollama_name(1, "x")


def test_attachments_decode_like_ollama_reads_them() -> None:
    text = "FROM llama3.2\nSYSTEM Café\n"
    assert decode_modelfile(text.encode()) == text
    assert decode_modelfile(b"\xef\xbb\xbf" + text.encode()) == text
    assert decode_modelfile(text.encode("utf-16")) == text  # with its BOM
    assert decode_modelfile(b"\xfe\xff" + text.encode("utf-16-be")) == text
    with pytest.raises(InputError, match="not a text file"):
        decode_modelfile(text.encode("latin-1"))
    with pytest.raises(InputError, match="not a text file"):
        decode_modelfile(text.encode("utf-16-le"))  # no BOM: not text to Ollama either
    with pytest.raises(InputError, match="binary"):
        decode_modelfile(b"GGUF\x00\x00")
    with pytest.raises(InputError, match="at most 64 KB"):
        decode_modelfile(b"#" * (64 * 1024 + 1))
    assert decode_modelfile(b"FROM m\n" + b"#" * (64 * 1024 - 7)).startswith("FROM m")


def test_the_shipped_personas_parse_and_james_has_the_seeds_settings() -> None:
    builtins = load_builtins()
    assert set(builtins) == {"assistant", "james"}
    james = builtins["james"]
    assert (james.base_model, james.builtin, james.ollama_model) == (
        "llama3.2",
        True,
        "persona-builtin-james",
    )
    assert james.system is not None and james.system.startswith("You are James")
    assert parse(james.modelfile).parameters == {"temperature": 0.3}
    lines = (BUILTIN_DIR / "james.Modelfile").read_text().splitlines()
    assert not [line for line in lines if "termperature" in line and not line.startswith("#")]


def test_progress_lines_are_short() -> None:
    digest = "sha256:" + "ab" * 32
    assert describe(Progress(f"using existing layer {digest}")) == (
        "using existing layer sha256:abababababab…"
    )
    assert describe(
        Progress("pulling abababababab", total=2_000_000_000, completed=500_000_000)
    ) == ("pulling abababababab · 25% of 2.00 GB")
    assert describe(Progress("")) == "working"
