"""Exponential moving average of a model's weights (parameters and float buffers)."""

from __future__ import annotations

import torch
from torch import nn


class EMA:
    """shadow <- d * shadow + (1 - d) * weights, with LDM's warm-up d_k = min(d, (1 + k) / (10 + k))
    so that short runs are not dominated by the random initialisation."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        floats, targets = [], []
        for k, v in model.state_dict().items():
            if v.is_floating_point():
                floats.append(self.shadow[k])
                targets.append(v.detach())
            else:  # counters such as BatchNorm's num_batches_tracked
                self.shadow[k].copy_(v)
        torch._foreach_lerp_(floats, targets, 1.0 - d)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.shadow

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing = set(self.shadow) ^ set(state)
        if missing:
            raise ValueError(f"EMA state does not match the model (keys differ: {sorted(missing)[:5]})")
        for k, v in state.items():
            self.shadow[k].copy_(v)
