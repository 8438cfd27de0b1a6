"""Latent interchange: swap one unit of a source image for a target image's, regenerate, look.

If unit i is disentangled, row i changes exactly one attribute of the source into the target's.
For a diffusion model every row of a column starts from the same x_T and samples deterministically
(DDIM, eta = 0), so the swapped unit is the only difference between rows; ``start="inversion"``
takes x_T from DDIM inversion of the source, so untouched attributes keep the source's details
too. Other models decode the swapped units in one deterministic pass (``viz.render``).

A unit is what the token bank turns into one token: one scalar, or for EncDiff-V's vector tokens
the d coordinates of one token, swapped together.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from diffdrl.viz.grid import save_grid, to_uint8
from diffdrl.viz.render import inverted_start, render_units, resolve_sampling, shared_start


@dataclass
class Interchange:
    source: np.ndarray  # (P, H, W, C) uint8
    target: np.ndarray  # (P, H, W, C)
    reconstruction: np.ndarray  # (P, H, W, C): the source regenerated from its own units
    swapped: np.ndarray  # (N, P, H, W, C): row i has unit i taken from the target


def swap_units(
    source_units: torch.Tensor, target_units: torch.Tensor, num_units: int | None = None
) -> torch.Tensor:
    """(P, K) x 2 -> (N, P, K): entry [i, p] is source p with unit i replaced by target p's. The K
    coordinates form ``num_units`` units of K / N consecutive coordinates each (default: K units)."""
    p, k = source_units.shape
    n = num_units or k
    if k % n:
        raise ValueError(f"{k} coordinates do not split into {n} units")
    g = k // n  # coordinates per unit (EncDiff-V: d)
    units = source_units.unsqueeze(0).repeat(n, 1, 1).view(n, p, n, g)  # (N, P, N, g)
    i = torch.arange(n)
    units[i, :, i] = target_units.view(p, n, g).transpose(0, 1)  # (N, P, g)
    return units.flatten(2)  # (N, P, K)


@torch.no_grad()
def interchange(
    model,
    source: np.ndarray,
    target: np.ndarray,
    steps: int | None = None,
    seed: int = 0,
    start: str | None = None,
) -> Interchange:
    """The full interchange of every unit for each (source, target) pair of uint8 images.

    ``steps`` (default 50) and ``start`` (default "noise") are a diffusion model's sampling options:
    set for another model they are a ``ValueError`` (``viz.render``)."""
    if source.shape != target.shape:
        raise ValueError(f"source and target images differ in shape: {source.shape} vs {target.shape}")
    options = resolve_sampling(model, steps=steps, start=start)
    s_src, s_tgt = model.encode(source), model.encode(target)  # (P, K) each
    n = model.config.units
    units = torch.cat([swap_units(s_src, s_tgt, n), s_src[None]])  # (N + 1, P, K); last row: no swap
    if start == "inversion":
        x_T = inverted_start(model, source, options["steps"])
    else:
        x_T = shared_start(model, seed, count=len(s_src))  # (P, C, H, W), or None: nothing to share
    images = render_units(model, units, x_T=x_T, steps=steps)  # (N + 1, P, C, H, W): x_T down a column
    images = to_uint8(images.flatten(0, 1)).reshape(n + 1, len(s_src), *source.shape[1:])
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
