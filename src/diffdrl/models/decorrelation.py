"""A small decorrelation penalty on the units (not in EncDiff; off by default, ``model.decorrelation``).

EncDiff's units are pushed apart only by the denoiser's need for separate concepts, which takes many
images to show. Penalising the batch correlation between units is the cheapest independence prior
there is (a second-moment stand-in for the total correlation that beta-TCVAE estimates): it costs
an (N, N) matrix per step and asks nothing of the denoiser.
"""

from __future__ import annotations

import torch


def decorrelation_penalty(units: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Mean squared off-diagonal Pearson correlation of units (B, N) over the batch: 0 for
    uncorrelated units, 1 when every unit is an affine copy of the others (N >= 2, B >= 2)."""
    if units.ndim != 2 or units.shape[0] < 2 or units.shape[1] < 2:
        raise ValueError(f"decorrelation needs units of shape (B >= 2, N >= 2), got {tuple(units.shape)}")
    z = units.float() - units.float().mean(0)
    z = z / (z.square().mean(0).sqrt() + eps)
    corr = z.T @ z / units.shape[0]  # (N, N)
    n = corr.shape[0]
    off = corr - torch.diag_embed(torch.diagonal(corr))
    return off.square().sum() / (n * (n - 1))
