"""Unlabelled image datasets (no factor grid) and the image resizing every reader shares.

An ``ImageDataset`` has the access path training uses (``__len__``, ``images_at``) and a
``sample`` like the ground-truth datasets' but with ``None`` for the codes. It deliberately has
no ``factor_names``/``factor_sizes``: ``diffdrl.metrics.evaluate`` tells factor-free data by
their absence and then computes only the unsupervised scores.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from diffdrl.data.validation import file_error


class ImageDataset:
    """Base class: subclasses set ``_count`` and implement ``_load(i) -> uint8 (H, W, C)``."""

    resolution: int

    def __len__(self) -> int:
        return self._count

    def _load(self, i: int) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def images_at(self, index: np.ndarray) -> np.ndarray:
        """Images uint8 (B, H, W, C) of flat indices (B,)."""
        index = np.asarray(index, dtype=np.int64).reshape(-1)
        if index.size and (index.min() < 0 or index.max() >= len(self)):
            raise ValueError(f"index out of range [0, {len(self)})")
        out = np.empty((len(index), self.resolution, self.resolution, 3), np.uint8)
        for row, i in enumerate(index):
            out[row] = self._load(int(i))
        return out

    def sample(self, n: int, rng: np.random.Generator) -> tuple[None, np.ndarray]:
        """(None, images (n, H, W, C) uint8) for n images drawn uniformly with replacement."""
        return None, self.images_at(rng.integers(0, len(self), size=n))


def resize_images(images: np.ndarray, resolution: int, chunk: int = 1024) -> np.ndarray:
    """uint8 (B, H, W, C) -> uint8 (B, r, r, C), antialiased bilinear; a no-op at the same size."""
    if images.shape[1:3] == (resolution, resolution):
        return images
    out = np.empty((len(images), resolution, resolution, images.shape[3]), np.uint8)
    for start in range(0, len(images), chunk):  # bounds the float copy
        x = torch.from_numpy(np.ascontiguousarray(images[start : start + chunk])).permute(0, 3, 1, 2).float()
        x = torch.nn.functional.interpolate(x, size=(resolution, resolution), mode="bilinear", antialias=True)
        out[start : start + chunk] = x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return out


def check_resolution(resolution: int) -> int:
    if isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer)):
        raise TypeError(f"resolution must be an int, got {resolution!r}")
    if resolution < 8:
        raise ValueError(f"resolution must be at least 8, got {resolution}")
    return int(resolution)


def read_rgb(path: Path) -> Image.Image:
    """An image file as RGB; an unreadable or corrupt file is a one-line ValueError naming it."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such image file") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise file_error(path, f"not a readable image ({err})") from None


def resize_shorter_and_crop(image: Image.Image, shorter: int, crop: int) -> Image.Image:
    """Resize so the shorter side is ``shorter`` (as torchvision's Resize(int)), then CenterCrop(crop)."""
    w, h = image.size
    if w <= h:
        size = (shorter, int(shorter * h / w))
    else:
        size = (int(shorter * w / h), shorter)
    return center_crop(image.resize(size, Image.BILINEAR), crop)


def center_crop(image: Image.Image, crop: int) -> Image.Image:
    """torchvision's CenterCrop(crop) rounding; pads nothing, so ``crop`` must fit."""
    w, h = image.size
    if crop > min(w, h):
        raise ValueError(f"cannot centre-crop {crop} pixels from an image of {w}x{h}")
    left, top = int(round((w - crop) / 2.0)), int(round((h - crop) / 2.0))
    return image.crop((left, top, left + crop, top + crop))
