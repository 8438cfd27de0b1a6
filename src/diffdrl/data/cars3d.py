"""Cars3D (Reed et al., 2015) read from the ``nips2015-analogy-data`` folder ``data/cars/``.

Folder: ``car_*_mesh.mat`` files, each with ``im`` (128, 128, 3, 24, 4) uint8 = (H, W, C,
azimuth, elevation), and ``list.txt`` naming the objects, one per line, which fixes the object
order (directory order is not stable across machines). Factors, row-major, object fastest:
elevation 4, azimuth 24, object_type 183 (17,568 images), as in disentanglement_lib. All images
are loaded once and resized to the resolution (216 MB at 64 x 64).

A folder with fewer objects or smaller ``im`` arrays of the same layout reads too (tests build
one); ``strict=True`` demands the published 183 objects of (128, 128, 3, 24, 4).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io
from scipy.io.matlab import MatReadError
from tqdm.auto import tqdm

from diffdrl.data.ground_truth import GroundTruthDataset
from diffdrl.data.image_dataset import check_resolution, resize_images
from diffdrl.data.validation import check_array, existing_path, file_error

FACTOR_NAMES = ("elevation", "azimuth", "object_type")
FACTOR_SIZES = (4, 24, 183)
MAT_SHAPE = (128, 128, 3, 24, 4)


def object_files(folder: Path) -> list[Path]:
    """The .mat files in ``list.txt`` order (names with or without the .mat suffix)."""
    listing = folder / "list.txt"
    if not listing.is_file():
        raise FileNotFoundError(f"{listing}: no such file (Cars3D needs list.txt for the object order)")
    names = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
    if not names:
        raise file_error(listing, "lists no objects")
    files = [folder / (name if name.endswith(".mat") else f"{name}.mat") for name in names]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(
            f"{listing}: {len(missing)} listed file(s) missing, e.g. {folder / missing[0]}"
        )
    return files


def read_mesh(path: Path) -> np.ndarray:
    """``im`` of one car file, (H, W, 3, azimuth, elevation) uint8; one-line errors for bad files."""
    try:
        mat = scipy.io.loadmat(path, variable_names=["im"])
    except (ValueError, OSError, TypeError, EOFError, IndexError, NotImplementedError, MatReadError) as err:
        raise file_error(path, f"not a readable .mat file (truncated or corrupt: {err})") from None
    if "im" not in mat:
        raise file_error(path, "missing key 'im'")
    check_array(path, "im", mat["im"], ndim=5, tail=(None, None, 3, None, None), kind="u8")
    return mat["im"]


class Cars3D(GroundTruthDataset):
    """Cars3D from the folder of ``.mat`` files (see module doc).

    Args:
        path: the folder holding ``list.txt`` and the ``car_*_mesh.mat`` files.
        resolution: output height and width (64 in the literature).
        strict: require the published 183 objects and (128, 128, 3, 24, 4) per file.
    """

    factor_names = FACTOR_NAMES

    def __init__(self, path: str | Path, resolution: int = 64, *, strict: bool = False):
        self.path = existing_path(path, "cars3d", kind="folder")
        self.resolution = check_resolution(resolution)
        files = object_files(self.path)
        first = None
        images = None
        for k, file in enumerate(tqdm(files, desc=f"loading {self.path.name}", disable=len(files) < 20)):
            mesh = read_mesh(file)
            if first is None:
                first = mesh.shape
                if strict and (first != MAT_SHAPE or len(files) != FACTOR_SIZES[2]):
                    raise file_error(
                        self.path,
                        f"{len(files)} objects of {first}, published {FACTOR_SIZES[2]} of {MAT_SHAPE}",
                    )
                self.factor_sizes = (first[4], first[3], len(files))
                images = np.empty((*self.factor_sizes, self.resolution, self.resolution, 3), np.uint8)
            elif mesh.shape != first:
                raise file_error(file, f"'im' has shape {mesh.shape}, other files have {first}")
            views = np.einsum("hwcae->eahwc", mesh).reshape(-1, *first[:3])  # (elevation x azimuth, H, W, 3)
            images[:, :, k] = resize_images(views, self.resolution).reshape(
                first[4], first[3], *images.shape[3:]
            )
        self._images = images.reshape(-1, *images.shape[3:])

    def images_for(self, codes: np.ndarray) -> np.ndarray:
        return self._images[self.index_of(codes)]
