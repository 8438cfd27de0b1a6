"""Tiny celeba files for the reader tests (tests/data/test_celeba.py) and the contract suite."""

import numpy as np
from PIL import Image

NAMES = [f"Attr_{k}" for k in range(40)]


def write(folder, count=5, attr_lines=None, partition=True, size=(178, 218)):
    """A tiny CelebA: images with a bright centre, so the two crops differ measurably."""
    (folder / "img_align_celeba").mkdir(parents=True)
    files = [f"{i + 1:06d}.jpg" for i in range(count)]
    rng = np.random.default_rng(0)
    values = np.where(rng.random((count, 40)) < 0.5, -1, 1)
    for i, name in enumerate(files):
        pixels = np.full((size[1], size[0], 3), 20 * i, np.uint8)
        pixels[size[1] // 2 - 30 : size[1] // 2 + 30, size[0] // 2 - 30 : size[0] // 2 + 30] = 250
        Image.fromarray(pixels).save(folder / "img_align_celeba" / name, quality=95)
    lines = attr_lines or [str(count), " ".join(NAMES)] + [
        f"{name} " + " ".join(f"{v:2d}" for v in row) for name, row in zip(files, values, strict=True)
    ]
    (folder / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    if partition:
        splits = [0, 0, 0, 1, 2][:count] + [0] * max(0, count - 5)
        (folder / "list_eval_partition.txt").write_text(
            "".join(f"{f} {s}\n" for f, s in zip(files, splits, strict=True))
        )
    return folder, (values > 0).astype(np.uint8)
