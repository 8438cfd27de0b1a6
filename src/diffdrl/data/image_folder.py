"""A folder of the user's own images (png/jpg, searched recursively), unlabelled.

Each image is resized so its shorter side is the resolution and centre-cropped to a square,
decoded per batch with Pillow. Files are taken in sorted path order, so indices are stable.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from diffdrl.data.image_dataset import ImageDataset, check_resolution, read_rgb, resize_shorter_and_crop
from diffdrl.data.validation import existing_path, file_error

SUFFIXES = (".png", ".jpg", ".jpeg")


class ImageFolder(ImageDataset):
    """Every .png/.jpg/.jpeg under ``path`` (any depth), as uint8 (r, r, 3) squares.

    Args:
        path: the folder.
        resolution: output height and width.
    """

    def __init__(self, path: str | Path, resolution: int = 64):
        self.path = existing_path(path, "image-folder", kind="folder")
        self.resolution = check_resolution(resolution)
        self.files = sorted(p for p in self.path.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file())
        if not self.files:
            raise file_error(self.path, f"no images ({', '.join(SUFFIXES)}) found in the folder or below")
        self._count = len(self.files)

    def _load(self, i: int) -> np.ndarray:
        image = resize_shorter_and_crop(read_rgb(self.files[i]), self.resolution, self.resolution)
        return np.asarray(image, np.uint8)
