"""Scenario "knowledge": retrieval latency and memory per guild size, ingest throughput, and
recall@5 on a small question set (bench/data/knowledge_set.json).

- Latency: the guild index (bot/knowledge/index.py) is built, as the service builds it from the
  database's rows, from synthetic 768-dimension vectors shaped like real embeddings (clusters of
  topics, normalised; a tenth of the chunks restricted to channels the asker cannot read), then
  one question is searched at a time (top 5, the channel mask applied): p50 and p99. At the size
  where the index leaves exact search (int8 vectors and sign bits), its recall@5 against the
  exact float32 search is measured too, with the exact search's own latency beside it.
- Memory: the bytes of the index's arrays per 100,000 chunks.
- Ingest: `KnowledgeService.add_document` on a migrated SQLite file, with an embedder that answers
  at once (the embedding model's own time is excluded, as the issue asks): chunking, vector
  conversion and storing, in chunks a second.
- Quality: the question set through the real service, the Ollama double's embeddings over HTTP
  (a hashed bag of words: the figure says how well retrieval works with that, not with
  nomic-embed-text) and a real SQLite file: recall@5 of the section holding each answer.

    python -m bench.knowledge            # or: python -m bench --only knowledge
"""

from __future__ import annotations

import os

# Before numpy loads, as bot/knowledge/__init__.py does for the bot (one BLAS thread).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np

from bench.report import Figure, percentile, table
from bot.knowledge.chunking import Page
from bot.knowledge.files import Document, FileLimits
from bot.knowledge.index import EXACT_LIMIT, GuildIndex, ModelIndex
from bot.knowledge.service import KnowledgeService, KnowledgeSettings
from bot.ollama.host import OllamaHost
from bot.ollama.protocol import Embeddings, Ollama
from bot.storage import migrate
from bot.storage.engine import create_engine, session_factory
from bot.storage.knowledge import KnowledgeStore

SCENARIO = "knowledge"
DIMS = 768
DATA = Path(__file__).resolve().parent / "data" / "knowledge_set.json"
TARGET_P99_MS = 20.0
TARGET_MB_PER_100K = 150.0


@dataclass(frozen=True)
class KnowledgeOptions:
    sizes: tuple[int, ...] = (1_000, 10_000, 100_000)
    questions: int = 300
    ingest_chunks: int = 3_000


