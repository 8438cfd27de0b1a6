"""Factor sweep previews: one row per factor, to eyeball that every factor value is visible."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from diffdrl.data.ground_truth import GroundTruthDataset

GAP = 2  # pixels between cells
BLANK = 255  # value of gaps and padding cells


def factor_preview_grid(
    dataset: GroundTruthDataset, rng: np.random.Generator, columns: int = 10
) -> np.ndarray:
    """Image grid uint8 (F*H + gaps, columns*W + gaps, C) sweeping each factor in its own row.

    Each row starts from a fresh random code and sets one factor to each of its values (evenly
    subsampled to ``columns`` when it has more), so only that factor changes along the row.
    """
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
    height, width, channels = rows[0].shape[1:]
    grid = np.full(
        (len(rows) * (height + GAP) - GAP, columns * (width + GAP) - GAP, channels), BLANK, dtype=np.uint8
    )
    for r, images in enumerate(rows):
        for c, image in enumerate(images):
            top, left = r * (height + GAP), c * (width + GAP)
            grid[top : top + height, left : left + width] = image
    return grid


def save_preview(
    dataset: GroundTruthDataset, path: str | Path, rng: np.random.Generator, columns: int = 10
) -> None:
    """Write ``factor_preview_grid`` as a PNG with the factor names as row labels."""
    grid = factor_preview_grid(dataset, rng, columns)
    height = (grid.shape[0] + GAP) // dataset.num_factors
    zoom, dpi = 2, 100  # whole output pixels per grid pixel, so cells are not resampled unevenly
    figure = Figure(figsize=(zoom * grid.shape[1] / dpi, zoom * grid.shape[0] / dpi), dpi=dpi)
    FigureCanvasAgg(figure)  # a bare Agg figure: no pyplot state to leak or close
    axes = figure.add_axes((0, 0, 1, 1))
    axes.imshow(
        grid[..., 0] if grid.shape[-1] == 1 else grid, cmap="gray", vmin=0, vmax=255, interpolation="nearest"
    )
    axes.set_xticks([])
    axes.set_yticks(
        [r * height + (height - GAP) / 2 for r in range(dataset.num_factors)], dataset.factor_names
    )
    axes.tick_params(length=0)
    for spine in axes.spines.values():
        spine.set_visible(False)
    figure.savefig(path, bbox_inches="tight", dpi=dpi)
