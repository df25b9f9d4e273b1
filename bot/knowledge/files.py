"""Documents from files: which files are read (text, Markdown, code, CSV, JSON, PDF with a text
layer), the limits checked before anything is downloaded, and the text taken out of them."""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from pathlib import PurePath

from bot.errors import InputError
from bot.knowledge.chunking import Page

log = logging.getLogger(__name__)

MARKDOWN = frozenset({".md", ".markdown", ".mdx", ".rst"})
TEXT = frozenset({".txt", ".text", ".log", ".ini", ".cfg", ".conf", ".toml", ".yaml", ".yml"})
CODE = frozenset(
    {
        ".py", ".js", ".ts", ".tsx", ".jsx", ".java", ".kt", ".c", ".h", ".cpp", ".hpp", ".cs",
        ".go", ".rs", ".rb", ".php", ".swift", ".sh", ".bash", ".ps1", ".sql", ".html", ".css",
        ".scss", ".xml", ".lua", ".r", ".scala", ".dart", ".vue", ".svelte",
    }
)  # fmt: skip
TEXT_TYPES = ("text/", "application/json", "application/xml", "application/x-yaml")


@dataclass(frozen=True, slots=True)
class FileLimits:
    max_bytes: int
    max_pdf_pages: int
    max_chars: int


@dataclass(frozen=True, slots=True)
class Document:
    name: str
    kind: str
    """"pdf", "csv", "json", "markdown", "code" or "text"."""
    pages: tuple[Page, ...]

    @property
    def text(self) -> str:
        return "\n\n".join(p.text for p in self.pages)

    @property
    def chars(self) -> int:
        return sum(len(p.text) for p in self.pages)


def shown(name: str) -> str:
    """A file name safe to show between backticks."""
    clean = name.replace("`", "'").replace("\n", " ")
    return clean if len(clean) <= 80 else clean[:79] + "…"


def kind_of(filename: str, content_type: str | None) -> str | None:
    """What a file is by its name (and Discord's content type): None when it is no document."""
    suffix = PurePath(filename).suffix.lower()
    kind = (content_type or "").split(";")[0].strip().lower()
    if suffix == ".pdf" or kind == "application/pdf":
        return "pdf"
    if suffix == ".csv" or kind == "text/csv":
        return "csv"
    if suffix == ".json" or kind == "application/json":
        return "json"
    if suffix in MARKDOWN or kind == "text/markdown":
        return "markdown"
    if suffix in CODE:
        return "code"
    if suffix in TEXT or any(kind.startswith(t) for t in TEXT_TYPES):
        return "text"
    return None


def check_declared(filename: str, content_type: str | None, size: int, limits: FileLimits) -> str:
    """The checks made before download, from what Discord says of the file: its kind, else
    InputError."""
    kind = kind_of(filename, content_type)
    if kind is None:
        raise InputError(
            f"I can't read `{shown(filename)}`: I read text, Markdown, source code, CSV, JSON "
            "and PDF files."
        )
    if size > limits.max_bytes:
        raise InputError(
            f"`{shown(filename)}` is {_size(size)}; the most I read is {_size(limits.max_bytes)}."
        )
    return kind


def read_document(filename: str, kind: str, data: bytes, limits: FileLimits) -> Document:
    """The document's text (CPU work: run it off the event loop). InputError with the reason
    when it cannot be read or is over a limit."""
    if len(data) > limits.max_bytes:
        raise InputError(
            f"`{shown(filename)}` is {_size(len(data))}; the most I read is "
            f"{_size(limits.max_bytes)}."
        )
    if kind == "pdf":
        pages = _pdf_pages(filename, data, limits)
    else:
        pages = (Page(_decode(filename, data)),)
    document = Document(name=filename, kind=kind, pages=pages)
    if document.chars > limits.max_chars:
        raise InputError(
            f"`{shown(filename)}` has {document.chars:,} characters of text; the most I read "
            f"is {limits.max_chars:,}."
        )
    if not document.text.strip():
        raise InputError(f"`{shown(filename)}` is empty.")
    return document


def _decode(filename: str, data: bytes) -> str:
    if b"\x00" in data[:8192]:
        raise InputError(f"`{shown(filename)}` is not a text file.")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(
            f"`{shown(filename)}` is not UTF-8 text. Save it as UTF-8 and try again."
        ) from None


def _pdf_pages(filename: str, data: bytes, limits: FileLimits) -> tuple[Page, ...]:
    # pypdf is imported here: a bot that never reads a PDF does not pay for it at start.
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise InputError(f"`{shown(filename)}` is protected by a password.")
        count = len(reader.pages)
        if count > limits.max_pdf_pages:
            raise InputError(
                f"`{shown(filename)}` has {count} pages; the most I read is {limits.max_pdf_pages}."
            )
        pages = []
        for number, page in enumerate(reader.pages, start=1):
            text = page.extract_text() or ""
            if text.strip():
                pages.append(Page(text, number))
    except InputError:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, OSError) as exc:
        log.info("could not read the PDF %r: %r", filename, exc)
        raise InputError(f"`{shown(filename)}` is not a PDF I can read.") from exc
    if not pages:
        raise InputError(
            f"`{shown(filename)}` has no text I can read: it looks like scanned images without "
            "a text layer. Add a PDF with selectable text (or run it through OCR first)."
        )
    return tuple(pages)


def _size(size: int) -> str:
    if size >= 1024 * 1024:
        return f"{size / 1024 / 1024:.1f} MB"
    if size >= 1024:
        return f"{size / 1024:.0f} KB"
    return f"{size} bytes"
