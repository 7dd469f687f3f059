"""Images of a request: base64 data URLs, or files under ``--image-root``; never a remote URL.

``load_image_url(url, param, limits, image_root)`` returns an RGB ``PIL.Image`` whose ``info`` carries a digest of
its bytes (``CONTENT_KEY``: requests about the same image share its cached features, prefix and caption), or raises
``RequestError`` naming the part of the request and the fix:

- a data URL must be ``data:image/<png|jpeg|webp|gif|bmp>;base64,<data>``; the bytes must be valid base64, at most
  ``max_image_bytes``, and decode to an image of one of those formats (a GIF gives its first frame);
- a path (``file://`` or plain) is read only when the server has an image root, and only if it resolves (symbolic
  links followed) inside that root; anything else is 403;
- the image's pixel count (read from its header, before decoding) is at most ``max_image_pixels`` (413 beyond: a
  decompression bomb is refused unread), and a truncated or corrupt image is a 400.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import re
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from vict.models.feature_cache import CONTENT_KEY
from vict.serve.errors import RequestError

FORMATS = {"PNG": "png", "JPEG": "jpeg", "WEBP": "webp", "GIF": "gif", "BMP": "bmp"}
MIME_TYPES = {"image/png", "image/jpeg", "image/jpg", "image/webp", "image/gif", "image/bmp", "image/x-ms-bmp"}
_DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[\w.+-]+=[\w.+-]+)*)(?P<b64>;base64)?,")


@dataclass(frozen=True)
class ImageLimits:
    """Bounds on one request's image (safe defaults: 10 MiB, 25 megapixels)."""

    max_image_bytes: int = 10 * 1024 * 1024
    max_image_pixels: int = 25_000_000


def load_image_url(url: str, param: str, limits: ImageLimits, image_root: Path | None = None) -> Image.Image:
    """The image ``url`` names (see the module docstring)."""
    if not isinstance(url, str) or not url.strip():
        raise RequestError("image_url.url must be a non-empty string (a base64 data URL)", param=param)
    url = url.strip()
    if url.startswith("data:"):
        return decode_image(_data_url_bytes(url, param, limits), param, limits)
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", url) and not url.startswith("file://"):
        raise RequestError(
            f"{url.split('://', 1)[0]}:// URLs are not fetched by this server: send the image inline as a base64 data "
            "URL (data:image/png;base64,...)",
            param=param,
            code="remote_url_refused",
        )
    if image_root is None:
        raise RequestError(
            "image paths are read only when the server is started with --image-root DIR: send the image as a base64 "
            "data URL (data:image/png;base64,...)",
            param=param,
            code="image_path_refused",
        )
    return decode_image(_file_bytes(url.removeprefix("file://"), param, limits, image_root), param, limits)


def _data_url_bytes(url: str, param: str, limits: ImageLimits) -> bytes:
    match = _DATA_URL.match(url)
    if match is None or not match.group("b64"):
        raise RequestError(
            "image_url.url is not a base64 data URL: use data:image/png;base64,<data> (png, jpeg, webp, gif or bmp)",
            param=param,
            code="invalid_image_url",
        )
    mime = (match.group("mime") or "").lower()
    if mime not in MIME_TYPES:
        raise RequestError(
            f"data URL of type {mime or 'none'!r} is not an image this server reads: use image/png, image/jpeg, "
            "image/webp, image/gif or image/bmp",
            param=param,
            code="invalid_image_format",
        )
    data = url[match.end() :]
    if len(data) * 3 // 4 > limits.max_image_bytes + 3:
        raise RequestError(
            f"the image is over {limits.max_image_bytes} bytes (the server's --max-image-bytes): send a smaller one",
            status=413,
            param=param,
            code="image_too_large",
        )
    try:
        raw = base64.b64decode("".join(data.split()), validate=True)
    except (binascii.Error, ValueError) as err:
        raise RequestError(
            f"the data URL's payload is not valid base64 ({err})", param=param, code="invalid_base64"
        ) from err
    return raw


def _file_bytes(path: str, param: str, limits: ImageLimits, image_root: Path) -> bytes:
    root = image_root.resolve()
    candidate = Path(path)
    resolved = (candidate if candidate.is_absolute() else root / candidate).resolve()
    if not resolved.is_relative_to(root):
        raise RequestError(
            f"image path {path!r} resolves outside the server's image root: only files inside --image-root are read",
            status=403,
            param=param,
            code="path_outside_image_root",
        )
    if not resolved.is_file():
        raise RequestError(
            f"image path {path!r}: no such file under the image root", param=param, code="image_not_found"
        )
    if resolved.stat().st_size > limits.max_image_bytes:
        raise RequestError(
            f"image file {path!r} is over {limits.max_image_bytes} bytes (the server's --max-image-bytes)",
            status=413,
            param=param,
            code="image_too_large",
        )
    return resolved.read_bytes()


def decode_image(raw: bytes, param: str, limits: ImageLimits) -> Image.Image:
    """An RGB image from encoded bytes, bounded by ``limits`` (``RequestError`` otherwise)."""
    if len(raw) > limits.max_image_bytes:
        raise RequestError(
            f"the image is {len(raw)} bytes, over the server's --max-image-bytes {limits.max_image_bytes}",
            status=413,
            param=param,
            code="image_too_large",
        )
    if not raw:
        raise RequestError("the image is empty (0 bytes)", param=param, code="invalid_image")
    try:
        image = Image.open(io.BytesIO(raw), formats=list(FORMATS))
    except Image.DecompressionBombError as err:
        raise RequestError(
            f"the image is too many pixels to decode ({err}): send a smaller image",
            status=413,
            param=param,
            code="image_too_large",
        ) from err
    except (OSError, ValueError, SyntaxError) as err:
        raise RequestError(
            f"the image data is not a png, jpeg, webp, gif or bmp image ({err})", param=param, code="invalid_image"
        ) from err
    width, height = image.size
    if width * height > limits.max_image_pixels:
        raise RequestError(
            f"the image is {width}x{height} = {width * height} pixels, over the server's --max-image-pixels "
            f"{limits.max_image_pixels}: send a smaller image",
            status=413,
            param=param,
            code="image_too_large",
        )
    try:
        image.seek(0)
        rgb = image.convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise RequestError(
            f"the image cannot be decoded: truncated or corrupt ({err})", param=param, code="invalid_image"
        ) from err
    rgb.info[CONTENT_KEY] = hashlib.sha256(raw).hexdigest()
    return rgb
