"""The explorer's sliders: one per unit, its range, and where DyGA's anchors sit on it.

A slider moves one unit. For a scalar unit its value is the unit itself; for EncDiff-V's vector
units (g coordinates each) it is the token's coordinate along the unit's first principal axis
(as ``viz.traversal`` traverses them), and moving it shifts the token along that axis only.
Ranges are the 1%-99% quantiles of the values observed on reference images.

DyGA's anchors are placed on a scalar unit's slider at the value whose raw token lies nearest the
component's mean (a search along the unit's 1-D token curve; ``distance`` says how near it gets),
on a vector unit's at the mean's projection.
"""

from __future__ import annotations

import torch

from diffdrl.metrics.pca import PerUnitPCA


class Sliders:
    """Slider axes and ranges of ``num_units`` units fitted on ``reference_units`` (M, K)."""

    def __init__(self, reference_units: torch.Tensor, num_units: int):
        n, k = num_units, reference_units.shape[1]
        self.num_units = n
        self.group = k // n  # coordinates per unit
        if self.group == 1:
            self.mean, self.axis = torch.zeros(n, 1), torch.ones(n, 1)
        else:
            pca = PerUnitPCA().fit(reference_units.view(-1, n, self.group).numpy())
            self.mean = torch.from_numpy(pca.mean_).float()
            self.axis = torch.from_numpy(pca.components_).float()
        observed = self.project(reference_units)  # (M, N)
        q = torch.quantile(observed, torch.tensor([0.01, 0.5, 0.99]), dim=0)  # (3, N)
        low, self.median, high = q[0], q[1], q[2]
        flat = (high - low) <= 1e-6  # a dead unit: give its slider some room anyway
        self.low, self.high = torch.where(flat, low - 1, low), torch.where(flat, high + 1, high)

    def project(self, units: torch.Tensor) -> torch.Tensor:
        """Slider values (B, N) of units (B, K)."""
        tokens = units.float().view(len(units), self.num_units, self.group)  # (B, N, g)
        return ((tokens - self.mean) * self.axis).sum(-1)

    def with_values(self, units: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """Units (K,) moved so their slider values become ``values`` (N,)."""
        tokens = units.float().view(self.num_units, self.group)
        shift = values - self.project(units[None])[0]  # (N,)
        return (tokens + shift[:, None] * self.axis).flatten()

    @torch.no_grad()
    def anchor_positions(self, model) -> list[list[dict]] | None:
        """Per unit, its active DyGA components as slider positions; None without fitted anchors."""
        anchors = getattr(model, "anchors", None)
        if anchors is None or not (anchors.config.enabled and anchors._is_fitted):
            return None
        means = anchors.raw_means().float().cpu()  # (N, C, d)
        active, weights = anchors.active.cpu(), anchors.weights.float().cpu()  # (N, C)
        if self.group == 1:  # the value whose token is nearest each mean, along each unit's curve
            span = self.high - self.low
            grid = torch.linspace(0, 1, 512)[:, None] * 2 * span + (self.low - span / 2)  # (G, N)
            device = next(model.parameters()).device
            curve = model.raw_tokens(grid.to(device)).float().cpu()  # (G, N, d)
            dist = torch.cdist(curve.transpose(0, 1), means)  # (N, G, C)
            best, index = dist.min(1)  # (N, C)
            position = grid.T.gather(1, index)  # (N, C)
        else:
            position = ((means - self.mean[:, None]) * self.axis[:, None]).sum(-1)  # (N, C)
            best = torch.zeros_like(position)
        return [
            [
                {
                    "value": float(position[i, c]),
                    "weight": float(weights[i, c]),
                    "distance": float(best[i, c]),
                }
                for c in torch.nonzero(active[i]).flatten().tolist()
            ]
            for i in range(self.num_units)
        ]
