"""Images of requests (``vict.serve.images``): data URLs, the image root, limits, broken and hostile files."""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path

import pytest
from PIL import Image

from vict.models.feature_cache import CONTENT_KEY, image_key
from vict.serve.errors import RequestError
from vict.serve.images import ImageLimits, load_image_url

LIMITS = ImageLimits()


def encoded(fmt: str = "PNG", size: tuple[int, int] = (20, 16), mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, "red" if mode == "RGB" else 1).save(buf, fmt)
    return buf.getvalue()


def data_url(raw: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(raw).decode()}"


def refused(url: str, limits: ImageLimits = LIMITS, root: Path | None = None) -> RequestError:
    with pytest.raises(RequestError) as err:
        load_image_url(url, "p", limits, root)
    assert err.value.param == "p"
    return err.value


@pytest.mark.parametrize(
    ("fmt", "mime"), [("PNG", "png"), ("JPEG", "jpeg"), ("WEBP", "webp"), ("GIF", "gif"), ("BMP", "bmp")]
)
def test_each_format_decodes_to_rgb_keyed_by_content(fmt: str, mime: str) -> None:
    raw = encoded(fmt)
    a = load_image_url(data_url(raw, f"image/{mime}"), "p", LIMITS)
    b = load_image_url(data_url(raw, f"image/{mime}"), "p", LIMITS)
    assert a.mode == "RGB" and a.size == (20, 16)
    assert a.info[CONTENT_KEY] and image_key(a) == image_key(b)  # two requests, one cache entry
    assert image_key(load_image_url(data_url(encoded(fmt, (21, 16))), "p", LIMITS)) != image_key(a)


def test_malformed_and_hostile_images_are_4xx_with_a_reason() -> None:
    assert refused("data:text/plain;base64,aGVsbG8=").code == "invalid_image_format"
    assert refused("data:image/png,notbase64").code == "invalid_image_url"
    assert refused("data:image/png;base64,@@@@").code == "invalid_base64"
    assert refused(data_url(b"hello, not an image")).code == "invalid_image"
    assert refused(data_url(b"")).code == "invalid_image"
    truncated = refused(data_url(encoded("PNG", (64, 64))[:-30]))
    assert truncated.code == "invalid_image" and "truncated" in truncated.message
    bomb = refused(data_url(encoded("PNG", (6000, 6000), mode="1")))  # 36 megapixels in a few kB
    assert bomb.status == 413 and "6000x6000" in bomb.message
    assert refused(data_url(encoded()), ImageLimits(max_image_pixels=100)).status == 413
    assert refused(data_url(encoded()), ImageLimits(max_image_bytes=10)).status == 413
    assert refused("https://example.com/cat.png").code == "remote_url_refused"
    assert refused("").status == 400


def test_paths_are_read_only_inside_the_image_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a.png").write_bytes(encoded())
    (tmp_path / "secret.png").write_bytes(encoded())
    os.symlink(tmp_path / "secret.png", root / "link.png")
    assert refused("sub/a.png").code == "image_path_refused"  # no root: no paths at all
    assert load_image_url("sub/a.png", "p", LIMITS, root).size == (20, 16)
    assert load_image_url(f"file://{root}/sub/a.png", "p", LIMITS, root).size == (20, 16)
    for escape in ("../secret.png", "sub/../../secret.png", str(tmp_path / "secret.png"), "link.png", "/etc/passwd"):
        err = refused(escape, root=root)
        assert err.status == 403 and err.code == "path_outside_image_root", escape
    assert refused("sub/missing.png", root=root).code == "image_not_found"
