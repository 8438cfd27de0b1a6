"""Shapes3D (Burgess & Kim, 2018) read from the published ``3dshapes.h5``.

File: HDF5 ``images`` (480000, 64, 64, 3) uint8 and ``labels`` (480000, 6) float64 factor
*values*, rows in row-major order over (floor_hue 10, wall_hue 10, object_hue 10, scale 8,
shape 4, orientation 15), orientation fastest. Classes are the rank of each value among its
column's distinct values (never a cast of the floats), and the reader checks that the rows
really are that grid. A smaller file with the same keys and a smaller full grid reads too
(tests build one); ``strict=True`` demands the published sizes and byte size.

Images are read lazily from the file per batch (sorted, de-duplicated indices), or once into
memory with ``in_memory=True`` (5.9 GB as uint8, with a progress bar).
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
from tqdm.auto import tqdm

from diffdrl.data.ground_truth import GroundTruthDataset
from diffdrl.data.image_dataset import check_resolution, resize_images
from diffdrl.data.validation import (
    PUBLISHED_SIZES,
    check_array,
    check_keys,
    existing_path,
    file_error,
    grid_codes,
    verify_file,
)

FACTOR_NAMES = ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation")
FACTOR_SIZES = (10, 10, 10, 8, 4, 15)


class Shapes3D(GroundTruthDataset):
    """Shapes3D from ``3dshapes.h5`` (see module doc).

    Args:
        path: the ``3dshapes.h5`` file.
        resolution: output height and width; images are resized from 64 when it differs.
        in_memory: load every image into RAM once instead of reading batches from the file.
        strict: require the published factor sizes and file size (267,573,662 bytes).
        sha256: if given, the file's expected sha256 (hex), checked on open (reads the whole file).
    """

    factor_names = FACTOR_NAMES

    def __init__(
        self,
        path: str | Path,
        resolution: int = 64,
        *,
        in_memory: bool = False,
        strict: bool = False,
        sha256: str | None = None,
    ):
        self.path = existing_path(path, "shapes3d")
        self.resolution = check_resolution(resolution)
        if strict or sha256:
            size = PUBLISHED_SIZES["3dshapes.h5"] if strict else None
            verify_file(self.path, size=size, sha256=sha256, published=False)
        self._file = None
        images, labels = self._open()
        check_array(self.path, "images", images, ndim=4, tail=(64, 64, 3), kind="u8")
        check_array(self.path, "labels", labels, ndim=2, tail=(6,), kind="f")
        if len(labels) != len(images):
            raise file_error(self.path, f"{len(images)} images but {len(labels)} labels")
        try:
            values = labels[()]
        except OSError as err:
            raise file_error(self.path, f"cannot read 'labels' (truncated or corrupt file: {err})") from None
        _, self.factor_sizes = grid_codes(self.path, values, FACTOR_NAMES)
        if strict and self.factor_sizes != FACTOR_SIZES:
            raise file_error(self.path, f"factor sizes {self.factor_sizes}, published {FACTOR_SIZES}")
        self._images = self._read_all(images) if in_memory else None

    def _open(self):
        if self._file is None:
            try:
                self._file = h5py.File(self.path, "r")
            except OSError as err:
                raise file_error(self.path, f"not a readable HDF5 file ({err})") from None
            check_keys(self.path, self._file.keys(), ("images", "labels"))
        return self._file["images"], self._file["labels"]

    def _read_all(self, images) -> np.ndarray:
        out = np.empty(images.shape, np.uint8)
        step = 10_000
        for start in tqdm(range(0, len(out), step), desc=f"loading {self.path.name}", unit_scale=step):
            out[start : start + step] = self._read(images, slice(start, start + step))
        return out

    def _read(self, images, selection) -> np.ndarray:
        try:
            return images[selection]
        except OSError as err:
            raise file_error(self.path, f"cannot read 'images' (truncated or corrupt file: {err})") from None

    def images_for(self, codes: np.ndarray) -> np.ndarray:
        index = self.index_of(codes)
        if self._images is not None:
            images = self._images[index]
        elif len(index):
            unique, inverse = np.unique(index, return_inverse=True)  # h5py wants increasing indices
            images = self._read(self._open()[0], unique)[inverse.reshape(-1)]
        else:
            images = np.empty((0, 64, 64, 3), np.uint8)
        return resize_images(images, self.resolution)

    def __getstate__(self):  # an open HDF5 handle does not pickle (DataLoader workers reopen)
        return {**self.__dict__, "_file": None}
