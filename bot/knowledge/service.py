"""KnowledgeService: a guild's knowledge base (add, list, search, remove), the knowledge each
chat turn is given, files attached to a chat turn, and re-embedding after the embedding model
changed. Plain values in and out: who may read which channel comes in as a function."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import numpy as np

from bot.errors import InputError
from bot.knowledge.chunking import Chunk, Page, chunk_pages, estimate_tokens
from bot.knowledge.files import Document, FileLimits, shown
from bot.knowledge.index import FloatArray, GuildIndex, from_vector, to_bytes
from bot.ollama.protocol import ChatMessage, Ollama
from bot.storage.knowledge import ChunkRow, KnowledgeStore, NewChunk, NewSource, SourceRow

log = logging.getLogger(__name__)

CanRead = Callable[[int], bool]
"""Whether the member asking can read a channel (by id), at the time of asking."""
Progress = Callable[[int, int], Awaitable[None]]
"""(chunks embedded, chunks in all)."""

EMBED_BATCH = 32
"""Chunks per /api/embed request: progress moves on after each."""
CACHED_GUILDS = 32
"""Guild indexes kept in memory (the least recently searched are dropped)."""
REEMBED_RETRY = 60.0
"""Seconds before re-embedding is tried again after a failure (the new model missing)."""

INSTRUCTIONS = (
    "Excerpts from this server's knowledge base that may help answer the latest message. "
    "Use them when they are relevant and cite them by number, like [1]. If they do not hold "
    "the answer, say so rather than guessing."
)


@dataclass(frozen=True, slots=True)
class KnowledgeSettings:
    model: str
    chunk_tokens: int
    chunk_overlap: int
    top_k: int
    share: float
    min_score: float
    files: FileLimits


@dataclass(frozen=True, slots=True)
class Added:
    source: SourceRow
    chunks: int
    tokens: int


@dataclass(frozen=True, slots=True)
class Hit:
    chunk: ChunkRow
    score: float


@dataclass(frozen=True, slots=True)
class Passage:
    """A chunk found, as a tool shows it: its text and its source's label."""

    text: str
    label: str


@dataclass(frozen=True, slots=True)
class SourceRef:
    """A numbered source of an answer, as the footer shows it."""

    label: str
    url: str | None = None


def message_url(guild_id: int, channel_id: int, message_id: int) -> str:
    return f"https://discord.com/channels/{guild_id}/{channel_id}/{message_id}"


def label(chunk: ChunkRow) -> str:
    """ "handbook.pdf p. 4", "rules.md lines 10-24", "#rules message"."""
    source = chunk.source
    if source.kind == "message":
        return source.name
    if chunk.page is not None:
        return f"{source.name} p. {chunk.page}"
    if chunk.line_start is not None and chunk.line_end is not None and source.chunks > 1:
        if chunk.line_start == chunk.line_end:
            return f"{source.name} line {chunk.line_start}"
        return f"{source.name} lines {chunk.line_start}-{chunk.line_end}"
    return source.name


def url_of(source: SourceRow) -> str | None:
    if source.message_id is None or source.message_channel_id is None:
        return None
    return message_url(source.guild_id, source.message_channel_id, source.message_id)


