"""The in-memory search index of one guild's chunks, one part per embedding model.

Up to EXACT_LIMIT chunks of a model the search is exact: float32 vectors, one matrix-vector
product (a few milliseconds at 10,000 chunks). Beyond it, float32 would cost 300 MB per 100,000
768-dimension chunks and, on the bench machine, about 50 ms a question (the product reads every
byte of the matrix), so the vectors are kept as int8 (a scale per vector: 77 MB per 100,000)
with their sign bits (10 MB): the sign bits' Hamming distance picks the best RESCORE candidates
in a few milliseconds, and those are scored again from their int8 vectors. bench/knowledge.py
measures the latency, the memory and the recall of this against the exact search."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

EXACT_LIMIT = 20_000
RESCORE = 512
"""Candidates kept by the sign bits for exact rescoring (large indexes only)."""

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


def to_bytes(vector: Sequence[float]) -> bytes:
    """A vector as stored: float32, L2-normalised again (a server may round)."""
    array = np.asarray(vector, dtype=np.float32)
    norm = float(np.linalg.norm(array))
    if norm > 0:
        array = array / norm
    return array.astype(np.float32).tobytes()


def from_vector(vector: Sequence[float]) -> FloatArray:
    array = np.asarray(vector, dtype=np.float32)
    norm = float(np.linalg.norm(array))
    return array / norm if norm > 0 else array


@dataclass(frozen=True, slots=True)
class Match:
    chunk_id: int
    score: float


class ModelIndex:
    """The chunks embedded by one model."""

    def __init__(
        self, ids: IntArray, scopes: IntArray, vectors: FloatArray, exact_limit: int = EXACT_LIMIT
    ) -> None:
        self.ids = ids
        self.scopes = scopes
        """The channel a chunk is restricted to; 0: the whole server."""
        self.dims = int(vectors.shape[1]) if vectors.ndim == 2 else 0
        self.exact: FloatArray | None = None
        self.codes: npt.NDArray[np.int8] | None = None
        self.scales: FloatArray | None = None
        self.bits: npt.NDArray[np.uint64] | None = None
        """The sign bits, a row per 64 dimensions (transposed: a popcount over one word of
        every vector at a time is four times faster than over each vector's words)."""
        if len(ids) <= exact_limit:
            self.exact = np.ascontiguousarray(vectors, dtype=np.float32)
            return
        peak = np.abs(vectors).max(axis=1)
        peak[peak == 0] = 1.0
        self.scales = (127.0 / peak).astype(np.float32)
        self.codes = np.round(vectors * self.scales[:, None]).astype(np.int8)
        self.bits = np.ascontiguousarray(_sign_bits(vectors).T)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def nbytes(self) -> int:
        parts = [self.ids, self.scopes, self.exact, self.codes, self.scales, self.bits]
        return sum(p.nbytes for p in parts if p is not None)

    def search(self, query: FloatArray, allowed: BoolArray | None, k: int) -> list[Match]:
        """The `k` best chunks for `query` (normalised), among the `allowed` ones."""
        if len(self.ids) == 0 or k <= 0 or query.shape[0] != self.dims:
            return []
        if self.exact is not None:
            scores = self.exact @ query
            if allowed is not None:
                scores = np.where(allowed, scores, -np.inf)
            best = _top(scores, k)
            return [
                Match(int(self.ids[i]), float(scores[i])) for i in best if np.isfinite(scores[i])
            ]
        assert self.codes is not None and self.scales is not None and self.bits is not None
        words = _sign_bits(query[None, :])[0]
        distance = np.bitwise_count(self.bits[0] ^ words[0]).astype(np.uint16)
        for row, word in zip(self.bits[1:], words[1:], strict=True):
            distance += np.bitwise_count(row ^ word)
        if allowed is not None:
            distance = np.where(allowed, distance, np.iinfo(np.uint16).max)
        count = min(len(distance), max(RESCORE, k))
        candidates = np.argpartition(distance, count - 1)[:count]
        if allowed is not None:
            candidates = candidates[allowed[candidates]]
        scores = (self.codes[candidates].astype(np.float32) @ query) / self.scales[candidates]
        best = _top(scores, k)
        return [Match(int(self.ids[candidates[i]]), float(scores[i])) for i in best]


class GuildIndex:
    """A guild's chunks, by the model that embedded them."""

    def __init__(self, parts: dict[str, ModelIndex]) -> None:
        self.parts = parts

    @classmethod
    def build(cls, rows: Sequence[tuple[int, int | None, str, bytes]]) -> GuildIndex:
        grouped: dict[str, list[tuple[int, int | None, bytes]]] = {}
        for chunk_id, channel_id, model, vector in rows:
            grouped.setdefault(model, []).append((chunk_id, channel_id, vector))
        parts = {}
        for model, items in grouped.items():
            ids = np.fromiter((i for i, _, _ in items), dtype=np.int64, count=len(items))
            scopes = np.fromiter((c or 0 for _, c, _ in items), dtype=np.int64, count=len(items))
            vectors = np.frombuffer(b"".join(v for _, _, v in items), dtype=np.float32)
            parts[model] = ModelIndex(ids, scopes, vectors.reshape(len(items), -1))
        return cls(parts)

    def __len__(self) -> int:
        return sum(len(p) for p in self.parts.values())

    @property
    def nbytes(self) -> int:
        return sum(p.nbytes for p in self.parts.values())

    def channels(self) -> set[int]:
        """The channels some chunk is restricted to."""
        found: set[int] = set()
        for part in self.parts.values():
            found.update(int(c) for c in np.unique(part.scopes) if c)
        return found

    def search(self, queries: dict[str, FloatArray], readable: set[int], k: int) -> list[Match]:
        """The `k` best chunks over every model's part (each searched with its own model's
        query vector), among the server-wide ones and those of `readable` channels."""
        matches: list[Match] = []
        for model, part in self.parts.items():
            query = queries.get(model)
            if query is None:
                continue
            allowed = None
            if part.scopes.any():
                allowed = (part.scopes == 0) | np.isin(
                    part.scopes, np.fromiter(readable, dtype=np.int64, count=len(readable))
                )
            matches.extend(part.search(query, allowed, k))
        matches.sort(key=lambda m: m.score, reverse=True)
        return matches[:k]


def _top(scores: FloatArray, k: int) -> list[int]:
    if len(scores) <= k:
        return [int(i) for i in np.argsort(-scores)]
    best = np.argpartition(-scores, k - 1)[:k]
    return [int(i) for i in best[np.argsort(-scores[best])]]


def _sign_bits(vectors: FloatArray) -> npt.NDArray[np.uint64]:
    """Each vector's signs, 64 to a word (dimensions padded to a multiple of 64)."""
    packed = np.packbits(vectors > 0, axis=1)
    pad = (-packed.shape[1]) % 8
    if pad:
        packed = np.pad(packed, ((0, 0), (0, pad)))
    return np.ascontiguousarray(packed).view(np.uint64)
