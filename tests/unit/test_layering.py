"""The import-layering contract of bot/: no import circle, and every arrow points down.

The graph is read with `ast` from the source (nothing is imported), imports under
``if TYPE_CHECKING:`` included: a circle of type hints is still a circle a reader has to hold in
their head, and the next runtime import along it breaks start-up. The layers, from the top:

    bot.__main__ → bot.app (composition root) → bot.cogs.* → bot.replies, bot.client, bot.ui
    → services (bot.conversation, bot.personas, bot.models, ...) → bot.ollama, bot.storage

`check` returns every broken rule as a sentence; the tests below run it on bot/ and, so that the
contract itself can fail, on small packages written with a bad import.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

BOT = Path(__file__).resolve().parents[2] / "bot"

LOWER_LAYERS = (
    "bot.storage",
    "bot.ollama",
    "bot.conversation",
    "bot.models",
    "bot.personas",
    "bot.knowledge",
)
OLLAMA_BOUNDARY = "bot.ollama.host"


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str  # a module of the package, or the top-level name of a library
    line: int
    top_level: bool  # at module level (TYPE_CHECKING blocks included), not inside a function


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _function_bodies(tree: ast.AST) -> set[int]:
    """ids of the import nodes inside a function (run when it is called, not at import)."""
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            inside.update(
                id(n) for n in ast.walk(node) if isinstance(n, ast.Import | ast.ImportFrom)
            )
    return inside


def imports_of(root: Path) -> Iterator[Import]:
    """Every import in the package at `root`, resolved to the package's modules where it names
    one (``from bot.cogs import chat`` is bot.cogs.chat; ``from .x import y`` is resolved)."""
    files = {module_name(root, path): path for path in sorted(root.rglob("*.py"))}
    for module, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        in_functions = _function_bodies(tree)
        is_package = path.name == "__init__.py"
        for node in ast.walk(tree):
            top_level = id(node) not in in_functions
            if isinstance(node, ast.Import):
                for alias in node.names:
                    name = alias.name
                    while name not in files and "." in name and name.split(".")[0] == root.name:
                        name = name.rsplit(".", 1)[0]
                    target = name if name in files else alias.name.split(".")[0]
                    yield Import(module, target, node.lineno, top_level)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    package = module.split(".") if is_package else module.split(".")[:-1]
                    package = package[: len(package) - (node.level - 1)]
                    base = ".".join([*package, base] if base else package)
                if base.split(".")[0] != root.name:
                    yield Import(module, base.split(".")[0], node.lineno, top_level)
                    continue
                for alias in node.names:
                    submodule = f"{base}.{alias.name}"
                    target = submodule if submodule in files else base
                    yield Import(module, target, node.lineno, top_level)


def cycles(edges: list[Import]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    graph: dict[str, set[str]] = {}
    for edge in edges:
        graph.setdefault(edge.importer, set())
        if edge.imported != edge.importer:
            graph[edge.importer].add(edge.imported)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph.get(node, ())):
            if other not in graph:
                continue  # a library
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component: list[str] = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _in(module: str, *prefixes: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def check(root: Path) -> list[str]:
    """Every rule of the contract that the package at `root` breaks, as a sentence."""
    edges = list(imports_of(root))
    problems = [
        "import circle: " + " ↔ ".join(component)
        for component in cycles([e for e in edges if e.top_level])
    ]
    for edge in edges:
        where = f"{edge.importer} (line {edge.line}) imports {edge.imported}"
        is_cog = _in(edge.imported, "bot.cogs") and edge.imported != "bot.cogs"
        if edge.imported == "bot.app" and edge.importer != "bot.__main__":
            problems.append(f"{where}: only bot.__main__ may import the composition root")
        if is_cog and edge.importer != "bot.app" and not _in(edge.importer, "bot.cogs"):
            problems.append(f"{where}: cogs are built and wired by bot.app alone")
        if is_cog and edge.importer == "bot.replies":
            problems.append(f"{where}: the reply pipeline must not know the cogs")
        if edge.imported == "ollama" and edge.importer != OLLAMA_BOUNDARY:
            problems.append(f"{where}: only {OLLAMA_BOUNDARY} talks to the ollama library")
        if _in(edge.importer, *LOWER_LAYERS) and (
            is_cog or _in(edge.imported, "bot.client", "bot.app")
        ):
            problems.append(f"{where}: a lower layer imports an upper one")
    return problems


def test_bot_keeps_the_import_layering_contract() -> None:
    problems = check(BOT)
    assert not problems, "\n".join(problems)


def test_the_contract_reads_the_whole_package() -> None:
    edges = list(imports_of(BOT))
    importers = {e.importer for e in edges}
    assert {"bot.__main__", "bot.app", "bot.client", "bot.replies", "bot.ollama.host"} <= importers
    assert any(e.importer == "bot.ollama.host" and e.imported == "ollama" for e in edges)
    assert any(e.importer == "bot.app" and e.imported.startswith("bot.cogs.") for e in edges)


def write_package(root: Path, files: dict[str, str]) -> Path:
    """A small package named `bot` under `root` with these modules (dotted name -> source)."""
    for name, source in files.items():
        parts = name.split(".")
        path = root.joinpath(*parts[:-1], parts[-1] + ".py")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source, encoding="utf-8")
        for depth in range(1, len(parts)):
            init = root.joinpath(*parts[:depth], "__init__.py")
            if not init.exists():
                init.write_text("", encoding="utf-8")
    return root / "bot"


GOOD = {
    "bot.__main__": "from bot import app\n",
    "bot.app": "from bot.cogs import chat\nfrom bot import client\n",
    "bot.client": "from bot.storage import history\n",
    "bot.cogs.chat": "from bot import replies\n",
    "bot.replies": "from bot.ollama.protocol import Ollama\n",
    "bot.ollama.protocol": "from typing import Protocol\n",
    "bot.ollama.host": "import ollama\n",
    "bot.storage.history": "import sqlalchemy\n",
}

TYPE_CHECKING_CIRCLE = (
    "from __future__ import annotations\nfrom typing import TYPE_CHECKING\n"
    "if TYPE_CHECKING:\n    from bot.cogs.chat import ChatCog\n"
)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"bot.ollama.protocol": "from bot import client\n"}, "a lower layer imports an upper"),
        ({"bot.replies": TYPE_CHECKING_CIRCLE}, "import circle: bot.cogs.chat ↔ bot.replies"),
        ({"bot.replies": "def later():\n    from bot.cogs import chat\n"}, "must not know the"),
        ({"bot.client": "from bot.cogs.chat import ChatCog\n"}, "wired by bot.app alone"),
        ({"bot.client": "from .app import run\n"}, "only bot.__main__ may import"),
        ({"bot.replies": "from ollama import AsyncClient\n"}, "only bot.ollama.host talks"),
        ({"bot.storage.history": "import bot.app\n"}, "a lower layer imports an upper"),
    ],
)
def test_a_bad_import_breaks_the_contract(
    tmp_path: Path, change: dict[str, str], problem: str
) -> None:
    assert check(write_package(tmp_path / "good", GOOD)) == []
    broken = check(write_package(tmp_path / "bad", {**GOOD, **change}))
    assert any(problem in p for p in broken), broken
