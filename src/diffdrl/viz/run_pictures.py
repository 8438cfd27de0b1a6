"""The grids of a run as one call each: what ``diffdrl swap | traverse | interpolate | attention``
draw. Each takes the run, draws its images from the run's dataset (or takes given ones), writes
the PNG (default ``RUN/samples/<name>.png``) and returns its path.

Sampling options (``steps``, ``start``, ``timesteps``) are a diffusion model's; left unset they
take the pictures' defaults (``viz.render``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from diffdrl.models.representation import encode_images
from diffdrl.training.runs import Run
from diffdrl.viz.attention import attention_maps, save_attention
from diffdrl.viz.grid import save_grid
from diffdrl.viz.interchange import interchange, save_interchange, unit_names
from diffdrl.viz.traversal import interpolate, traversal_title, traverse, unit_ranges
from diffdrl.viz.unit_factor import unit_factor_importance


def picture_path(run: Run, out: str | Path | None, default: str) -> Path:
    return Path(out) if out else Path(run.path) / "samples" / default


def unit_labels(run: Run, seed: int = 0) -> list[str]:
    """'unit i: factor' labels (one per unit, EncDiff-V: per token) from a quick DCI fit when the
    dataset has factors; plain 'unit i' otherwise."""
    if not getattr(run.data, "factor_sizes", None):
        return unit_names(run.config.model.units)
    return unit_names(run.config.model.units, unit_factor_importance(run, seed=seed), run.data.factor_names)


def save_swaps(
    run: Run,
    out: str | Path | None = None,
    *,
    pairs: int = 6,
    source: np.ndarray | None = None,
    target: np.ndarray | None = None,
    steps: int | None = None,
    seed: int = 0,
    start: str | None = None,
) -> Path:
    """The latent interchange grid of ``pairs`` dataset pairs, or of the given uint8 ``source`` and
    ``target`` images (as many of each)."""
    if (source is None) != (target is None):
        raise ValueError("--source and --target go together")
    if source is None:
        _, images = run.sample(2 * pairs, seed)
        source, target = images[:pairs], images[pairs:]
    elif len(source) != len(target):
        raise ValueError(f"--source has {len(source)} images and --target {len(target)}: give as many")
    result = interchange(run.model, source, target, steps=steps, seed=seed, start=start)
    return save_interchange(result, picture_path(run, out, "interchange.png"), unit_labels(run, seed))


def save_traversal(
    run: Run,
    out: str | Path | None = None,
    *,
    values: int = 8,
    reference: int = 1000,
    steps: int | None = None,
    seed: int = 0,
    start: str | None = None,
) -> Path:
    """Every unit of one dataset image traversed over ``values`` points of its range observed on
    ``reference`` other images."""
    _, pictures = run.sample(reference, seed + 1)
    ranges = unit_ranges(
        torch.from_numpy(encode_images(run.model, pictures)), values, num_units=run.config.model.units
    )
    _, image = run.sample(1, seed)
    rows = traverse(run.model, image[0], ranges, steps=steps, seed=seed, start=start)
    path = picture_path(run, out, "traversal.png")
    return save_grid(list(rows), path, row_labels=unit_labels(run, seed), title=traversal_title(ranges))


def save_interpolation(
    run: Run, out: str | Path | None = None, *, pairs: int = 4, values: int = 8, steps=None, seed: int = 0
) -> Path:
    """All units moved linearly between the images of ``pairs`` dataset pairs, ``values`` points."""
    _, images = run.sample(2 * pairs, seed)
    rows = interpolate(run.model, images[:pairs], images[pairs:], values, steps, seed)
    path = picture_path(run, out, "interpolation.png")
    return save_grid(list(rows), path, title="interpolation of all units between two images")


def save_attention_maps(
    run: Run, out: str | Path | None = None, *, num: int = 4, timesteps=None, seed: int = 0
) -> Path:
    """Each token's cross-attention map over ``num`` dataset images."""
    _, images = run.sample(num, seed)
    maps = attention_maps(run.model, images, timesteps, seed)
    return save_attention(images, maps, picture_path(run, out, "attention.png"), unit_labels(run, seed))
