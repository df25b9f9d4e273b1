"""Image validation and preparation: untrusted bytes in, a small plain-base64 JPEG out.

Every check that can refuse an image runs before anything is sent to Ollama, and each refusal is
an `ImageRejected` with a short message for the user. The steps:

1. `check_count` and `check_size`: how many files and how big they say they are (no download).
2. `check`: the bytes themselves: not empty, not over the size limit, a PNG, JPEG, WebP or GIF
   *by content* (never by file name), and not a decompression bomb (the pixel count is read from
   the header, before any pixel is decoded).
3. `prepare`: decode (a GIF's or WebP's first frame), turn upright (EXIF orientation), downscale
   to the longest side limit keeping the aspect ratio, flatten transparency onto white and
   encode as JPEG, capped in bytes. The result is what Ollama gets and what the history stores.

`check` and `prepare` are pure and CPU-bound; `ImagePreparer` runs them in worker threads so the
event loop never waits on Pillow. Pillow is imported by the first image, not at start-up: a bot
that never sees one does not carry it (about 2 MiB resident).
"""

from __future__ import annotations

import asyncio
import base64
import io
import logging
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.errors import InputError

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger(__name__)

MEGABYTE = 1024 * 1024
DEFAULT_MAX_BYTES = 10 * MEGABYTE
DEFAULT_MAX_PIXELS = 50_000_000
"""50 megapixels: a 48 MP phone photo passes; Pillow's own bomb warning starts at ~89 MP."""
DEFAULT_MAX_SIDE = 1024
DEFAULT_MAX_IMAGES = 4
ENCODED_MAX_BYTES = 1_000_000
"""The prepared JPEG (what is sent and stored) never exceeds this: quality, then size, give way."""
JPEG_QUALITIES = (85, 75, 60, 45)
WHITE = (255, 255, 255)
EXIF_ORIENTATION = 0x0112
_ORIENTATION = {
    # EXIF orientation value -> the Image.Transpose that makes the picture upright (1: upright)
    2: "FLIP_LEFT_RIGHT",
    3: "ROTATE_180",
    4: "FLIP_TOP_BOTTOM",
    5: "TRANSPOSE",
    6: "ROTATE_270",
    7: "TRANSVERSE",
    8: "ROTATE_90",
}

FORMAT_NAMES = "PNG, JPEG, WebP or GIF"
_DECODE_ERRORS = (
    OSError,  # truncated or corrupt data (also UnidentifiedImageError)
    SyntaxError,  # some Pillow plugins report malformed headers this way
    ValueError,
    EOFError,
    IndexError,
    TypeError,
    struct.error,
    zlib.error,
)


def _bomb_errors() -> tuple[type[Exception], ...]:
    """Pillow's own limit (MAX_IMAGE_PIXELS). The warning is caught too, for when warnings are
    errors; otherwise it only warns, and the explicit pixel limit below refuses the image
    anyway."""
    from PIL import Image

    return (Image.DecompressionBombError, Image.DecompressionBombWarning)


class ImageRejected(InputError):
    """An image cannot be used; nothing was sent to Ollama."""


@dataclass(frozen=True, slots=True)
class ImageLimits:
    max_bytes: int = DEFAULT_MAX_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_side: int = DEFAULT_MAX_SIDE
    max_images: int = DEFAULT_MAX_IMAGES
    encoded_max_bytes: int = ENCODED_MAX_BYTES


@dataclass(frozen=True, slots=True)
class CheckedImage:
    """A file whose header passed every check; its pixels are not decoded yet."""

    name: str
    data: bytes
    format: str  # Pillow's name: PNG, JPEG, WEBP, GIF
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class PreparedImage:
    """What Ollama gets and the history stores: a downscaled JPEG."""

    data: bytes
    mime: str
    width: int
    height: int
    b64: str
    """Plain standard base64 (RFC 4648, padded, no `data:` prefix), as Ollama's API wants."""

    @classmethod
    def from_jpeg(cls, data: bytes, width: int, height: int) -> PreparedImage:
        return cls(data, "image/jpeg", width, height, base64.b64encode(data).decode("ascii"))


