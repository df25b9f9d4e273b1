"""Knowledge's pure parts: chunking on structure, reading files, the vector index."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from bot.errors import InputError
from bot.knowledge.chunking import Page, chunk_pages, estimate_tokens
from bot.knowledge.files import FileLimits, check_declared, kind_of, read_document
from bot.knowledge.index import GuildIndex, ModelIndex, to_bytes
from tests.pdffiles import pdf

LIMITS = FileLimits(max_bytes=100_000, max_pdf_pages=5, max_chars=50_000)

# ---- chunking ----------------------------------------------------------------------------------


def test_chunks_follow_headings_and_keep_their_path_and_lines() -> None:
    text = (
        "# Guide\n\nIntro.\n\n## Install\n\nRun it.\n\n### On Linux\n\nUse apt.\n\n## Use\n\nAsk.\n"
    )
    chunks = chunk_pages([Page(text)], kind="markdown", max_tokens=200, overlap_tokens=0)
    assert [c.heading for c in chunks] == [
        "Guide",
        "Guide › Install",
        "Guide › Install › On Linux",
        "Guide › Use",
    ]
    assert [(c.line_start, c.line_end) for c in chunks] == [(1, 3), (5, 7), (9, 11), (13, 15)]
    assert chunks[2].text == "[Guide › Install › On Linux]\n### On Linux\n\nUse apt."


def test_a_code_block_is_never_cut_at_its_blank_lines() -> None:
    text = "Before.\n\n```py\ndef f():\n\n    return 1\n```\n\nAfter."
    chunks = chunk_pages([Page(text)], kind="markdown", max_tokens=12, overlap_tokens=0)
    assert any("```py\ndef f():\n\n    return 1\n```" in c.text for c in chunks)


def test_chunks_respect_the_size_and_overlap() -> None:
    text = "\n\n".join(f"Paragraph {n} " + "word " * 30 for n in range(20))
    chunks = chunk_pages([Page(text)], kind="text", max_tokens=100, overlap_tokens=50)
    assert len(chunks) > 5
    assert all(c.tokens <= 100 for c in chunks)
    # each chunk begins with the last paragraph of the one before it
    for before, after in itertools.pairwise(chunks):
        assert after.text.split("\n\n")[0] == before.text.split("\n\n")[-1]


def test_a_long_line_is_cut_by_characters() -> None:
    chunks = chunk_pages([Page("x" * 5000)], kind="text", max_tokens=100, overlap_tokens=0)
    assert all(c.tokens <= 100 for c in chunks)
    assert "".join(c.text for c in chunks) == "x" * 5000


def test_csv_chunks_repeat_the_header_row() -> None:
    rows = "\n".join(f"{n},name {n},{n * 10}" for n in range(100))
    chunks = chunk_pages(
        [Page("id,name,score\n" + rows)], kind="csv", max_tokens=60, overlap_tokens=0
    )
    assert len(chunks) > 3
    assert all(c.text.startswith("id,name,score\n") for c in chunks)
    assert chunks[0].line_start == 2


def test_a_chunk_never_spans_two_pages() -> None:
    pages = [Page("One. " * 10, 1), Page("Two. " * 10, 2)]
    chunks = chunk_pages(pages, kind="pdf", max_tokens=500, overlap_tokens=0)
    assert [c.page for c in chunks] == [1, 2]


# ---- files --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content_type", "kind"),
    [
        ("a.md", None, "markdown"),
        ("a.py", "text/x-python", "code"),
        ("a.csv", "text/csv; charset=utf-8", "csv"),
        ("data", "application/json", "json"),
        ("a.pdf", None, "pdf"),
        ("notes", "text/plain; charset=utf-8", "text"),
        ("a.exe", "application/octet-stream", None),
        ("a.png", "image/png", None),
    ],
)
def test_kind_of_a_file(name: str, content_type: str | None, kind: str | None) -> None:
    assert kind_of(name, content_type) == kind


def test_declared_size_and_kind_are_checked_before_download() -> None:
    assert check_declared("a.md", None, 100, LIMITS) == "markdown"
    with pytest.raises(InputError, match="is 195 KB; the most I read is 98 KB"):
        check_declared("a.md", None, 200_000, LIMITS)
    with pytest.raises(InputError, match="I read text, Markdown"):
        check_declared("a.zip", "application/zip", 10, LIMITS)


def test_text_files_must_be_utf8_text_within_the_character_limit() -> None:
    assert read_document("a.txt", "text", "héllo".encode(), LIMITS).text == "héllo"
    with pytest.raises(InputError, match="not UTF-8"):
        read_document("a.txt", "text", "héllo".encode("latin-1"), LIMITS)
    with pytest.raises(InputError, match="not a text file"):
        read_document("a.txt", "text", b"ab\x00cd", LIMITS)
    small = FileLimits(max_bytes=100_000, max_pdf_pages=5, max_chars=10)
    with pytest.raises(InputError, match="11 characters of text; the most I read is 10"):
        read_document("a.txt", "text", b"x" * 11, small)


def test_pdf_pages_text_limits_and_no_text_layer() -> None:
    document = read_document("a.pdf", "pdf", pdf(["First page", "", "Third page"]), LIMITS)
    assert [(p.number, p.text.strip()) for p in document.pages] == [
        (1, "First page"),
        (3, "Third page"),
    ]
    with pytest.raises(InputError, match="has 6 pages; the most I read is 5"):
        read_document("a.pdf", "pdf", pdf(["x"] * 6), LIMITS)
    with pytest.raises(InputError, match="no text I can read"):
        read_document("scan.pdf", "pdf", pdf(["", ""]), LIMITS)
    with pytest.raises(InputError, match="not a PDF I can read"):
        read_document("bad.pdf", "pdf", b"%PDF-1.4 garbage", LIMITS)


def test_estimate_tokens_is_four_characters_a_token() -> None:
    assert estimate_tokens("abcd" * 10) == 10


# ---- the index ------------------------------------------------------------------------------------


def _vectors(n: int, dims: int = 64, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, dims)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_stored_vectors_are_normalised_float32() -> None:
    stored = np.frombuffer(to_bytes([3.0, 4.0]), dtype=np.float32)
    assert stored.tolist() == pytest.approx([0.6, 0.8])


def test_exact_search_finds_the_nearest_and_honours_the_channel_mask() -> None:
    vectors = _vectors(100)
    rows = [(i, None if i % 2 else 7, "m", vectors[i].tobytes()) for i in range(100)]
    index = GuildIndex.build(rows)
    query = vectors[4]  # chunk 4 is restricted to channel 7
    best = index.search({"m": query}, readable={7}, k=3)
    assert best[0].chunk_id == 4 and best[0].score == pytest.approx(1.0, abs=1e-5)
    hidden = index.search({"m": query}, readable=set(), k=3)
    assert all(m.chunk_id % 2 == 1 for m in hidden)
    assert index.channels() == {7}


def test_a_large_index_is_int8_with_sign_bits_and_still_finds_the_nearest() -> None:
    vectors = _vectors(2000, dims=128)
    ids = np.arange(2000, dtype=np.int64)
    scopes = np.where(ids % 3 == 0, 5, 0).astype(np.int64)
    part = ModelIndex(ids, scopes, vectors, exact_limit=100)
    assert part.exact is None and part.codes is not None and part.codes.dtype == np.int8
    assert part.nbytes < vectors.nbytes / 3
    rng = np.random.default_rng(1)
    found = 0
    for target in range(1, 200, 3):  # not in channel 5
        query = vectors[target] + 0.05 * rng.standard_normal(128).astype(np.float32)
        query /= np.linalg.norm(query)
        allowed = scopes == 0
        best = part.search(query, allowed, 5)
        assert all(scopes[m.chunk_id] == 0 for m in best)
        found += best[0].chunk_id == target
    assert found >= 60  # of 67


def test_a_guild_index_searches_each_model_with_its_own_query() -> None:
    a, b = _vectors(10, 32, seed=1), _vectors(10, 48, seed=2)
    rows = [(i, None, "old", a[i].tobytes()) for i in range(10)]
    rows += [(100 + i, None, "new", b[i].tobytes()) for i in range(10)]
    index = GuildIndex.build(rows)
    assert len(index) == 20
    assert index.search({"old": a[3]}, set(), 1)[0].chunk_id == 3
    assert index.search({"new": b[3]}, set(), 1)[0].chunk_id == 103
