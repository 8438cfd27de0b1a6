"""Traversals (one unit swept over its observed range, the rest fixed) and interpolations
(all units moved linearly from one image's to another's)."""

from __future__ import annotations

import numpy as np
import torch

from diffdrl.viz.grid import to_uint8


def unit_ranges(units: torch.Tensor, num_values: int, low: float = 0.02, high: float = 0.98) -> torch.Tensor:
    """(N, V) values per unit at evenly spaced quantiles of its observed units (M, N)."""
    q = torch.linspace(low, high, num_values, device=units.device)
    return torch.quantile(units.float(), q, dim=0).T  # (N, V)


@torch.no_grad()
def traverse(model, image: np.ndarray, values: torch.Tensor, steps: int = 50, seed: int = 0) -> np.ndarray:
    """uint8 (N, V, H, W, C): row i sets unit i of the image's units to ``values[i]`` (N, V)."""
    s = model.encode(image[None])[0]  # (N,)
    n, v = values.shape
    units = s.repeat(n, v, 1)  # (N, V, N)
    i = torch.arange(n)
    units[i, :, i] = values.to(units)
    x_T = _shared_noise(model, seed).repeat(n * v, 1, 1, 1)
    images = to_uint8(model.generate(model.tokens(units.flatten(0, 1)), "ddim", steps, x_T=x_T))
    return images.reshape(n, v, *images.shape[1:])


@torch.no_grad()
def interpolate(
    model, first: np.ndarray, second: np.ndarray, num_values: int = 8, steps: int = 50, seed: int = 0
) -> np.ndarray:
    """uint8 (P, V, H, W, C): for each pair, units moved linearly from ``first`` to ``second``."""
    a, b = model.encode(first), model.encode(second)  # (P, N)
    w = torch.linspace(0, 1, num_values, device=a.device)[None, :, None]
    units = a[:, None] + w * (b - a)[:, None]  # (P, V, N)
    p = len(a)
    x_T = _shared_noise(model, seed).repeat(p * num_values, 1, 1, 1)
    images = to_uint8(model.generate(model.tokens(units.flatten(0, 1)), "ddim", steps, x_T=x_T))
    return images.reshape(p, num_values, *images.shape[1:])


def _shared_noise(model, seed: int) -> torch.Tensor:
    gen = torch.Generator(model.schedule.betas.device).manual_seed(seed)
    shape = (1, model.channels, model.resolution, model.resolution)
    return torch.randn(shape, generator=gen, device=model.schedule.betas.device)
