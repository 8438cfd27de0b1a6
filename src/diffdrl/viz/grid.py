"""Labelled image grids: the one place rows of images become a picture on disk."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

GAP = 2  # pixels between cells
BLANK = 255  # value of gaps and padding cells


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """float (B, C, H, W) in [-1, 1] -> uint8 (B, H, W, C), the library's image exchange format."""
    x = images.detach().float().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


def image_grid(rows: Sequence[np.ndarray], columns: int | None = None) -> np.ndarray:
    """Rows of uint8 images (n_r, H, W, C) -> one uint8 picture, short rows padded with blanks."""
    columns = columns or max(len(r) for r in rows)
    height, width, channels = rows[0].shape[1:]
    grid = np.full(
        (len(rows) * (height + GAP) - GAP, columns * (width + GAP) - GAP, channels), BLANK, dtype=np.uint8
    )
    for r, images in enumerate(rows):
        for c, image in enumerate(images[:columns]):
            top, left = r * (height + GAP), c * (width + GAP)
            grid[top : top + height, left : left + width] = image
    return grid


def save_grid(
    rows: Sequence[np.ndarray],
    path: str | Path,
    row_labels: Sequence[str] = (),
    column_labels: Sequence[str] = (),
    title: str | None = None,
    zoom: int = 2,
) -> Path:
    """Write ``image_grid(rows)`` as a PNG with optional row/column labels; returns the path."""
    grid = image_grid(rows)
    height, width = rows[0].shape[1:3]
    dpi = 100  # whole output pixels per grid pixel (zoom), so cells are not resampled unevenly
    figure = Figure(figsize=(zoom * grid.shape[1] / dpi, zoom * grid.shape[0] / dpi), dpi=dpi)
    FigureCanvasAgg(figure)  # a bare Agg figure: no pyplot state to leak or close
    axes = figure.add_axes((0, 0, 1, 1))
    axes.imshow(
        grid[..., 0] if grid.shape[-1] == 1 else grid, cmap="gray", vmin=0, vmax=255, interpolation="nearest"
    )
    axes.set_yticks([r * (height + GAP) + height / 2 for r in range(len(row_labels))], list(row_labels))
    axes.set_xticks([c * (width + GAP) + width / 2 for c in range(len(column_labels))], list(column_labels))
    axes.xaxis.tick_top()
    axes.tick_params(length=0)
    for spine in axes.spines.values():
        spine.set_visible(False)
    if title:
        axes.set_title(title, pad=14 if column_labels else 4)
    return save_figure(figure, path)


def panels(count: int, columns: int, width: float, height: float) -> tuple[Figure, np.ndarray]:
    """A bare Agg figure with ``count`` axes in rows of ``columns`` (spare axes hidden), flattened."""
    columns = min(columns, count)
    rows = -(-count // columns)
    figure = Figure(figsize=(width * columns, height * rows), dpi=100)
    FigureCanvasAgg(figure)
    axes = np.atleast_1d(figure.subplots(rows, columns)).ravel()
    for ax in axes[count:]:
        ax.set_axis_off()
    return figure, axes[:count]


def save_figure(figure: Figure, path: str | Path, tight: bool = True) -> Path:
    """Write a figure as PNG, creating the folder; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, bbox_inches="tight" if tight else None)
    return path
