"""Traversals (one unit swept over its observed range, the rest fixed) and interpolations
(all units moved linearly from one image's to another's), for any model (``viz.render``).

A unit is what becomes one token: a scalar, or for EncDiff-V's vector tokens the d coordinates of
one token. A vector unit is traversed along its first principal axis (the paper's PCA-1 view of
EncDiff-V): the token is replaced by mean + a v_1 for a at quantiles of its PCA-1 projection.
"""

from __future__ import annotations

import numpy as np
import torch

from diffdrl.metrics.pca import PerUnitPCA
from diffdrl.viz.grid import to_uint8
from diffdrl.viz.render import inverted_start, render_units, resolve_sampling, shared_start


def unit_ranges(
    units: torch.Tensor,
    num_values: int,
    low: float = 0.02,
    high: float = 0.98,
    num_units: int | None = None,
) -> torch.Tensor:
    """Values per unit at evenly spaced quantiles of observed units (M, K): (N, V) for scalar units
    (``num_units`` None or K); for units of g = K / N coordinates, (N, V, g) points along each
    unit's first principal axis at the quantiles of its projection."""
    q = torch.linspace(low, high, num_values, device=units.device)
    m, k = units.shape
    n = num_units or k
    if n == k:
        return torch.quantile(units.float(), q, dim=0).T  # (N, V)
    if k % n:
        raise ValueError(f"{k} coordinates do not split into {n} units")
    tokens = units.detach().float().view(m, n, k // n).cpu().numpy()  # (M, N, g)
    pca = PerUnitPCA().fit(tokens)
    a = torch.quantile(torch.from_numpy(pca.transform(tokens)), q.cpu(), dim=0).T  # (N, V)
    mean, axis = torch.from_numpy(pca.mean_).float(), torch.from_numpy(pca.components_).float()  # (N, g)
    return (mean[:, None] + a[..., None] * axis[:, None]).to(units.device)  # (N, V, g)


def traversal_title(values: torch.Tensor) -> str:
    """What a traversal with these ``unit_ranges`` values shows, as a grid title."""
    if values.ndim == 3:
        return "traversal: each token along its first principal axis, 2%-98% quantiles"
    return "traversal: one unit over its 2%-98% quantiles"


@torch.no_grad()
def traverse(
    model,
    image: np.ndarray,
    values: torch.Tensor,
    steps: int | None = None,
    seed: int = 0,
    start: str | None = None,
) -> np.ndarray:
    """uint8 (N, V, H, W, C): row i sets unit i of the image's units to ``values[i]``, (N, V) or
    (N, V, g) for units of g coordinates (``unit_ranges``). One x_T for all (diffusion models):
    fresh noise from ``seed``, or with ``start="inversion"`` the image's DDIM-inverted x_T."""
    resolve_sampling(model, steps=steps, start=start)  # sampling options only for diffusion models
    s = model.encode(image[None])[0]  # (K,)
    n, v = values.shape[:2]
    values = values.reshape(n, v, -1)  # (N, V, g)
    units = s.repeat(n, v, 1).view(n, v, n, values.shape[-1])  # (N, V, N, g)
    i = torch.arange(n)
    units[i, :, i] = values.to(units)
    if start == "inversion":
        x_T = inverted_start(model, image[None], steps)  # (1, C, H, W)
    else:
        x_T = shared_start(model, seed)  # (1, C, H, W), or None for a deterministic decoder
    images = to_uint8(render_units(model, units.flatten(2), x_T=x_T, steps=steps).flatten(0, 1))
    return images.reshape(n, v, *images.shape[1:])


@torch.no_grad()
def interpolate(
    model,
    first: np.ndarray,
    second: np.ndarray,
    num_values: int = 8,
    steps: int | None = None,
    seed: int = 0,
) -> np.ndarray:
    """uint8 (P, V, H, W, C): for each pair, units moved linearly from ``first`` to ``second``."""
    a, b = model.encode(first), model.encode(second)  # (P, K)
    w = torch.linspace(0, 1, num_values, device=a.device)[None, :, None]
    units = a[:, None] + w * (b - a)[:, None]  # (P, V, K)
    x_T = shared_start(model, seed)  # (1, C, H, W), or None for a deterministic decoder
    images = to_uint8(render_units(model, units, x_T=x_T, steps=steps).flatten(0, 1))
    return images.reshape(len(a), num_values, *images.shape[1:])
