"""bot/vision/images.py: what is refused, and what a prepared image looks like."""

from __future__ import annotations

import io
import random
import warnings

import pytest
from PIL import Image

from bot.vision.images import (
    ImageLimits,
    ImagePreparer,
    ImageRejected,
    check,
    check_count,
    check_size,
    prepare,
    sniff,
)
from tests.doubles.fake_ollama import base64_error
from tests.imagefiles import animated_gif, decoded, encode, jpeg, png, png_bomb, webp

LIMITS = ImageLimits()


def noise(width: int, height: int, seed: int = 1) -> Image.Image:
    return Image.frombytes(
        "RGB", (width, height), random.Random(seed).randbytes(width * height * 3)
    )


def prepared(data: bytes, limits: ImageLimits = LIMITS, name: str = "x.png") -> Image.Image:
    result = prepare(check(name, data, limits), limits)
    image = decoded(result.b64)
    assert (image.width, image.height) == (result.width, result.height)
    assert result.mime == "image/jpeg" and image.format == "JPEG"
    return image


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (png(), "PNG"),
        (jpeg(), "JPEG"),
        (webp(), "WEBP"),
        (animated_gif([(255, 0, 0), (0, 0, 255)]), "GIF"),
        (b"hello, I am a text file\n", None),
        (b"", None),
        (b"RIFF\x00\x00\x00\x00WAVEfmt ", None),  # a RIFF file that is not WebP
    ],
)
def test_sniff_reads_the_type_from_the_bytes(data: bytes, kind: str | None) -> None:
    assert sniff(data) == kind


def test_check_refuses_a_text_file_named_png() -> None:
    with pytest.raises(ImageRejected) as refused:
        check("cat.png", b"definitely not a picture", LIMITS)
    assert refused.value.user_message == (
        "`cat.png` is not an image I can read: send a PNG, JPEG, WebP or GIF file."
    )


def test_check_refuses_an_empty_file() -> None:
    with pytest.raises(ImageRejected, match=r"`empty\.jpg` is empty \(0 bytes\)"):
        check("empty.jpg", b"", LIMITS)


def test_check_refuses_an_oversized_file_before_looking_at_it() -> None:
    with pytest.raises(ImageRejected) as refused:
        check("big.png", png() + b"\x00" * LIMITS.max_bytes, LIMITS)
    assert refused.value.user_message == "`big.png` is 10.1 MB; images can be at most 10 MB."
    with pytest.raises(ImageRejected, match=r"is 12\.5 MB; images can be at most 10 MB"):
        check_size("big.png", int(12.5 * 1024 * 1024), LIMITS)  # the declared size, no download
    check_size("ok.png", LIMITS.max_bytes, LIMITS)  # exactly the limit is fine


def test_check_refuses_a_decompression_bomb_from_its_header() -> None:
    bomb = png_bomb(8_000, 8_000)
    assert len(bomb) < 2_000
    with pytest.raises(ImageRejected) as refused:
        check("bomb.png", bomb, LIMITS)
    assert refused.value.user_message == (
        "`bomb.png` is 8,000×8,000 pixels; the limit is 50 megapixels."
    )
    with pytest.raises(ImageRejected) as refused:  # past Pillow's own limit: no size to show
        check("bomb.png", png_bomb(30_000, 30_000), LIMITS)
    assert refused.value.user_message == (
        "`bomb.png` has too many pixels; the limit is 50 megapixels."
    )


def test_pillows_own_bomb_limits_are_refusals_too() -> None:
    lenient = ImageLimits(max_pixels=10**12)
    with pytest.raises(ImageRejected, match="too many pixels"):  # DecompressionBombError
        check("huge.png", png_bomb(20_000, 20_000), lenient)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ImageRejected, match="too many pixels"):  # DecompressionBombWarning
            check("big.png", png_bomb(10_000, 10_000), lenient)


