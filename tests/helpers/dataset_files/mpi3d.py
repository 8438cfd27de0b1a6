"""Tiny mpi3d files for the reader tests (tests/data/test_mpi3d.py) and the contract suite."""

import numpy as np

SIZES = (1, 2, 1, 1, 2, 3, 4)  # a small grid in the real factor order


def images_of(n, size=8):
    images = np.zeros((n, size, size, 3), np.uint8)
    images[..., 0] = np.arange(n)[:, None, None]
    images[..., 2] = 200
    return images


def write(path, compressed=False, **arrays):
    arrays = {"images": images_of(int(np.prod(SIZES))), **arrays}
    (np.savez_compressed if compressed else np.savez)(path, **arrays)
    return path
