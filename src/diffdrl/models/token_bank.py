"""Token bank: each latent unit s_i (a scalar) becomes a concept token c_i (a d-vector).

EncDiff gives every unit its own small MLP (1 -> 64 -> 128 -> d, ELU, in the released code), so a
token depends on its unit alone; this is what lets cross-attention bind one unit to one image
attribute. The N MLPs are stored as stacked weights and run as one batched einsum per layer.

``kind="vector"`` is the paper's EncDiff-V (vector-valued tokens; Shapes3D DCI 0.900 against 0.969
with scalar units): the encoder emits N d features and the bank only cuts them into N chunks of d,
which are the tokens themselves (no MLP, no parameters). The model's units are then the N d
features; the paper evaluates EncDiff-V on each token's first principal component.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

ACTIVATIONS = {"elu": nn.ELU, "relu": nn.ReLU, "silu": nn.SiLU}
KINDS = ("scalar", "vector")


@dataclass
class TokenBankConfig:
    """Hidden widths and activation of every per-unit MLP (released code: (64, 128), ELU).
    ``kind="vector"`` (EncDiff-V) has no MLP: ``hidden`` and ``activation`` are then unused."""

    hidden: tuple[int, ...] = (64, 128)
    activation: str = "elu"
    kind: str = "scalar"

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"token_bank.kind must be one of {KINDS}, got {self.kind!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"token_bank.activation must be one of {tuple(ACTIVATIONS)}, got {self.activation!r}"
            )
        if any(h < 1 for h in self.hidden):
            raise ValueError(f"token_bank.hidden widths must be positive, got {self.hidden}")

    def in_features(self, num_units: int, token_dim: int) -> int:
        """How many features the encoder emits per image: N, or N d for vector tokens."""
        return num_units * token_dim if self.kind == "vector" else num_units


class TokenBank(nn.Module):
    """N independent MLPs R -> R^d, evaluated together: units (B, N) -> tokens (B, N, d); or, for
    ``kind="vector"``, units (B, N d) cut into tokens (B, N, d)."""

    def __init__(self, config: TokenBankConfig, num_units: int, token_dim: int):
        super().__init__()
        self.kind, self.num_units, self.token_dim = config.kind, num_units, token_dim
        self.in_features = config.in_features(num_units, token_dim)
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.activation = ACTIVATIONS[config.activation]()
        if config.kind == "vector":
            return
        widths = (1, *config.hidden, token_dim)
        for fan_in, fan_out in zip(widths[:-1], widths[1:], strict=True):
            bound = 1.0 / math.sqrt(fan_in)  # nn.Linear's default init, per unit
            self.weights.append(nn.Parameter(torch.empty(num_units, fan_in, fan_out).uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.empty(num_units, fan_out).uniform_(-bound, bound)))

    def forward(self, units: torch.Tensor) -> torch.Tensor:
        if units.shape[-1] != self.in_features:
            raise ValueError(f"expected units (..., {self.in_features}), got {tuple(units.shape)}")
        if self.kind == "vector":
            return units.unflatten(-1, (self.num_units, self.token_dim))  # (B, N, d)
        h = units.unsqueeze(-1)  # (B, N, 1)
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = torch.einsum("bni,nio->bno", h, w) + b  # (B, N, width_i)
            if i < last:
                h = self.activation(h)
        return h  # (B, N, d)

    def unit_mlp(self, i: int) -> nn.Sequential:
        """Unit i's MLP as an ordinary ``nn.Sequential`` (a copy; for inspection and tests)."""
        if self.kind == "vector":
            raise ValueError("a vector token bank (token_bank.kind='vector') has no per-unit MLPs")
        layers: list[nn.Module] = []
        for k, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            linear = nn.Linear(w.shape[1], w.shape[2])
            with torch.no_grad():
                linear.weight.copy_(w[i].T)
                linear.bias.copy_(b[i])
            layers.append(linear)
            if k < len(self.weights) - 1:
                layers.append(type(self.activation)())
        return nn.Sequential(*layers)
