"""Latent interchange: swap one unit of a source image for a target image's, regenerate, look.

If unit i is disentangled, row i changes exactly one attribute of the source into the target's.
Every row of a column starts from the same x_T and samples deterministically (DDIM, eta = 0), so
the swapped unit is the only difference between rows. ``start="inversion"`` takes x_T from DDIM
inversion of the source, so untouched attributes keep the source's details too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from diffdrl.data.ground_truth import to_model_input
from diffdrl.viz.grid import save_grid, to_uint8

STARTS = ("noise", "inversion")


@dataclass
class Interchange:
    source: np.ndarray  # (P, H, W, C) uint8
    target: np.ndarray  # (P, H, W, C)
    reconstruction: np.ndarray  # (P, H, W, C): the source regenerated from its own units
    swapped: np.ndarray  # (N, P, H, W, C): row i has unit i taken from the target


def swap_units(source_units: torch.Tensor, target_units: torch.Tensor) -> torch.Tensor:
    """(P, N) x 2 -> (N, P, N): entry [i, p] is source p with unit i replaced by target p's."""
    n = source_units.shape[1]
    units = source_units.unsqueeze(0).repeat(n, 1, 1)  # (N, P, N)
    i = torch.arange(n)
    units[i, :, i] = target_units.T
    return units


@torch.no_grad()
def interchange(
    model, source: np.ndarray, target: np.ndarray, steps: int = 50, seed: int = 0, start: str = "noise"
) -> Interchange:
    """The full interchange of every unit for each (source, target) pair of uint8 images."""
    if start not in STARTS:
        raise ValueError(f"start must be one of {STARTS}, got {start!r}")
    if source.shape != target.shape:
        raise ValueError(f"source and target images differ in shape: {source.shape} vs {target.shape}")
    s_src, s_tgt = model.encode(source), model.encode(target)  # (P, N) each
    p, n = s_src.shape
    units = torch.cat([swap_units(s_src, s_tgt), s_src[None]])  # (N + 1, P, N); last row: no swap
    tokens = model.tokens(units.flatten(0, 1))  # ((N + 1) P, N, d)
    if start == "inversion":
        x_T = model.invert(to_model_input(source), model.tokens(s_src), steps)
    else:
        gen = torch.Generator(s_src.device).manual_seed(seed)
        x_T = torch.randn(
            (p, model.channels, model.resolution, model.resolution), generator=gen, device=s_src.device
        )
    x_T = x_T.repeat(n + 1, 1, 1, 1)  # the same start in every row of a column
    images = to_uint8(model.generate(tokens, "ddim", steps, eta=0.0, x_T=x_T))
    images = images.reshape(n + 1, p, *images.shape[1:])
    return Interchange(source, target, images[-1], images[:-1])


def unit_names(
    num_units: int, importance: np.ndarray | None = None, factor_names: tuple[str, ...] = ()
) -> list[str]:
    """'unit i', or 'unit i: factor' naming the factor a unit informs most (DCI importance (N, K)),
    left unnamed when the unit informs nothing."""
    names = [f"unit {i}" for i in range(num_units)]
    if importance is not None and len(factor_names):
        for i, row in enumerate(importance):
            if row.sum() > 0:
                names[i] += f": {factor_names[int(row.argmax())]}"
    return names


def save_interchange(result: Interchange, path: str | Path, names: list[str] | None = None) -> Path:
    names = names or unit_names(len(result.swapped))
    rows = [result.source, result.target, result.reconstruction, *result.swapped]
    labels = ["source", "target", "reconstruction", *(f"swap {n}" for n in names)]
    return save_grid(rows, path, row_labels=labels, title="latent interchange: one unit from the target")