class KnowledgeService:
    def __init__(
        self, *, gateway: Ollama, store: KnowledgeStore, settings: KnowledgeSettings
    ) -> None:
        self._gateway = gateway
        self._store = store
        self.settings = settings
        self._guilds: set[int] = set()
        self._indexes: OrderedDict[int, GuildIndex] = OrderedDict()
        self._loading: dict[int, asyncio.Lock] = {}
        self._reembed: asyncio.Task[None] | None = None
        self.reembedded = asyncio.Event()
        """Set when no chunk waits for re-embedding (tests and the log read it)."""

    # ---- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        self._guilds = await self._store.guilds()
        if await self._store.stale_count(self.settings.model):
            self._reembed = asyncio.create_task(self._reembed_all(), name="knowledge re-embed")
        else:
            self.reembedded.set()

    async def close(self) -> None:
        if self._reembed is not None:
            self._reembed.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reembed

    def has_knowledge(self, guild_id: int | None) -> bool:
        return guild_id is not None and guild_id in self._guilds

    # ---- adding ------------------------------------------------------------------------------

    def chunks_of(self, document: Document) -> list[Chunk]:
        return chunk_pages(
            document.pages,
            kind=document.kind,
            max_tokens=self.settings.chunk_tokens,
            overlap_tokens=self.settings.chunk_overlap,
        )

    async def add_document(
        self,
        *,
        guild_id: int,
        channel_id: int | None,
        document: Document,
        added_by: int,
        kind: str = "file",
        message_id: int | None = None,
        message_channel_id: int | None = None,
        progress: Progress | None = None,
    ) -> Added:
        """Chunk, embed (in batches, `progress` told after each) and store a document; stored
        in one transaction once every chunk is embedded."""
        chunks = await asyncio.to_thread(self.chunks_of, document)
        if not chunks:
            raise InputError(f"`{shown(document.name)}` has no text to add.")
        vectors = await self.embed_texts([c.text for c in chunks], progress)
        model = self.settings.model
        row = await self._store.add(
            NewSource(
                guild_id=guild_id,
                channel_id=channel_id,
                name=document.name[:200],
                kind=kind,
                added_by=added_by,
                message_id=message_id,
                message_channel_id=message_channel_id,
            ),
            [
                NewChunk(
                    text=c.text,
                    tokens=c.tokens,
                    vector=to_bytes(v),
                    page=c.page,
                    line_start=c.line_start,
                    line_end=c.line_end,
                    heading=c.heading[:500] if c.heading else None,
                )
                for c, v in zip(chunks, vectors, strict=True)
            ],
            model,
        )
        self._changed(guild_id)
        return Added(source=row, chunks=row.chunks, tokens=row.tokens)

    async def add_message(
        self,
        *,
        guild_id: int,
        channel_id: int,
        message_id: int,
        name: str,
        text: str,
        added_by: int,
    ) -> Added:
        """A Discord message's text, restricted to the members who can read its channel."""
        if not text.strip():
            raise InputError("That message has no text I can add.")
        if len(text) > self.settings.files.max_chars:
            raise InputError("That message is too long to add.")
        existing = [s for s in await self._store.sources(guild_id) if s.message_id == message_id]
        if existing:
            raise InputError("That message is in the knowledge base already.")
        return await self.add_document(
            guild_id=guild_id,
            channel_id=channel_id,
            document=Document(name=name, kind="markdown", pages=(Page(text),)),
            added_by=added_by,
            kind="message",
            message_id=message_id,
            message_channel_id=channel_id,
        )

    # ---- listing and removing -----------------------------------------------------------------

    async def sources(self, guild_id: int, can_read: CanRead) -> list[SourceRow]:
        """The guild's sources the member may see (server-wide ones, and those of channels they
        can read)."""
        return [
            s
            for s in await self._store.sources(guild_id)
            if s.channel_id is None or can_read(s.channel_id)
        ]

    async def remove(self, guild_id: int, source_id: int, can_read: CanRead) -> SourceRow:
        visible = {s.id for s in await self.sources(guild_id, can_read)}
        gone = await self._store.remove(guild_id, source_id) if source_id in visible else None
        if gone is None:
            raise InputError("There is no such document in this server's knowledge base.")
        self._changed(guild_id)
        return gone

    async def forget_messages(self, message_ids: Sequence[int]) -> int:
        """Deleted Discord messages: the knowledge made from them goes too."""
        gone = await self._store.remove_messages(message_ids)
        for guild_id in {s.guild_id for s in gone}:
            self._changed(guild_id)
        return len(gone)

    # ---- searching -----------------------------------------------------------------------------

    async def search(
        self,
        guild_id: int,
        query: str,
        can_read: CanRead,
        *,
        top_k: int | None = None,
        min_score: float | None = None,
    ) -> list[Hit]:
        """The best chunks for `query` that the member may read, above the relevance floor."""
        if not self.has_knowledge(guild_id) or not query.strip():
            return []
        index = await self._index(guild_id)
        if len(index) == 0:
            return []
        readable = {c for c in index.channels() if can_read(c)}
        queries = {}
        for model in index.parts:
            (vector,) = (await self._gateway.embed(model, [query])).vectors
            queries[model] = from_vector(vector)
        k = top_k or self.settings.top_k
        search = index.search
        if len(index) > 20_000:  # some milliseconds: off the event loop
            matches = await asyncio.to_thread(search, queries, readable, k)
        else:
            matches = search(queries, readable, k)
        floor = self.settings.min_score if min_score is None else min_score
        matches = [m for m in matches if m.score >= floor]
        rows = await self._store.chunks([m.chunk_id for m in matches])
        # A chunk deleted since the index was read is simply left out.
        return [Hit(rows[m.chunk_id], m.score) for m in matches if m.chunk_id in rows]

    async def find(self, guild_id: int, query: str, can_read: CanRead) -> list[Passage]:
        """`search`, as passages with their sources' labels (the `search_knowledge` tool). A
        model's query is a few keywords, which score lower than a question against the same
        chunk: half the floor, as `/kb search` uses."""
        hits = await self.search(guild_id, query, can_read, min_score=self.settings.min_score / 2)
        return [Passage(hit.chunk.text, label(hit.chunk)) for hit in hits]

    def turn(
        self,
        *,
        guild_id: int | None,
        can_read: CanRead,
        documents: Sequence[Document] = (),
    ) -> TurnKnowledge | None:
        """What one chat turn is given (see TurnKnowledge); None when there is nothing to give:
        no attached file and no knowledge in the guild, and the turn is exactly as without."""
        if not documents and not self.has_knowledge(guild_id):
            return None
        return TurnKnowledge(self, guild_id, can_read, tuple(documents))

    # ---- internals -----------------------------------------------------------------------------

    async def embed_texts(
        self, texts: Sequence[str], progress: Progress | None = None
    ) -> list[list[float]]:
        """Vectors of `texts` by the configured model, a batch per request."""
        vectors: list[list[float]] = []
        for start in range(0, len(texts), EMBED_BATCH):
            batch = texts[start : start + EMBED_BATCH]
            vectors.extend((await self._gateway.embed(self.settings.model, batch)).vectors)
            if progress is not None:
                await progress(len(vectors), len(texts))
        return vectors

    def _changed(self, guild_id: int) -> None:
        self._indexes.pop(guild_id, None)
        self._guilds.add(guild_id)  # checked again at the next search if it is empty now

    async def _index(self, guild_id: int) -> GuildIndex:
        cached = self._indexes.get(guild_id)
        if cached is not None:
            self._indexes.move_to_end(guild_id)
            return cached
        lock = self._loading.setdefault(guild_id, asyncio.Lock())
        async with lock:
            cached = self._indexes.get(guild_id)
            if cached is not None:
                return cached
            rows = await self._store.vectors(guild_id)
            index = await asyncio.to_thread(
                GuildIndex.build, [(r.id, r.channel_id, r.model, r.vector) for r in rows]
            )
            if not rows:
                self._guilds.discard(guild_id)
            self._indexes[guild_id] = index
            while len(self._indexes) > CACHED_GUILDS:
                self._indexes.popitem(last=False)
        self._loading.pop(guild_id, None)
        return index

    async def _reembed_all(self) -> None:
        """Every chunk embedded by another model than the configured one is embedded again,
        a guild at a time; a guild's new vectors replace its old ones in one transaction, so
        that its old vectors serve its searches until the new ones are complete."""
        model = self.settings.model
        while True:
            try:
                stale = await self._store.stale(model, 1)
                if not stale:
                    break
                guild_id = stale[0][1]
                chunks = await self._store.stale(model, None, guild_id=guild_id)
                vectors = await self.embed_texts([text for _, _, text in chunks])
                await self._store.set_vectors(
                    model,
                    [(c[0], to_bytes(v)) for c, v in zip(chunks, vectors, strict=True)],
                )
                self._changed(guild_id)
                log.info("re-embedded %d chunks of guild=%s with %s", len(chunks), guild_id, model)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("re-embedding with %s failed, trying again later: %s", model, exc)
                await asyncio.sleep(REEMBED_RETRY)
        self.reembedded.set()


