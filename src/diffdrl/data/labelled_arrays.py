"""A user's own ground-truth data: one npz or HDF5 file of images and integer factor codes.

File keys:
    images        uint8 (n, H, W, C), C = 1 or 3 (1 is repeated to RGB)
    factors       integer (n, F), factor codes, each in [0, size)
    factor_names  strings (F,)  (unicode array in npz, str/bytes dataset in HDF5; never pickled)
    factor_sizes  integer (F,)
The rows must hold every state of the factor grid exactly once (n = prod(factor_sizes)), in
any order: the reader builds the index map from grid index to row, so a file in row-major
order and a shuffled one read the same. Partial grids are rejected, since metrics draw any
state. Everything is loaded into memory.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from diffdrl.data.dsprites import read_npz
from diffdrl.data.ground_truth import GroundTruthDataset
from diffdrl.data.image_dataset import check_resolution, resize_images
from diffdrl.data.validation import check_array, check_count, check_keys, existing_path, file_error

KEYS = ("images", "factors", "factor_names", "factor_sizes")


def _read_h5(path: Path) -> dict[str, np.ndarray]:
    try:
        with h5py.File(path, "r") as f:
            check_keys(path, f.keys(), KEYS)
            arrays = {key: f[key][()] for key in KEYS}
    except OSError as err:
        raise file_error(path, f"not a readable HDF5 file (truncated or corrupt: {err})") from None
    names = arrays["factor_names"]
    arrays["factor_names"] = np.array([n.decode() if isinstance(n, bytes) else str(n) for n in names])
    return arrays


class LabelledArrays(GroundTruthDataset):
    """Ground-truth data from a user's npz/HDF5 file (see module doc for the keys).

    Args:
        path: a ``.npz``, ``.h5`` or ``.hdf5`` file.
        resolution: output height and width; images are resized when they differ.
    """

    def __init__(self, path: str | Path, resolution: int = 64):
        self.path = existing_path(path, "labelled-arrays")
        self.resolution = check_resolution(resolution)
        suffix = self.path.suffix.lower()
        if suffix == ".npz":
            arrays = read_npz(self.path, KEYS)
        elif suffix in (".h5", ".hdf5"):
            arrays = _read_h5(self.path)
        else:
            raise file_error(self.path, f"expected a .npz, .h5 or .hdf5 file, got {suffix or 'no suffix'!r}")
        images, factors = arrays["images"], arrays["factors"]
        names, sizes = arrays["factor_names"], arrays["factor_sizes"]
        check_array(self.path, "images", images, ndim=4, kind="u8")
        if images.shape[-1] not in (1, 3):
            raise file_error(self.path, f"'images' must have 1 or 3 channels, got shape {images.shape}")
        check_array(self.path, "factors", factors, ndim=2, kind="i")
        check_array(self.path, "factor_sizes", sizes, ndim=1, kind="i")
        if names.ndim != 1 or names.dtype.kind not in "US":
            raise file_error(
                self.path, f"'factor_names' must be strings (F,), got {names.dtype} {names.shape}"
            )
        num = factors.shape[1]
        if len(names) != num or len(sizes) != num:
            raise file_error(
                self.path, f"'factors' has {num} columns but {len(names)} names and {len(sizes)} sizes"
            )
        if (sizes < 1).any():
            raise file_error(self.path, f"'factor_sizes' must be positive, got {sizes.tolist()}")
        if len(factors) != len(images):
            raise file_error(self.path, f"{len(images)} images but {len(factors)} rows of factors")
        self.factor_names = tuple(str(n) for n in names)
        self.factor_sizes = tuple(int(s) for s in sizes)
        check_count(self.path, len(images), self.factor_sizes)
        if factors.size and ((factors < 0).any() or (factors >= sizes).any()):
            row = int(np.flatnonzero(((factors < 0) | (factors >= sizes)).any(axis=1))[0])
            raise file_error(
                self.path, f"factors of row {row} {factors[row].tolist()} out of range {self.factor_sizes}"
            )
        index = self.index_of(factors.astype(np.int64))
        row_of = np.full(len(index), -1, np.int64)
        row_of[index] = np.arange(len(index))
        if (row_of < 0).any():
            state = self.codes_of(np.flatnonzero(row_of < 0)[:1])[0].tolist()
            raise file_error(
                self.path, f"the grid is incomplete or has duplicates: state {state} has no image"
            )
        self._row_of = row_of  # grid index -> row of the file
        images = images if images.shape[-1] == 3 else np.repeat(images, 3, axis=-1)
        self._images = resize_images(images, self.resolution)

    def images_for(self, codes: np.ndarray) -> np.ndarray:
        return self._images[self._row_of[self.index_of(codes)]]
