"""Factor sweep previews: one row per factor, to eyeball that every factor value is visible."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from diffdrl.data.ground_truth import GroundTruthDataset
from diffdrl.viz.grid import image_grid, save_grid


def factor_sweeps(
    dataset: GroundTruthDataset, rng: np.random.Generator, columns: int = 10
) -> list[np.ndarray]:
    """One row of images per factor: a random base code with that factor swept over its values
    (evenly subsampled to ``columns`` when it has more), so only that factor changes along the row."""
    if isinstance(columns, bool) or not isinstance(columns, (int, np.integer)) or columns < 1:
        raise ValueError(f"columns must be a positive int, got {columns!r}")
    rows = []
    for factor, size in enumerate(dataset.factor_sizes):
        values = (
            np.arange(size)
            if size <= columns
            else np.round(np.linspace(0, size - 1, columns)).astype(np.int64)
        )
        codes = np.repeat(dataset.sample_factors(1, rng), len(values), axis=0)
        codes[:, factor] = values
        rows.append(dataset.images_for(codes))
    return rows


def factor_preview_grid(
    dataset: GroundTruthDataset, rng: np.random.Generator, columns: int = 10
) -> np.ndarray:
    """The sweeps of ``factor_sweeps`` as one uint8 picture, rows padded to ``columns`` cells."""
    return image_grid(factor_sweeps(dataset, rng, columns), columns)


def save_preview(
    dataset: GroundTruthDataset, path: str | Path, rng: np.random.Generator, columns: int = 10
) -> None:
    """Write the factor sweeps as a PNG with the factor names as row labels."""
    save_grid(factor_sweeps(dataset, rng, columns), path, row_labels=dataset.factor_names)