def sniff(data: bytes) -> str | None:
    """The image format from the first bytes, or None: the file name is never trusted."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def shown_name(name: str) -> str:
    """A file name safe to show inside `code` in a Discord message."""
    clean = " ".join(name.replace("`", "'").split()) or "image"
    return clean if len(clean) <= 80 else clean[:79] + "…"


def _megabytes(size: int) -> str:
    """Rounded up, so that a file just over the limit never reads as "10 MB" too."""
    if size < MEGABYTE:
        return f"{-(-size // 1024)} KB"
    tenths = -(-size * 10 // MEGABYTE)
    return f"{tenths / 10:.1f}".removesuffix(".0") + " MB"


def check_count(count: int, limits: ImageLimits) -> None:
    if count > limits.max_images:
        raise ImageRejected(
            f"You attached {count} images; at most {limits.max_images} can go with one message."
        )


def check_size(name: str, size: int, limits: ImageLimits) -> None:
    """Refuse by the size a file declares (before downloading it) or has."""
    if size <= 0:
        raise ImageRejected(f"`{shown_name(name)}` is empty (0 bytes).")
    if size > limits.max_bytes:
        raise ImageRejected(
            f"`{shown_name(name)}` is {_megabytes(size)}; "
            f"images can be at most {_megabytes(limits.max_bytes)}."
        )


def check(name: str, data: bytes, limits: ImageLimits) -> CheckedImage:
    """Refuse empty, oversized, non-image and bomb files; read only the header."""
    check_size(name, len(data), limits)
    kind = sniff(data)
    if kind is None:
        raise ImageRejected(
            f"`{shown_name(name)}` is not an image I can read: send a {FORMAT_NAMES} file."
        )
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data), formats=[kind]) as image:
            width, height = image.size
    except _bomb_errors() as exc:
        raise _bomb(name, limits) from exc
    except _DECODE_ERRORS as exc:
        raise _damaged(name, kind) from exc
    if width <= 0 or height <= 0:
        raise _damaged(name, kind)
    if width * height > limits.max_pixels:
        raise _bomb(name, limits, width, height)
    return CheckedImage(name=name, data=data, format=kind, width=width, height=height)


def prepare(image: CheckedImage, limits: ImageLimits) -> PreparedImage:
    """Decode, turn upright, downscale, flatten and encode one checked image."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(image.data), formats=[image.format]) as opened:
            side = limits.max_side
            if opened.format == "JPEG":
                # Decode at a reduced scale straight from the DCT data: far less work and memory
                # for a big photo; the result is still at least `side` on its longest edge.
                opened.draft("RGB", (side, side))
            opened.load()  # a GIF or WebP stays on its first frame
            picture = _normalised(opened)
            picture.thumbnail((side, side), Image.Resampling.LANCZOS)
            # Turned after the resize (cheaper); the longest side stays the same.
            turn = _ORIENTATION.get(opened.getexif().get(EXIF_ORIENTATION, 1))
            if turn is not None:
                picture = picture.transpose(Image.Transpose[turn])
    except _bomb_errors() as exc:
        raise _bomb(image.name, limits) from exc
    except _DECODE_ERRORS as exc:
        log.info("could not decode %s (%s)", image.name, image.format, exc_info=True)
        raise _damaged(image.name, image.format) from exc
    return _encode(_flattened(picture), limits.encoded_max_bytes)


def _normalised(image: Image.Image) -> Image.Image:
    """RGB, or RGBA when the image carries transparency."""
    if image.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
        # 16-bit or float greyscale: scale to 8 bits instead of letting convert() clip.
        image = image.convert("I").point(lambda value: value * (1 / 256)).convert("L")
    alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
    return image.convert("RGBA" if alpha else "RGB")


def _flattened(picture: Image.Image) -> Image.Image:
    """Transparency composited onto white, as Ollama's own image code does before the model
    sees it; doing it here keeps the result the same on every backend and lets it be a JPEG."""
    if picture.mode != "RGBA":
        return picture
    from PIL import Image

    background = Image.new("RGB", picture.size, WHITE)
    background.paste(picture, mask=picture.getchannel("A"))
    return background


def _encode(picture: Image.Image, max_bytes: int) -> PreparedImage:
    """JPEG without metadata (no EXIF, so no GPS position, reaches Ollama or the database)."""
    while True:
        for quality in JPEG_QUALITIES:
            buffer = io.BytesIO()
            picture.save(buffer, "JPEG", quality=quality)
            if buffer.tell() <= max_bytes:
                return PreparedImage.from_jpeg(buffer.getvalue(), *picture.size)
        # Still too big at the lowest quality (only for a huge max_side): shrink and retry.
        from PIL import Image

        width, height = picture.size
        picture = picture.resize(
            (max(1, width * 3 // 4), max(1, height * 3 // 4)), Image.Resampling.LANCZOS
        )


def _bomb(
    name: str, limits: ImageLimits, width: int | None = None, height: int | None = None
) -> ImageRejected:
    limit = f"{limits.max_pixels / 1_000_000:g} megapixels"
    if width is None or height is None:
        return ImageRejected(f"`{shown_name(name)}` has too many pixels; the limit is {limit}.")
    return ImageRejected(
        f"`{shown_name(name)}` is {width:,}×{height:,} pixels; the limit is {limit}."
    )


def _damaged(name: str, kind: str) -> ImageRejected:
    label = "WebP" if kind == "WEBP" else kind
    return ImageRejected(
        f"`{shown_name(name)}` looks like a {label} image but cannot be decoded "
        "(damaged or cut off?)."
    )


class ImagePreparer:
    """Runs the checks and the preparation in worker threads, a few images at a time (each
    decode can briefly take tens of megabytes)."""

    def __init__(self, limits: ImageLimits, *, parallel: int = 2) -> None:
        self.limits = limits
        self._slots = asyncio.Semaphore(parallel)

    def check_count(self, count: int) -> None:
        check_count(count, self.limits)

    def check_size(self, name: str, size: int) -> None:
        check_size(name, size, self.limits)

    async def check(self, name: str, data: bytes) -> CheckedImage:
        async with self._slots:
            return await asyncio.to_thread(check, name, data, self.limits)

    async def prepare(self, images: Sequence[CheckedImage]) -> tuple[PreparedImage, ...]:
        prepared = []
        for image in images:
            async with self._slots:
                prepared.append(await asyncio.to_thread(prepare, image, self.limits))
        return tuple(prepared)
