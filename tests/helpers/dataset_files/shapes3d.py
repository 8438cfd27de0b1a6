"""Tiny shapes3d files for the reader tests (tests/data/test_shapes3d.py) and the contract suite."""

import h5py
import numpy as np

SIZES = (2, 2, 3, 2, 2, 3)  # a smaller full grid in the real layout


def label_values(sizes=SIZES) -> np.ndarray:
    """Float factor values like the real file's (hues 0.0.., scales 0.75..1.25, angles -30..30)."""
    columns = [
        np.arange(sizes[0]) / 10,
        np.arange(sizes[1]) / 10,
        np.arange(sizes[2]) / 10,
        np.linspace(0.75, 1.25, sizes[3]),
        np.arange(sizes[4], dtype=np.float64),
        np.linspace(-30.0, 30.0, sizes[5]),
    ]
    grid = np.stack(np.unravel_index(np.arange(np.prod(sizes)), sizes), -1)
    return np.stack([columns[k][grid[:, k]] for k in range(6)], -1)


def images_of(n: int, size: int = 64) -> np.ndarray:
    """Images whose pixels encode their row: channel 0 = row % 256, channel 1 = row // 256."""
    images = np.zeros((n, size, size, 3), np.uint8)
    images[..., 0] = (np.arange(n) % 256)[:, None, None]
    images[..., 1] = (np.arange(n) // 256)[:, None, None]
    return images


def write(path, images=None, labels=None, **extra):
    labels = label_values() if labels is None else labels
    images = images_of(len(labels)) if images is None else images
    with h5py.File(path, "w") as f:
        for key, value in {"images": images, "labels": labels, **extra}.items():
            if value is not None:
                f.create_dataset(key, data=value)
    return path
