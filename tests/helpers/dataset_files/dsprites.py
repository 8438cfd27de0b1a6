"""Tiny dsprites files for the reader tests (tests/data/test_dsprites.py) and the contract suite."""

import numpy as np

SIZES = (1, 3, 2, 4, 2, 3)  # color, shape, scale, orientation, posX, posY: a small full grid


def explode():
    raise RuntimeError("metadata was unpickled")


class Bomb:
    """Pickles fine; unpickling it raises, so a reader that unpickles 'metadata' fails the test."""

    def __reduce__(self):
        return explode, ()


def write(path, sizes=SIZES, size=16, drop=(), **override):
    n = int(np.prod(sizes))
    classes = np.stack(np.unravel_index(np.arange(n), sizes), -1).astype(np.int64)
    images = np.zeros((n, size, size), np.uint8)
    for i in range(n):  # a bit pattern of the row, so a wrong row shows
        images[i, 0, :12] = (i >> np.arange(12)) & 1
    arrays = {
        "imgs": images,
        "latents_classes": classes,
        "latents_values": classes.astype(np.float64),
        "metadata": np.array([Bomb()], dtype=object),
    }
    arrays.update(override)
    for key in drop:
        arrays.pop(key)
    np.savez_compressed(path, **arrays)
    return path


def rows_of(images):
    return ((images[:, 0, :12, 0] // 255).astype(np.int64) << np.arange(12)).sum(-1)
