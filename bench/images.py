"""Time and payload size to prepare a 12-megapixel photo for a vision model.

    python -m bench.images [--runs 10] [--side 1024] [--png]

Makes a 4000×3000 JPEG (gradients and noise, about as hard to compress as a photo), then times
the two steps the bot runs on every image: `check` (sniff the type, read the header, refuse
bombs) and `prepare` (decode, downscale, flatten, encode), plus both through `ImagePreparer`
(worker threads, as the bot runs them). Prints the bytes before and after and the base64 length
sent to Ollama. With --png the source is a PNG instead (no reduced-scale JPEG decoding).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import statistics
import time

from PIL import Image

from bot.vision.images import DEFAULT_MAX_BYTES, ImageLimits, ImagePreparer, check, prepare

WIDTH, HEIGHT = 4000, 3000


def photo_like(kind: str) -> bytes:
    """A 12 MP picture: colour gradients with grain, so the encoder has real work to do."""
    horizontal = Image.linear_gradient("L").resize((WIDTH, HEIGHT))
    vertical = Image.linear_gradient("L").rotate(90).resize((WIDTH, HEIGHT))
    radial = Image.radial_gradient("L").resize((WIDTH, HEIGHT))
    picture = Image.merge("RGB", (horizontal, vertical, radial))
    grain = Image.effect_noise((WIDTH, HEIGHT), 24).convert("RGB")
    picture = Image.blend(picture, grain, 0.25)
    buffer = io.BytesIO()
    if kind == "JPEG":
        picture.save(buffer, "JPEG", quality=90)
    else:
        picture.save(buffer, "PNG", compress_level=6)
    return buffer.getvalue()


def timed(function: object, runs: int) -> list[float]:
    assert callable(function)
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        function()
        times.append((time.perf_counter() - began) * 1000)
    return times


def summary(label: str, times: list[float]) -> str:
    return (
        f"{label:<34} median {statistics.median(times):7.1f} ms   "
        f"min {min(times):7.1f} ms   max {max(times):7.1f} ms"
    )


async def through_preparer(data: bytes, limits: ImageLimits, runs: int) -> list[float]:
    preparer = ImagePreparer(limits)
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        checked = await preparer.check("photo", data)
        await preparer.prepare([checked])
        times.append((time.perf_counter() - began) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--side", type=int, default=1024, help="longest side after downscaling")
    parser.add_argument("--png", action="store_true", help="a 12 MP PNG instead of a JPEG")
    args = parser.parse_args()
    kind = "PNG" if args.png else "JPEG"
    data = photo_like(kind)
    # A grainy 12 MP PNG is bigger than the default 10 MB limit; the bench times the work, so
    # the limit is raised to let it through.
    limits = ImageLimits(max_side=args.side, max_bytes=max(DEFAULT_MAX_BYTES, len(data)))
    checked = check("photo", data, limits)
    result = prepare(checked, limits)
    print(f"source: {WIDTH}×{HEIGHT} {kind} ({WIDTH * HEIGHT / 1e6:.0f} MP), {len(data):,} bytes")
    print(
        f"prepared: {result.width}×{result.height} JPEG, {len(result.data):,} bytes "
        f"({len(result.data) / len(data):.1%} of the source); base64 sent to Ollama: "
        f"{len(result.b64):,} characters"
    )
    print(f"runs: {args.runs}")
    print(
        summary(
            "check (type, header, bomb limit)", timed(lambda: check("p", data, limits), args.runs)
        )
    )
    print(
        summary(
            "prepare (decode, resize, encode)", timed(lambda: prepare(checked, limits), args.runs)
        )
    )
    print(
        summary("both, in worker threads", asyncio.run(through_preparer(data, limits, args.runs)))
    )


if __name__ == "__main__":
    main()