def synthetic(n: int, seed: int = 0) -> np.ndarray:
    """Vectors like a real embedding model's: topics (cluster centres) plus each chunk's own
    direction, normalised."""
    rng = np.random.default_rng(seed)
    topics = rng.standard_normal((max(1, n // 50), DIMS)).astype(np.float32)
    vectors = topics[rng.integers(0, len(topics), n)] + 0.8 * rng.standard_normal((n, DIMS)).astype(
        np.float32
    )
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


def questions_near(vectors: np.ndarray, count: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    chosen = vectors[rng.integers(0, len(vectors), count)]
    queries = chosen + 0.6 * rng.standard_normal(chosen.shape).astype(np.float32) / np.sqrt(DIMS)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    return queries.astype(np.float32)


def latency(size: int, options: KnowledgeOptions) -> list[Figure]:
    vectors = synthetic(size)
    scopes = [None if i % 10 else 1000 + i % 7 for i in range(size)]
    rows = [(i, scopes[i], "m", vectors[i].tobytes()) for i in range(size)]
    began = time.perf_counter()
    index = GuildIndex.build(rows)
    built = time.perf_counter() - began
    del rows
    readable = {1000, 1001}  # the asker reads two of the seven private channels
    queries = questions_near(vectors, options.questions)
    times = []
    found: list[list[int]] = []
    for query in queries:
        start = time.perf_counter()
        matches = index.search({"m": query}, readable, 5)
        times.append((time.perf_counter() - start) * 1000)
        found.append([m.chunk_id for m in matches])
    label = f"{size:,} chunks"
    figures = [
        Figure(SCENARIO, f"search p50, {label}", statistics.median(times), "ms", digits=2),
        Figure(
            SCENARIO,
            f"search p99, {label}",
            percentile(times, 0.99),
            "ms",
            limit=TARGET_P99_MS if size >= 100_000 else None,
            inclusive=True,
            digits=2,
        ),
        Figure(
            SCENARIO,
            f"index memory, {label}",
            index.nbytes / 1e6,
            "MB",
            note=f"built in {built:.1f} s",
        ),
    ]
    if size >= 100_000:
        figures.append(
            Figure(
                SCENARIO,
                "index memory per 100k chunks",
                index.nbytes / 1e6 * 100_000 / size,
                "MB",
                limit=TARGET_MB_PER_100K,
                inclusive=True,
            )
        )
    if size > EXACT_LIMIT:
        figures += exact_comparison(vectors, scopes, readable, queries, found, label)
    return figures


def exact_comparison(
    vectors: np.ndarray,
    scopes: Sequence[int | None],
    readable: set[int],
    queries: np.ndarray,
    found: list[list[int]],
    label: str,
) -> list[Figure]:
    """The exact float32 search on the same chunks: its latency, and the share of its top 5
    that the int8 + sign-bit search found."""
    ids = np.arange(len(vectors), dtype=np.int64)
    scope_array = np.fromiter((s or 0 for s in scopes), dtype=np.int64, count=len(scopes))
    exact = ModelIndex(ids, scope_array, vectors, exact_limit=len(vectors))
    allowed = (scope_array == 0) | np.isin(scope_array, list(readable))
    times = []
    hits = 0
    for query, got in zip(queries, found, strict=True):
        start = time.perf_counter()
        best = exact.search(query, allowed, 5)
        times.append((time.perf_counter() - start) * 1000)
        hits += len({m.chunk_id for m in best} & set(got))
    return [
        Figure(SCENARIO, f"exact float32 search p99, {label}", percentile(times, 0.99), "ms"),
        Figure(
            SCENARIO,
            f"recall@5 of the int8 search vs exact, {label}",
            100 * hits / (5 * len(queries)),
            "%",
            limit=95.0,
            higher_is_better=True,
            inclusive=True,
        ),
    ]


class InstantEmbedder:
    """Answers `embed` at once with fixed unit vectors: ingest without the model's time."""

    def __init__(self) -> None:
        vector = np.zeros(DIMS, dtype=np.float32)
        vector[0] = 1.0
        self._vector = vector.tolist()

    async def embed(self, model: str, texts: Sequence[str]) -> Embeddings:
        return Embeddings(model=model, vectors=[self._vector] * len(texts), tokens=0)


def _settings() -> KnowledgeSettings:
    return KnowledgeSettings(
        model="nomic-embed-text",
        chunk_tokens=300,
        chunk_overlap=40,
        top_k=5,
        share=0.25,
        min_score=0.0,
        files=FileLimits(max_bytes=10**9, max_pdf_pages=1000, max_chars=10**9),
    )


async def ingest(options: KnowledgeOptions, folder: Path) -> list[Figure]:
    engine = create_engine(f"sqlite+aiosqlite:///{folder / 'ingest.db'}")
    try:
        await migrate.upgrade(engine)
        service = KnowledgeService(
            gateway=cast(Ollama, InstantEmbedder()),
            store=KnowledgeStore(session_factory(engine)),
            settings=_settings(),
        )
        paragraph = "The members of the server talk about games, art and events. " * 18
        text = "\n\n".join(f"## Part {n}\n\n{paragraph}" for n in range(options.ingest_chunks))
        document = Document(name="big.md", kind="markdown", pages=(Page(text),))
        began = time.perf_counter()
        added = await service.add_document(
            guild_id=1, channel_id=None, document=document, added_by=1
        )
        elapsed = time.perf_counter() - began
    finally:
        await engine.dispose()
    return [
        Figure(
            SCENARIO,
            f"ingest, {added.chunks:,} chunks (embedding excluded)",
            added.chunks / elapsed,
            "chunks/s",
            digits=0,
        )
    ]


async def quality(folder: Path) -> list[Figure]:
    from tests.doubles.fake_ollama import FakeOllama  # the bench runs from a checkout

    data: dict[str, Any] = json.loads(DATA.read_text(encoding="utf-8"))
    engine = create_engine(f"sqlite+aiosqlite:///{folder / 'quality.db'}")
    async with FakeOllama() as fake:
        host = OllamaHost(fake.url)
        try:
            await migrate.upgrade(engine)
            service = KnowledgeService(
                gateway=host, store=KnowledgeStore(session_factory(engine)), settings=_settings()
            )
            await service.start()
            document = Document(
                name="handbook.md", kind="markdown", pages=(Page(data["document"]),)
            )
            await service.add_document(guild_id=1, channel_id=None, document=document, added_by=1)
            found = 0
            first = 0
            for item in data["questions"]:
                hits = await service.search(1, item["question"], lambda _: False, top_k=5)
                sections = [(h.chunk.heading or "").split(" › ")[-1] for h in hits]
                found += item["section"] in sections
                first += bool(sections) and sections[0] == item["section"]
        finally:
            await host.close()
            await engine.dispose()
    count = len(data["questions"])
    return [
        Figure(
            SCENARIO,
            f"recall@5, {count} questions (the double's embeddings)",
            100 * found / count,
            "%",
        ),
        Figure(SCENARIO, "recall@1, same set", 100 * first / count, "%"),
    ]


async def run(options: KnowledgeOptions) -> list[Figure]:
    figures: list[Figure] = []
    for size in options.sizes:
        figures += await asyncio.to_thread(latency, size, options)
    with tempfile.TemporaryDirectory(prefix="bench-knowledge-") as folder:
        figures += await ingest(options, Path(folder))
        figures += await quality(Path(folder))
    return figures


def main() -> None:
    print(table(asyncio.run(run(KnowledgeOptions()))))


if __name__ == "__main__":
    main()
