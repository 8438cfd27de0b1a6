"""MPI3D (Gondal et al., 2019): toy, realistic and real, from ``mpi3d_{toy,realistic,real}.npz``.

File: an npz with ``images`` (1036800, 64, 64, 3) uint8 (12.7 GB), rows in row-major order over
(object_color 6, object_shape 6, object_size 2, camera_height 3, background_color 3,
horizontal_axis 40, vertical_axis 40); there are no labels, the index is the ground truth.
(Older code wrongly uses 4, 4 for the first two factors.)

Nothing is loaded into RAM by default. An npz member stored uncompressed is memory-mapped in
place: the member's data starts at its local zip header + name + extra field, followed by the
``.npy`` header, and ``np.memmap`` maps the rest. A compressed member is converted once, with a
progress bar, to an uncompressed ``<file>.images.npy`` next to it (or at ``cache``), which is
memory-mapped from then on. ``in_memory=True`` copies the images into RAM instead.
"""

from __future__ import annotations

import os
import struct
import zipfile
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from diffdrl.data.ground_truth import GroundTruthDataset
from diffdrl.data.image_dataset import check_resolution, resize_images
from diffdrl.data.validation import check_array, check_count, check_keys, existing_path, file_error

FACTOR_NAMES = (
    "object_color",
    "object_shape",
    "object_size",
    "camera_height",
    "background_color",
    "horizontal_axis",
    "vertical_axis",
)
FACTOR_SIZES = (6, 6, 2, 3, 3, 40, 40)
VARIANTS = ("toy", "realistic", "real")
_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")  # zip local file header, 30 bytes


def _npy_header(f) -> tuple[tuple[int, ...], np.dtype, bool]:
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(f)
    return np.lib.format.read_array_header_2_0(f)


def map_npz_member(path: Path, key: str, cache: Path | None = None) -> np.ndarray:
    """A read-only memmap of array ``key`` of an npz (converting a compressed member once)."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = {name.removesuffix(".npy"): name for name in zf.namelist()}
            check_keys(path, names, (key,))
            info = zf.getinfo(names[key])
            if info.compress_type != zipfile.ZIP_STORED:
                return _convert(path, zf, info, cache or path.with_name(f"{path.name}.{key}.npy"))
        with path.open("rb") as f:
            f.seek(info.header_offset)
            fields = _LOCAL_HEADER.unpack(f.read(_LOCAL_HEADER.size))
            if fields[0] != b"PK\003\004":
                raise file_error(path, f"corrupt zip: bad local header for {info.filename!r}")
            f.seek(fields[-2] + fields[-1], os.SEEK_CUR)  # file name and extra field lengths
            shape, fortran, dtype = _npy_header_at(path, f)
            offset = f.tell()
        need = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if path.stat().st_size < need:
            raise file_error(
                path, f"truncated: {key!r} needs {need} bytes, the file has {path.stat().st_size}"
            )
        return np.memmap(path, dtype, mode="r", offset=offset, shape=shape, order="F" if fortran else "C")
    except (zipfile.BadZipFile, EOFError, struct.error) as err:
        raise file_error(path, f"not a readable npz file (truncated or corrupt: {err})") from None


def _npy_header_at(path: Path, f) -> tuple[tuple[int, ...], bool, np.dtype]:
    try:
        shape, fortran, dtype = _npy_header(f)
    except ValueError as err:
        raise file_error(path, f"corrupt .npy header inside the npz ({err})") from None
    if dtype.hasobject:
        raise file_error(path, "the images array holds Python objects; refusing to unpickle")
    return shape, fortran, dtype


def _convert(path: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo, out: Path) -> np.ndarray:
    """Stream a compressed npz member into an uncompressed .npy (once) and memory-map that."""
    if out.exists():
        return np.load(out, mmap_mode="r")
    with zf.open(info) as member:
        shape, fortran, dtype = _npy_header_at(path, member)
        if fortran:
            raise file_error(path, "Fortran-ordered images are not supported")
        tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
        target = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
        rows = max(1, (64 << 20) // max(1, target[:1].nbytes))
        for start in tqdm(range(0, shape[0], rows), desc=f"converting {path.name} to {out.name}"):
            block = target[start : start + rows]
            data = member.read(block.nbytes)
            if len(data) != block.nbytes:
                tmp.unlink()
                raise file_error(path, "truncated: the compressed images end early")
            block[...] = np.frombuffer(data, dtype).reshape(block.shape)
        target.flush()
        del target
    os.replace(tmp, out)
    return np.load(out, mmap_mode="r")


class MPI3D(GroundTruthDataset):
    """One MPI3D variant from its npz (see module doc).

    Args:
        path: the ``mpi3d_<variant>.npz`` file.
        variant: "toy", "realistic" or "real" (recorded; the layout is the same).
        resolution: output height and width; images are resized from 64 when it differs.
        in_memory: copy all images into RAM (12.7 GB for the full file) instead of memory-mapping.
        factor_sizes: the grid the file holds; the published sizes by default (a subset file,
            e.g. a test fixture, states its own; the image count must match it).
        cache: where a compressed file's one-time uncompressed copy goes (default: next to it).
    """

    factor_names = FACTOR_NAMES

    def __init__(
        self,
        path: str | Path,
        variant: str = "toy",
        resolution: int = 64,
        *,
        in_memory: bool = False,
        factor_sizes: tuple[int, ...] = FACTOR_SIZES,
        cache: str | Path | None = None,
    ):
        if variant not in VARIANTS:
            raise ValueError(f"MPI3D variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
        self.variant = variant
        self.path = existing_path(path, f"mpi3d-{variant}")
        self.resolution = check_resolution(resolution)
        self.factor_sizes = tuple(int(s) for s in factor_sizes)
        if len(self.factor_sizes) != len(FACTOR_NAMES):
            raise ValueError(f"factor_sizes needs {len(FACTOR_NAMES)} sizes, got {factor_sizes!r}")
        self._cache = Path(cache) if cache else None
        images = map_npz_member(self.path, "images", self._cache)
        check_array(self.path, "images", images, ndim=4, tail=(None, None, 3), kind="u8")
        check_count(self.path, len(images), self.factor_sizes)
        self._images = np.array(images) if in_memory else images

    def images_for(self, codes: np.ndarray) -> np.ndarray:
        return resize_images(np.asarray(self._images[self.index_of(codes)]), self.resolution)

    def __getstate__(self):  # pickle the mapping, not 12.7 GB of pixels (DataLoader workers remap)
        mapped = isinstance(self._images, np.memmap)
        return {**self.__dict__, "_images": None if mapped else self._images}

    def __setstate__(self, state):
        self.__dict__.update(state)
        if self._images is None:
            self._images = map_npz_member(self.path, "images", self._cache)
