"""Small image files made with Pillow for the tests (nothing binary is checked in)."""

from __future__ import annotations

import base64
import io
import struct
import zlib

from PIL import Image


def encode(image: Image.Image, kind: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, kind, **options)
    return buffer.getvalue()


def png(
    width: int = 64, height: int = 48, color: object = (200, 30, 30), mode: str = "RGB"
) -> bytes:
    return encode(Image.new(mode, (width, height), color), "PNG")  # type: ignore[arg-type]


def jpeg(
    width: int = 64, height: int = 48, color: object = (30, 30, 200), **options: object
) -> bytes:
    return encode(Image.new("RGB", (width, height), color), "JPEG", **options)  # type: ignore[arg-type]


def webp(width: int = 64, height: int = 48, color: object = (30, 200, 30)) -> bytes:
    return encode(Image.new("RGB", (width, height), color), "WEBP")  # type: ignore[arg-type]


def animated_gif(colors: list[tuple[int, int, int]], size: tuple[int, int] = (40, 30)) -> bytes:
    frames = [Image.new("RGB", size, color) for color in colors]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(width: int = 30_000, height: int = 30_000) -> bytes:
    """A valid PNG header claiming `width`×`height` 8-bit greyscale pixels, followed by a few
    rows of highly compressible data: a few hundred bytes that would decode to gigabytes."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (width + 1) * 4, 9)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", rows)
        + _chunk(b"IEND", b"")
    )


def decoded(b64: str) -> Image.Image:
    """The image inside a plain base64 string (refuses anything but strict standard base64)."""
    raw = base64.b64decode(b64, validate=True)
    image = Image.open(io.BytesIO(raw))
    image.load()
    return image
