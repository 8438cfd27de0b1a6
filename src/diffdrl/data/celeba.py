"""CelebA (Liu et al., 2015): aligned faces with 40 binary attributes, no factor grid.

Folder: ``img_align_celeba/`` (178 x 218 JPEGs), ``list_attr_celeba.txt`` (a count line, the 40
attribute names, then ``<file> <+1/-1 x 40>`` per image) and ``list_eval_partition.txt``
(``<file> <0 train | 1 valid | 2 test>``, needed only to pick a split).

There is no standard square crop; this reader names two (scaled with the resolution, stated
at 64 x 64) and records the one used in ``crop``:
    "nashae": Resize(96) -> CenterCrop(64)   (NashAE; the face fills the frame)
    "dlib":   CenterCrop(148) -> Resize(64)  (common in VAE code; more background)
Attributes are 0/1 labels (``attributes(index) -> (B, 40)``, ``attribute_names``) for TAD.
Images are decoded per batch with Pillow.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from diffdrl.data.image_dataset import (
    ImageDataset,
    center_crop,
    check_resolution,
    read_rgb,
    resize_shorter_and_crop,
)
from diffdrl.data.validation import existing_path, file_error

CROPS = ("nashae", "dlib")
SPLITS = {"all": None, "train": 0, "valid": 1, "test": 2}
NUM_ATTRIBUTES = 40


def read_attributes(path: Path) -> tuple[list[str], list[str], np.ndarray]:
    """(file names, attribute names, 0/1 uint8 labels (n, 40)) from ``list_attr_celeba.txt``."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (CelebA needs its attribute list)")
    lines = path.read_text().splitlines()
    if len(lines) < 2:
        raise file_error(path, "too short: expected a count line and a line of attribute names")
    names = lines[1].split()
    if len(names) != NUM_ATTRIBUTES:
        raise file_error(path, f"line 2 must name {NUM_ATTRIBUTES} attributes, found {len(names)}")
    rows = [line.split() for line in lines[2:] if line.strip()]
    bad = next((i for i, row in enumerate(rows) if len(row) != NUM_ATTRIBUTES + 1), None)
    if bad is not None:
        raise file_error(path, f"line {bad + 3} must hold a file name and {NUM_ATTRIBUTES} values")
    try:
        values = np.array([row[1:] for row in rows], dtype=np.int64).reshape(-1, NUM_ATTRIBUTES)
    except ValueError:
        raise file_error(path, "attribute values must be integers +1/-1") from None
    if not np.isin(values, (-1, 1)).all():
        raise file_error(path, "attribute values must be +1 or -1")
    try:
        count = int(lines[0].split()[0])
    except (ValueError, IndexError):
        raise file_error(path, "line 1 must be the number of images") from None
    if count != len(rows):
        raise file_error(path, f"line 1 says {count} images, the file lists {len(rows)}")
    return [row[0] for row in rows], names, (values > 0).astype(np.uint8)


def read_partition(path: Path, files: list[str]) -> np.ndarray:
    """Split ids (n,) aligned with ``files`` from ``list_eval_partition.txt``."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (needed to select a CelebA split)")
    split = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if parts:
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                raise file_error(path, f"line {number} must be '<file> <0|1|2>'")
            split[parts[0]] = int(parts[1])
    missing = [f for f in files if f not in split]
    if missing:
        raise file_error(
            path, f"{len(missing)} image(s) of the attribute list have no split, e.g. {missing[0]}"
        )
    return np.array([split[f] for f in files], np.int64)


class CelebA(ImageDataset):
    """CelebA images at a named crop, with binary attributes (see module doc).

    At other resolutions "nashae" scales its numbers (Resize(96 r / 64) -> CenterCrop(r)) and
    "dlib" keeps its 148-pixel crop of the original (CenterCrop(148) -> Resize(r)), so both show
    the same part of the face at every resolution.

    Args:
        path: the folder holding ``img_align_celeba/`` and the two list files.
        resolution: output height and width.
        crop: "nashae" (default) or "dlib".
        split: "all" (default), "train", "valid" or "test" (the official partition).
    """

    def __init__(self, path: str | Path, resolution: int = 64, *, crop: str = "nashae", split: str = "all"):
        if crop not in CROPS:
            raise ValueError(f"CelebA crop must be one of {', '.join(CROPS)}, got {crop!r}")
        if split not in SPLITS:
            raise ValueError(f"CelebA split must be one of {', '.join(SPLITS)}, got {split!r}")
        self.path = existing_path(path, "celeba", kind="folder")
        self.resolution, self.crop, self.split = check_resolution(resolution), crop, split
        self.image_dir = self.path / "img_align_celeba"
        if not self.image_dir.is_dir():
            raise FileNotFoundError(f"{self.image_dir}: no such folder (CelebA's aligned images)")
        files, self.attribute_names, labels = read_attributes(self.path / "list_attr_celeba.txt")
        keep = np.ones(len(files), bool)
        if SPLITS[split] is not None:
            keep = read_partition(self.path / "list_eval_partition.txt", files) == SPLITS[split]
        self.files = [f for f, k in zip(files, keep, strict=True) if k]
        self._labels = labels[keep]
        self._count = len(self.files)
        if self._count == 0:
            raise file_error(self.path, f"no images in split {split!r}")

    def attributes(self, index: np.ndarray) -> np.ndarray:
        """0/1 attribute labels uint8 (B, 40) of flat indices (B,)."""
        return self._labels[np.asarray(index, dtype=np.int64)]

    def _load(self, i: int) -> np.ndarray:
        image = read_rgb(self.image_dir / self.files[i])
        r = self.resolution
        if self.crop == "nashae":
            image = resize_shorter_and_crop(image, round(96 * r / 64), r)
        else:
            side = min(148, *image.size)  # original pixels, whatever the resolution
            image = center_crop(image, side).resize((r, r), Image.BILINEAR)
        return np.asarray(image, np.uint8)
