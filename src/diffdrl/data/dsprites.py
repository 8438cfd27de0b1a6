"""dSprites (Matthey et al., 2017) read from ``dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz``.

File: ``imgs`` (737280, 64, 64) uint8 0/1, ``latents_classes`` (737280, 6) integer codes over
(color 1, shape 3, scale 6, orientation 40, posX 32, posY 32), posY fastest, and a pickled
``metadata`` dict that is never unpickled (``np.load(allow_pickle=False)``; the sizes are known).
The constant colour factor is dropped, so the dataset has the 5 factors evaluated in the
literature; the index maths is unchanged since that factor has size 1.

Images are 0/1 in the file and 0/255 here, repeated to 3 channels by default (the library's
models expect RGB; ``channels=1`` keeps one). The compressed npz is decompressed into memory
once (3.0 GB at 64 x 64 for the full file).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from diffdrl.data.ground_truth import GroundTruthDataset
from diffdrl.data.image_dataset import check_resolution, resize_images
from diffdrl.data.validation import check_array, check_keys, existing_path, file_error, grid_codes

FACTOR_NAMES = ("shape", "scale", "orientation", "position_x", "position_y")
FACTOR_SIZES = (3, 6, 40, 32, 32)


def read_npz(path: Path, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The named arrays of an npz without unpickling anything; one-line errors for bad files."""
    if not zipfile.is_zipfile(path):
        raise file_error(path, "not a readable npz file (not a zip archive: truncated or corrupt?)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            check_keys(path, npz.files, keys)
            return {key: npz[key] for key in keys}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as err:
        if str(err).startswith(str(path)):
            raise
        if "allow_pickle" in str(err) or "Object arrays" in str(err):
            raise file_error(
                path, f"an array among {keys} holds Python objects; refusing to unpickle"
            ) from None
        raise file_error(path, f"not a readable npz file (truncated or corrupt: {err})") from None


class DSprites(GroundTruthDataset):
    """dSprites from its npz (see module doc).

    Args:
        path: the ``.npz`` file.
        resolution: output height and width; images are resized from 64 when it differs.
        channels: 3 (default, grey repeated to RGB) or 1.
        strict: require the published factor sizes (1, 3, 6, 40, 32, 32).
    """

    factor_names = FACTOR_NAMES

    def __init__(self, path: str | Path, resolution: int = 64, *, channels: int = 3, strict: bool = False):
        self.path = existing_path(path, "dsprites")
        self.resolution = check_resolution(resolution)
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels!r}")
        self.channels = channels
        arrays = read_npz(self.path, ("imgs", "latents_classes"))
        images, classes = arrays["imgs"], arrays["latents_classes"]
        check_array(self.path, "imgs", images, ndim=3, kind="u8")
        if images.shape[1] != images.shape[2]:
            raise file_error(self.path, f"'imgs' must be square (n, H, H), got {images.shape}")
        check_array(self.path, "latents_classes", classes, ndim=2, tail=(6,), kind="i")
        if len(classes) != len(images):
            raise file_error(self.path, f"{len(images)} images but {len(classes)} rows of latents_classes")
        if images.size and images.max() > 1:
            raise file_error(self.path, f"'imgs' must be 0/1, found the value {images.max()}")
        if classes.size and classes.min() < 0:
            raise file_error(self.path, "'latents_classes' has negative codes")
        _, sizes = grid_codes(self.path, classes, ("color", *FACTOR_NAMES))
        if sizes[0] != 1:
            raise file_error(self.path, f"the colour factor must be constant, it has {sizes[0]} values")
        if strict and sizes[1:] != FACTOR_SIZES:
            raise file_error(self.path, f"factor sizes {sizes[1:]}, published {FACTOR_SIZES}")
        self.factor_sizes = sizes[1:]
        self._images = images  # (n, H, W) 0/1

    def images_for(self, codes: np.ndarray) -> np.ndarray:
        images = self._images[self.index_of(codes)][..., None] * np.uint8(255)
        images = resize_images(images, self.resolution)
        return np.repeat(images, self.channels, axis=-1) if self.channels == 3 else images