def test_a_truncated_image_is_refused_when_decoded() -> None:
    whole = encode(noise(64, 48), "PNG")
    checked = check("cut.png", whole[: len(whole) // 2], LIMITS)  # the header is intact
    with pytest.raises(ImageRejected) as refused:
        prepare(checked, LIMITS)
    assert refused.value.user_message == (
        "`cut.png` looks like a PNG image but cannot be decoded (damaged or cut off?)."
    )


def test_more_images_than_the_per_turn_maximum_are_refused() -> None:
    check_count(4, LIMITS)
    with pytest.raises(ImageRejected) as refused:
        check_count(5, LIMITS)
    assert refused.value.user_message == (
        "You attached 5 images; at most 4 can go with one message."
    )


def test_file_names_cannot_break_out_of_the_code_span() -> None:
    with pytest.raises(ImageRejected) as refused:
        check("a`b`\nc.png", b"", LIMITS)
    assert refused.value.user_message.startswith("`a'b' c.png` is empty")


def test_big_images_are_downscaled_keeping_the_aspect_ratio() -> None:
    gradient = Image.linear_gradient("L").resize((3000, 1500)).convert("RGB")
    image = prepared(encode(gradient, "PNG"))
    assert image.size == (1024, 512)
    tall = prepared(jpeg(600, 2400), ImageLimits(max_side=300))
    assert tall.size == (75, 300)


def test_small_images_are_not_upscaled() -> None:
    assert prepared(png(64, 48)).size == (64, 48)


def test_the_result_is_plain_standard_base64() -> None:
    result = prepare(check("x.webp", webp(), LIMITS), LIMITS)
    assert not result.b64.startswith("data:")
    assert base64_error(result.b64) is None  # what Ollama's Go decoder accepts
    assert "\n" not in result.b64 and "-" not in result.b64 and "_" not in result.b64


def test_a_gif_gives_its_first_frame() -> None:
    image = prepared(animated_gif([(255, 0, 0), (0, 0, 255), (0, 255, 0)]), name="anim.gif")
    red, green, blue = image.convert("RGB").getpixel((20, 15))  # type: ignore[misc]
    assert red > 200 and green < 50 and blue < 50


def test_transparency_is_flattened_onto_white() -> None:
    clear = png(32, 32, (0, 0, 0, 0), mode="RGBA")  # fully transparent black
    assert prepared(clear).convert("RGB").getpixel((5, 5)) == (255, 255, 255)
    half = Image.new("RGBA", (32, 32), (255, 0, 0, 255))
    half.paste((0, 0, 0, 0), (0, 0, 16, 32))
    image = prepared(encode(half, "PNG")).convert("RGB")
    left, right = image.getpixel((4, 16)), image.getpixel((28, 16))
    assert min(left) > 240  # type: ignore[arg-type]
    assert right[0] > 200 and right[1] < 60  # type: ignore[index]


def test_exif_orientation_is_applied() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # the camera was turned: show rotated 90° clockwise
    sideways = jpeg(200, 100, exif=exif.tobytes())
    image = prepared(sideways, name="photo.jpg")
    assert image.size == (100, 200)
    assert not image.getexif()  # metadata (orientation, GPS, ...) is not passed on


def test_sixteen_bit_greyscale_is_scaled_not_clipped() -> None:
    grey = Image.new("I;16", (16, 16), 32768)  # mid-grey in 16 bits
    value = prepared(encode(grey, "PNG")).convert("L").getpixel((8, 8))
    assert 120 <= value <= 136  # type: ignore[operator]


def test_the_prepared_jpeg_is_capped_in_bytes() -> None:
    limits = ImageLimits(encoded_max_bytes=40_000)
    result = prepare(check("noise.png", encode(noise(1024, 1024), "PNG"), limits), limits)
    assert len(result.data) <= 40_000
    assert max(result.width, result.height) <= 1024


async def test_preparer_checks_and_prepares_off_the_event_loop() -> None:
    preparer = ImagePreparer(LIMITS)
    checked = await preparer.check("p.png", png(2048, 1024))
    assert (checked.format, checked.width, checked.height) == ("PNG", 2048, 1024)
    (result,) = await preparer.prepare([checked])
    assert (result.width, result.height) == (1024, 512)
    with pytest.raises(ImageRejected):
        await preparer.check("x.png", b"nope")
    assert Image.open(io.BytesIO(result.data)).format == "JPEG"
