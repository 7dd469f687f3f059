"""load_image: colour modes converted, each bad image refused with its reason, or skipped and counted."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image

from vict.data.images import load_image
from vict.data.policy import BadImageError, BadInputPolicy


def _save(tmp_path: Path, image: Image.Image, name: str, **kw) -> Path:
    path = tmp_path / name
    image.save(path, **kw)
    return path


@pytest.mark.parametrize(
    ("mode", "value", "name", "expected"),
    [
        ("L", 128, "gray.png", (128, 128, 128)),
        ("CMYK", (0, 255, 0, 0), "cmyk.jpg", (255, 0, 255)),  # full magenta ink
        ("RGB", (10, 200, 30), "rgb.png", (10, 200, 30)),
        ("I;16", 65535, "deep.png", (255, 255, 255)),
    ],
)
def test_colour_modes_become_rgb(tmp_path: Path, mode: str, value, name: str, expected) -> None:
    path = _save(tmp_path, Image.new(mode, (8, 8), value), name)
    img = load_image(path)
    assert img.mode == "RGB" and img.size == (8, 8)
    assert all(abs(a - b) <= 3 for a, b in zip(img.getpixel((4, 4)), expected)), img.getpixel((4, 4))


def test_transparency_is_composited_on_white(tmp_path: Path) -> None:
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    rgba.putpixel((0, 0), (255, 0, 0, 255))
    img = load_image(_save(tmp_path, rgba, "a.png"))
    assert img.getpixel((0, 0)) == (255, 0, 0) and img.getpixel((3, 3)) == (255, 255, 255)
    palette = Image.new("P", (4, 4), 1)
    palette.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    palette.info["transparency"] = 1
    img = load_image(_save(tmp_path, palette, "p.png", transparency=1))
    assert img.getpixel((1, 1)) == (255, 255, 255)
    la = Image.new("LA", (2, 2), (0, 255))
    assert load_image(_save(tmp_path, la, "la.png")).getpixel((0, 0)) == (0, 0, 0)


def _huge_png_header(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims ``width x height`` (valid CRCs, no real pixel data behind it)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00")) + chunk(b"IEND", b"")
    )
    return path


def test_decompression_bomb_is_refused_before_decoding(tmp_path: Path) -> None:
    path = _huge_png_header(tmp_path / "bomb.png", 40_000, 40_000)
    with pytest.raises(BadImageError) as e:
        load_image(path)
    message = str(e.value)
    assert e.value.reason == "image_too_large"
    assert (
        "bomb.png" in message
        and "1,600,000,000 pixels" in message
        and "89,478,485" in message
        and "max_pixels" in message
    )
    small = _save(tmp_path, Image.new("RGB", (100, 100)), "s.png")
    with pytest.raises(BadImageError, match="over the limit of 5,000"):
        load_image(small, max_pixels=5_000)
    assert load_image(small, max_pixels=10_000).size == (100, 100)
    # Under Pillow's own hard limit (2x its default) our check reports the dimensions.
    medium = _huge_png_header(tmp_path / "medium.png", 10_000, 10_000)
    with pytest.raises(BadImageError, match="10000x10000 = 100,000,000 pixels"):
        load_image(medium)


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda p: p, "missing_image"),
        (lambda p: (p.write_bytes(b"this is not an image at all"), p)[1], "unreadable_image"),
        (
            lambda p: (
                Image.new("RGB", (64, 64), (1, 2, 3)).save(p, format="PNG"),
                p.write_bytes(p.read_bytes()[:60]),
                p,
            )[2],
            "truncated_image",
        ),
    ],
    ids=["missing", "unreadable", "truncated"],
)
def test_bad_images_fail_fast_or_skip_and_count(tmp_path: Path, make, reason: str) -> None:
    path = make(tmp_path / "img.png")
    with pytest.raises(BadImageError) as e:
        load_image(path, record="image 42")
    assert e.value.reason == reason
    assert str(path) in str(e.value) and "image 42" in str(e.value)
    policy = BadInputPolicy("skip")
    assert load_image(path, policy=policy) is None
    assert load_image(path, policy=policy) is None
    assert policy.report.counts == {reason: 2} and policy.report.total == 2
    assert str(path) in policy.report.summary() and f"{reason}=2" in policy.report.summary()


def test_truncated_jpeg_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "t.jpg"
    Image.new("RGB", (64, 64), (200, 10, 10)).save(path, quality=95)
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(BadImageError) as e:
        load_image(path)
    assert e.value.reason in ("truncated_image", "unreadable_image")


def test_policy_rejects_unknown_mode() -> None:
    with pytest.raises(ValueError, match="'fail'"):
        BadInputPolicy("ignore")  # type: ignore[arg-type]
