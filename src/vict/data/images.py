"""Load an image as RGB, or say exactly why it cannot be used.

Handled: missing file, unreadable (not an image), truncated, decompression-bomb-sized (refused before
decoding), and every colour mode: grayscale, palette, CMYK, 16-bit, ... are converted to RGB; images with
transparency (RGBA, LA, palette with a transparent index) are composited on white, so transparent pixels
do not turn black.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from vict.data.policy import SKIP_HINT, BadImageError, BadInputPolicy, resolve_policy

DEFAULT_MAX_PIXELS = 89_478_485
"""Same as Pillow's default ``Image.MAX_IMAGE_PIXELS`` (about 9459 x 9459): far above any training image."""
MAX_PIXELS_ENV = "VICT_MAX_IMAGE_PIXELS"
"""Environment variable that sets the pixel limit of every image load (training, evaluation, ``vict data stats``)."""


def max_image_pixels() -> int:
    """The pixel limit: ``$VICT_MAX_IMAGE_PIXELS`` when set, else ``DEFAULT_MAX_PIXELS``."""
    value = os.environ.get(MAX_PIXELS_ENV)
    if value is None or not value.strip():
        return DEFAULT_MAX_PIXELS
    try:
        limit = int(value.replace("_", ""))
    except ValueError:
        limit = 0
    if limit < 1:
        raise ValueError(f"{MAX_PIXELS_ENV}={value!r}: must be a positive whole number of pixels, e.g. 200000000")
    return limit


def _to_rgb(image: Image.Image) -> Image.Image:
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
    if has_alpha:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        # 16-bit grayscale: scale 0..65535 to 0..255 instead of clipping everything above 255 to white;
        # 32-bit int / float: scale by the maximum when it exceeds 8 bits.
        import numpy as np

        arr = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") else max(255.0, float(arr.max()) if arr.size else 255.0)
        arr = (np.clip(arr, 0, top) / top * 255.0).round().astype("uint8")
        return Image.fromarray(arr).convert("RGB")
    return image.convert("RGB") if image.mode != "RGB" else image


def _too_large(path: Path, where: str, size: str, max_pixels: int) -> BadImageError:
    return BadImageError(
        f"{path}{where}: image is {size} pixels, over the limit of {max_pixels:,} (a decompression bomb or a huge "
        f"scan); if you trust the file, downscale it or raise the limit (environment variable {MAX_PIXELS_ENV}=N "
        f"for every vict command, load_image(max_pixels=N) in Python), {SKIP_HINT}",
        reason="image_too_large",
        file=str(path),
    )


def load_image(
    path: str | Path,
    *,
    max_pixels: int | None = None,
    policy: BadInputPolicy | str | None = None,
    record: str | None = None,
) -> Image.Image | None:
    """Open ``path`` fully decoded as an RGB ``PIL.Image`` (size unchanged).

    Args:
        max_pixels: refuse images with more pixels (width x height) than this, before decoding them (default
            ``max_image_pixels()``: ``$VICT_MAX_IMAGE_PIXELS``, else ``DEFAULT_MAX_PIXELS``).
        policy: fail fast (default: raise ``BadImageError``) or skip (count it and return ``None``).
        record: what refers to the image (e.g. ``"image 391895"``), added to error messages.

    Raises:
        BadImageError: with ``reason`` missing_image / unreadable_image / truncated_image / image_too_large.
    """
    path = Path(path)
    where = f" (referenced by {record})" if record else ""
    try:
        return _load(path, max_image_pixels() if max_pixels is None else max_pixels, where)
    except BadImageError as e:
        resolve_policy(policy).handle(e)
        return None


def check_images(
    images: Sequence[tuple[str, Path | None]],
    *,
    max_pixels: int | None = None,
    workers: int | None = None,
) -> list[BadImageError]:
    """Open and fully decode every image; return one ``BadImageError`` per image that cannot be used, in order.

    ``images``: ``(record, path)`` pairs, ``record`` naming what refers to the image (``"image 391895"``); a
    ``None`` path is a missing image. Decoding runs on ``workers`` threads (default: up to 8; Pillow's decoders
    release the GIL) and keeps no image.
    """
    limit = max_image_pixels() if max_pixels is None else max_pixels

    def check(item: tuple[str, Path | None]) -> BadImageError | None:
        record, path = item
        where = f" (referenced by {record})" if record else ""
        if path is None:
            return BadImageError(
                f"{record}: no image file (no images folder given, or no file name in its record); pass the images "
                "folder (--images-dir / --images)",
                reason="missing_image",
                record=record,
            )
        try:
            _load(Path(path), limit, where)
        except BadImageError as e:
            e.record = record
            return e
        return None

    workers = workers or min(8, os.cpu_count() or 1)
    if workers <= 1 or len(images) <= 1:
        found = [check(item) for item in images]
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            found = list(pool.map(check, images))
    return [e for e in found if e is not None]


def _load(path: Path, max_pixels: int, where: str) -> Image.Image:
    if not path.is_file():
        raise BadImageError(
            f"{path}{where}: image file not found; check the images folder (vict data stats --images-dir, vict eval "
            f"--images, config data.images) or the annotation's file name, {SKIP_HINT}",
            reason="missing_image",
            file=str(path),
        )
    # Pillow has its own bomb check at 2x its global limit; ours runs first with the caller's limit, so only
    # raise Pillow's when the caller allows more.
    if max_pixels > (Image.MAX_IMAGE_PIXELS or 0):
        Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                width, height = im.size
                if width * height > max_pixels:
                    raise _too_large(path, where, f"{width}x{height} = {width * height:,}", max_pixels)
                im.load()
                return _to_rgb(im)
    except BadImageError:
        raise
    except Image.DecompressionBombError as e:
        # Pillow refuses at open when the header claims > 2x its global limit; its message holds the pixel count.
        found = re.search(r"\((\d+) pixels\)", str(e))
        raise _too_large(path, where, f"{int(found.group(1)):,}" if found else "too many", max_pixels) from None
    except UnidentifiedImageError:
        raise BadImageError(
            f"{path}{where}: not a readable image (unknown or corrupt format); re-download or remove it, {SKIP_HINT}",
            reason="unreadable_image",
            file=str(path),
        ) from None
    except (OSError, SyntaxError, ValueError) as e:
        reason = "truncated_image" if "truncated" in str(e).lower() else "unreadable_image"
        raise BadImageError(
            f"{path}{where}: cannot decode image ({e}); the file is damaged or truncated: re-download or remove "
            f"it, {SKIP_HINT}",
            reason=reason,
            file=str(path),
        ) from None