class TurnKnowledge:
    """The extra context of one chat turn: the attached files (whole when they fit the share of
    the window, else their most relevant chunks) and the guild's knowledge, the best chunks
    the member may read, in one system message each. `sources` lists what was given, for the
    reply's footer."""

    def __init__(
        self,
        service: KnowledgeService,
        guild_id: int | None,
        can_read: CanRead,
        documents: tuple[Document, ...],
    ) -> None:
        self._service = service
        self._guild_id = guild_id
        self._can_read = can_read
        self.documents = documents
        self.sources: list[SourceRef] = []

    async def __call__(self, question: str, window: int) -> list[ChatMessage]:
        settings = self._service.settings
        budget = int(window * settings.share)
        messages: list[ChatMessage] = []
        for document in self.documents:
            text, used = await self._file(document, question, budget)
            budget -= used
            messages.append(ChatMessage("system", text))
        if self._guild_id is not None and budget > 0:
            hits = await self._service.search(self._guild_id, question, self._can_read)
            message = self._knowledge(hits, budget)
            if message is not None:
                messages.append(message)
        return messages

    async def _file(self, document: Document, question: str, budget: int) -> tuple[str, int]:
        name = shown(document.name)
        whole = f"The member attached the file `{name}`:\n\n{document.text}"
        if estimate_tokens(whole) <= budget:
            return whole, estimate_tokens(whole)
        chunks = await asyncio.to_thread(self._service.chunks_of, document)
        texts = [c.text for c in chunks]
        vectors = await self._service.embed_texts([question, *texts])
        query = from_vector(vectors[0])
        matrix = np.asarray(vectors[1:], dtype=np.float32)
        norms = np.linalg.norm(matrix, axis=1)
        norms[norms == 0] = 1.0
        scores: FloatArray = (matrix / norms[:, None]) @ query
        header = (
            f"The member attached the file `{name}`; it is too long to read whole, so here are "
            "its parts most relevant to the latest message:"
        )
        parts = [header]
        used = estimate_tokens(header)
        for i in np.argsort(-scores):
            chunk = chunks[int(i)]
            where = f"page {chunk.page}" if chunk.page else f"lines {chunk.line_start}-"
            where += "" if chunk.page else f"{chunk.line_end}"
            piece = f"\n\n[{where}]\n{chunk.text}"
            cost = estimate_tokens(piece)
            if used + cost > budget:
                continue
            parts.append(piece)
            used += cost
        return "".join(parts), used

    def _knowledge(self, hits: list[Hit], budget: int) -> ChatMessage | None:
        numbers: dict[tuple[int, int | None], int] = {}
        parts = [INSTRUCTIONS]
        used = estimate_tokens(INSTRUCTIONS)
        for hit in hits:
            chunk = hit.chunk
            key = (chunk.source.id, chunk.page)
            number = numbers.get(key, len(numbers) + 1)
            heading = f" ({chunk.heading})" if chunk.heading else ""
            piece = f"\n\n[{number}] {label(chunk)}{heading}\n{chunk.text}"
            cost = estimate_tokens(piece)
            if used + cost > budget:
                continue
            if key not in numbers:
                numbers[key] = number
                self.sources.append(SourceRef(label(chunk), url_of(chunk.source)))
            parts.append(piece)
            used += cost
        if not numbers:
            return None
        return ChatMessage("system", "".join(parts))
