"""Uploaded images: PNG or JPEG only, bounded in bytes and pixels, resized as the run's data is.

Checks run before Pillow decodes anything big: the byte count first, then the magic bytes, then
the declared size (Pillow reads it from the header without decoding the pixels), so neither a huge
file nor a decompression bomb reaches the decoder.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from diffdrl.data.image_dataset import resize_shorter_and_crop

MAX_UPLOAD_BYTES = 4 * 1024 * 1024
MAX_UPLOAD_PIXELS = 4096 * 4096
FORMATS = {b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG"}


class UploadError(ValueError):
    """A rejected upload; ``status`` is the HTTP status that says why (413 too large, 415 wrong type)."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


def image_format(data: bytes) -> str | None:
    """'PNG' or 'JPEG' from the file's magic bytes, or None for anything else."""
    return next((name for magic, name in FORMATS.items() if data.startswith(magic)), None)


def decode_upload(
    data: bytes,
    resolution: int,
    max_bytes: int = MAX_UPLOAD_BYTES,
    max_pixels: int = MAX_UPLOAD_PIXELS,
) -> np.ndarray:
    """uint8 (r, r, 3) of an uploaded PNG/JPEG file's bytes: RGB, shorter side resized to the
    run's resolution and centre-cropped (``resize_shorter_and_crop``, as the image readers do)."""
    if len(data) > max_bytes:
        raise UploadError(f"upload too large: {len(data)} bytes, the limit is {max_bytes} bytes", 413)
    if not data:
        raise UploadError("empty upload: send the bytes of a PNG or JPEG file", 415)
    kind = image_format(data)
    if kind is None:
        raise UploadError("not a PNG or JPEG image (its first bytes are neither format's signature)", 415)
    try:
        with Image.open(io.BytesIO(data), formats=[kind]) as image:
            w, h = image.size
            if w * h > max_pixels:
                raise UploadError(f"image too large: {w}x{h} pixels, the limit is {max_pixels} pixels", 413)
            if min(w, h) < 1:
                raise UploadError(f"image has no pixels ({w}x{h})", 415)
            rgb = image.convert("RGB")
    except UploadError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise UploadError(f"corrupt {kind} image: {err}", 415) from None
    return np.array(resize_shorter_and_crop(rgb, resolution, resolution), dtype=np.uint8)  # writable


def encode_png(image: np.ndarray) -> bytes:
    """PNG bytes of a uint8 (H, W, C) image (C 3, or 4 with alpha)."""
    out = io.BytesIO()
    Image.fromarray(image).save(out, format="PNG")
    return out.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    """uint8 (H, W, 3) of PNG bytes that ``encode_png`` wrote (a render, not an upload)."""
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
