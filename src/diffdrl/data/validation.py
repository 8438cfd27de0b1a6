"""One-line errors for dataset files: each names the file and the problem (no tracebacks for users).

Readers call these at the boundary, where a user's path enters the library; the CLI turns the
``ValueError`` / ``FileNotFoundError`` they raise into one line on stderr and exit code 2.
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import numpy as np

# Published byte sizes of the benchmark files, where known (../shared/reference/DATASETS.md).
# No sha256 is listed: we do not know the published hashes, so a user passes one if they have it.
PUBLISHED_SIZES = {"3dshapes.h5": 267_573_662}


def file_error(path: str | Path, problem: str) -> ValueError:
    """A ValueError whose one-line message is ``<path>: <problem>``."""
    return ValueError(f"{path}: {' '.join(str(problem).split())}")


def existing_path(path: str | Path | None, dataset: str, kind: str = "file") -> Path:
    """``path`` as a Path, checked to exist and to be a ``kind`` ("file" or "folder")."""
    if path is None or str(path) == "":
        raise ValueError(f"dataset {dataset!r} reads from disk: set data.path (--path) to its {kind}")
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such {kind} (dataset {dataset!r})")
    if kind == "file" and not path.is_file():
        raise file_error(path, f"expected a file for dataset {dataset!r}, found a folder")
    if kind == "folder" and not path.is_dir():
        raise file_error(path, f"expected a folder for dataset {dataset!r}, found a file")
    return path


def check_array(
    path: str | Path,
    key: str,
    array,
    *,
    ndim: int,
    tail: tuple[int | None, ...] = (),
    kind: str | None = None,
) -> None:
    """Check an array's rank, trailing dims (None = any) and dtype kind ("u8" = uint8, "i", "f", "if").

    ``array`` may be a numpy array, an h5py dataset or a memmap: only shape and dtype are read.
    """
    shape, dtype = tuple(array.shape), np.dtype(array.dtype)
    lead = ["n", *["*"] * (ndim - 1)][: ndim - len(tail)]
    dims = (*lead, *("*" if t is None else str(t) for t in tail))
    same = len(shape) == ndim and all(t in ("n", "*", str(s)) for s, t in zip(shape, dims, strict=True))
    if not same:
        raise file_error(path, f"'{key}' must have shape ({', '.join(dims)}), got {shape}")
    if kind == "u8" and dtype != np.uint8:
        raise file_error(path, f"'{key}' must be uint8, got {dtype}")
    if kind is not None and kind != "u8" and dtype.kind not in kind.replace("i", "iu"):
        names = {"i": "integer", "f": "float", "if": "numeric"}
        raise file_error(path, f"'{key}' must be {names[kind]}, got {dtype}")


def check_keys(path: str | Path, present, required: tuple[str, ...]) -> None:
    """Every required key is present, else name the missing ones and the keys found."""
    present = list(present)
    missing = [k for k in required if k not in present]
    if missing:
        found = ", ".join(sorted(present)) or "none"
        raise file_error(path, f"missing key(s) {', '.join(map(repr, missing))} (keys found: {found})")


def check_count(path: str | Path, count: int, factor_sizes: tuple[int, ...]) -> None:
    """The number of images equals the number of states of the factor grid."""
    expected = int(np.prod(factor_sizes, dtype=np.int64))
    if count != expected:
        raise file_error(
            path, f"factor sizes {tuple(factor_sizes)} need {expected} images, the file has {count}"
        )


def verify_file(
    path: str | Path,
    *,
    size: int | None = None,
    sha256: str | None = None,
    published: bool = True,
    chunk: int = 1 << 22,
) -> None:
    """Check a downloaded file's byte size and, if given, its sha256 (hex); a mismatch is a ValueError.

    ``size`` defaults (when ``published``) to the published size of files named in
    ``PUBLISHED_SIZES``; with neither a size nor a hash there is nothing to check.
    """
    path = Path(path)
    if size is None and published:
        size = PUBLISHED_SIZES.get(path.name)
    actual = path.stat().st_size
    if size is not None and actual != size:
        raise file_error(
            path, f"size {actual} bytes, the published file has {size} (truncated or different?)"
        )
    if sha256 is not None:
        digest = hashlib.sha256()
        with path.open("rb") as f:
            while block := f.read(chunk):
                digest.update(block)
        if digest.hexdigest() != sha256.strip().lower():
            raise file_error(path, f"sha256 {digest.hexdigest()} does not match the expected {sha256}")


def grid_codes(path: str | Path, values: np.ndarray, names: tuple[str, ...]) -> tuple[np.ndarray, tuple]:
    """Integer codes (n, F) of per-image factor values by their rank, and the sizes (F,) they span.

    Codes are the index of each value among the sorted distinct values of its column, so float
    labels are never cast. Checks that the rows enumerate the full grid in row-major order.
    """
    columns = [np.unique(values[:, k], return_inverse=True) for k in range(values.shape[1])]
    sizes = tuple(len(unique) for unique, _ in columns)
    codes = np.stack([inverse.reshape(-1) for _, inverse in columns], axis=-1).astype(np.int64)
    check_count(path, len(values), sizes)
    expected = np.stack(np.unravel_index(np.arange(len(values)), sizes), axis=-1)
    bad = np.flatnonzero((codes != expected).any(axis=1))
    if len(bad):
        raise file_error(
            path,
            f"labels are not the full factor grid {dict(zip(names, sizes, strict=True))} in row-major order "
            f"(first mismatch at image {bad[0]})",
        )
    return codes, sizes


def check_user_images(path: str | Path, images, resolution: int | None = None, channels: int = 3) -> None:
    """A user's image array: uint8 (n, H, W, C) with n >= 1 and, given ``resolution``, H = W =
    ``resolution`` and C = ``channels`` (what the model takes). Shapes are reported in the user's
    (n, H, W, C) layout, never the model's (B, C, H, W)."""
    shape, dtype = tuple(images.shape), np.dtype(images.dtype)
    if len(shape) != 4 or dtype != np.uint8:
        raise file_error(path, f"images must be a uint8 array of shape (n, H, W, C), got {dtype} {shape}")
    if shape[0] == 0:
        raise file_error(path, f"holds no images (shape {shape}); give at least one")
    if resolution is not None and shape[1:] != (resolution, resolution, channels):
        raise file_error(
            path,
            f"images of shape (n, H, W, C) = {shape}, but the run's model takes (n, {resolution}, "
            f"{resolution}, {channels}): {resolution}x{resolution} pixels, {channels} channels",
        )


def read_images(path: str | Path, resolution: int | None = None) -> np.ndarray:
    """uint8 images (n, H, W, C) from a user's .npy, or .npz with an 'images' array (never
    unpickled), checked to hold at least one image and, given ``resolution``, to be what the
    run's model takes; every error names the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"images file not found: {path}")
    try:
        data = np.load(path, allow_pickle=False)
        if isinstance(data, np.lib.npyio.NpzFile):
            if "images" not in data:
                raise ValueError(f"{path}: no 'images' array (keys: {', '.join(data.files) or 'none'})")
            data = data["images"]
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
        if str(err).startswith(str(path)):
            raise
        raise ValueError(f"{path}: not a readable .npy/.npz array file ({err})") from None
    check_user_images(path, data, resolution)
    return data
