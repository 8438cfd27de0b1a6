"""Image encoder: image (B, C, H, W) -> N latent units s (B, N).

Two architectures, selectable by ``encoder.architecture``:

- ``released``: the EncDiff code's ``Encoder4`` (METHODS.md): four 4x4 stride-2 convs with batch
  norm, two residual blocks, one linear layer. Default, since it reproduced the reported numbers.
- ``paper``: the EncDiff/DyGA papers' table: a 7x7 stride-1 stem, four 4x4 stride-2 convs,
  then a three-layer MLP (4096 -> 256 -> 256 -> N at 64x64).

Both downsample by 16, so the input side must be a multiple of 16.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

ARCHITECTURES = ("released", "paper")


@dataclass
class EncoderConfig:
    """Encoder shape; ``width`` is the released code's channel count (paper variant: 64-128-256)."""

    architecture: str = "released"
    width: int = 128

    def __post_init__(self):
        if self.architecture not in ARCHITECTURES:
            raise ValueError(
                f"encoder.architecture must be one of {ARCHITECTURES}, got {self.architecture!r}"
            )
        if self.width < 8 or self.width % 2:
            raise ValueError(f"encoder.width must be an even number >= 8, got {self.width}")


def conv_bn(c_in: int, c_out: int, kernel: int, stride: int, relu: bool = True) -> list[nn.Module]:
    layers = [nn.Conv2d(c_in, c_out, kernel, stride, padding=(kernel - stride + 1) // 2)]
    layers.append(nn.BatchNorm2d(c_out))
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return layers


class ResidualBlock(nn.Module):
    """x + Conv1x1(ReLU(BN(Conv3x3(ReLU(x))))), as in the released encoder."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Encoder(nn.Module):
    def __init__(self, config: EncoderConfig, num_units: int, resolution: int, in_channels: int = 3):
        super().__init__()
        if resolution < 16 or resolution % 16:
            raise ValueError(f"encoder needs a resolution that is a multiple of 16, got {resolution}")
        side = resolution // 16  # spatial side after four stride-2 convs
        w = config.width
        if config.architecture == "released":
            self.features = nn.Sequential(
                *conv_bn(in_channels, w, 4, 2),
                *conv_bn(w, w, 4, 2),
                *conv_bn(w, w, 4, 2, relu=False),
                *conv_bn(w, w, 4, 2),
                ResidualBlock(w),
                nn.BatchNorm2d(w),
                ResidualBlock(w),
                nn.BatchNorm2d(w),
                nn.ReLU(inplace=True),
                nn.Flatten(),
            )
            self.head = nn.Linear(w * side * side, num_units)
        else:
            c = (w // 2, w, 2 * w, 2 * w, 2 * w)
            self.features = nn.Sequential(
                *conv_bn(in_channels, c[0], 7, 1),
                *[layer for i in range(4) for layer in conv_bn(c[i], c[i + 1], 4, 2)],
                nn.Flatten(),
            )
            hidden = 2 * w
            self.head = nn.Sequential(
                nn.Linear(c[-1] * side * side, hidden),
                nn.ReLU(inplace=True),
                nn.Linear(hidden, hidden),
                nn.ReLU(inplace=True),
                nn.Linear(hidden, num_units),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))  # (B, N)
