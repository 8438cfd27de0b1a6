"""Tiny labelled-arrays files (.npz, .h5) for the reader tests and the contract suite."""

import h5py
import numpy as np

SIZES = (2, 3, 4)
NAMES = ("colour", "shape", "size")


def arrays(order=None, channels=3):
    n = int(np.prod(SIZES))
    order = np.arange(n) if order is None else order
    factors = np.stack(np.unravel_index(order, SIZES), -1).astype(np.int32)
    images = np.zeros((n, 8, 8, channels), np.uint8)
    images[..., 0] = order[:, None, None]  # each row's pixels say its grid index
    return {
        "images": images,
        "factors": factors,
        "factor_names": np.array(NAMES),
        "factor_sizes": np.array(SIZES),
    }


def write_npz(path, **override):
    np.savez(path, **{**arrays(), **override})
    return path


def write_h5(path, **override):
    with h5py.File(path, "w") as f:
        for key, value in {**arrays(), **override}.items():
            f.create_dataset(key, data=value.astype("S") if key == "factor_names" else value)
    return path
