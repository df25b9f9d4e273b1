"""The Ollama boundary: one module imports the `ollama` client, and only through its public API."""

from __future__ import annotations

import ast
from pathlib import Path

BOT = Path(__file__).resolve().parents[2] / "bot"


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):  # also the imports under TYPE_CHECKING
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_only_the_host_module_imports_the_ollama_client() -> None:
    importers = {
        str(path.relative_to(BOT))
        for path in BOT.rglob("*.py")
        if any(n == "ollama" or n.startswith("ollama.") for n in imported_modules(path))
    }
    assert importers == {"ollama/host.py"}


def test_the_host_uses_no_private_attribute_of_the_client() -> None:
    tree = ast.parse((BOT / "ollama" / "host.py").read_text(encoding="utf-8"))
    private = [
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Attribute)
        and node.value.attr == "_client"
        and node.attr.startswith("_")
    ]
    reached_into = [
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr == "_client"
        and isinstance(node.value, ast.Attribute)
        and node.value.attr == "_client"
    ]
    assert not private and not reached_into  # e.g. self._client._client.aclose()


def test_services_are_typed_against_the_protocol_not_the_pool() -> None:
    services = [
        "conversation/service.py",
        "models/service.py",
        "personas/service.py",
        "sentiment/service.py",
        "vision/routing.py",
        "metrics.py",
        "cogs/status.py",
    ]
    for name in services:
        modules = imported_modules(BOT / name)
        assert "bot.ollama.pool" not in modules and "bot.ollama.host" not in modules, name
