"""The diffusion autoencoders' image encoders, built from diffusers' U-Net blocks without time.

- ``SemanticEncoder`` (Diff-AE, Preechakul et al., CVPR 2022): the U-Net's downsampling half and
  its bottleneck (res, self-attention, res), then GroupNorm, SiLU, global average pool and a 1x1
  conv to z_sem (B, K). At 64 px Diff-AE uses channels 64 x (1, 2, 4, 8, 8), two res blocks per
  level, attention at 16x16, and K = 512.
- ``UShapedEncoder`` (InfoDiffusion, Wang et al., ICML 2023): a whole U-Net to a one-channel map,
  flattened, then a linear layer to the code a (B, K). Deviation: diffusers' U-Net has a time
  embedding, so it runs at the fixed timestep 0, where the embedding is one learnt bias per res
  block (a time-free U-Net's convs could hold the same).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers import UNet2DModel
from diffusers.models.unets.unet_2d_blocks import AttnDownBlock2D, DownBlock2D, UNetMidBlock2D
from torch import nn


@dataclass
class SemanticEncoderConfig:
    """A time-free U-Net's shape: channels per level (level 0 = full resolution, one halving between
    levels) and whether a level has self-attention. Defaults: Diff-AE's encoder at 64 px."""

    channels: tuple[int, ...] = (64, 128, 256, 512, 512)
    attention: tuple[bool, ...] = (False, False, True, False, False)
    layers_per_block: int = 2
    heads: int = 4  # self-attention heads at the narrowest attention level (fixed head width)
    norm_groups: int = 32

    def __post_init__(self):
        if not self.channels or min(self.channels) < 1:
            raise ValueError(f"encoder.channels must be a non-empty list of ints >= 1, got {self.channels}")
        if len(self.attention) != len(self.channels):
            raise ValueError(
                f"encoder.attention needs one flag per level ({len(self.channels)}), "
                f"got {len(self.attention)}"
            )
        if any(c % self.norm_groups for c in self.channels):
            raise ValueError(
                f"encoder.norm_groups={self.norm_groups} must divide every channel count {self.channels}"
            )
        if self.heads < 1 or any(c % self.heads for c in self.channels):
            raise ValueError(f"encoder.heads={self.heads} must divide every channel count {self.channels}")
        if self.layers_per_block < 1:
            raise ValueError(f"encoder.layers_per_block must be >= 1, got {self.layers_per_block}")

    @property
    def head_width(self) -> int:
        """Channels per attention head: the narrowest attended level's channels / ``heads``."""
        attended = [c for c, a in zip(self.channels, self.attention, strict=True) if a] or [self.channels[-1]]
        return min(attended) // self.heads

    def check_resolution(self, resolution: int) -> None:
        levels = len(self.channels)
        if resolution % 2 ** (levels - 1):
            raise ValueError(
                f"resolution {resolution} is not divisible by 2^{levels - 1} for a {levels}-level encoder"
            )


class SemanticEncoder(nn.Module):
    """Images (B, C, H, W) in [-1, 1] -> z_sem (B, K): Diff-AE's semantic encoder."""

    def __init__(self, config: SemanticEncoderConfig, num_units: int, resolution: int, in_channels: int = 3):
        super().__init__()
        config.check_resolution(resolution)
        ch, groups = config.channels, config.norm_groups
        self.conv_in = nn.Conv2d(in_channels, ch[0], 3, padding=1)
        blocks = []
        for i, (c_in, c_out, attend) in enumerate(zip((ch[0], *ch[:-1]), ch, config.attention, strict=True)):
            last = i == len(ch) - 1
            shape = dict(in_channels=c_in, out_channels=c_out, temb_channels=None, resnet_groups=groups)
            shape.update(num_layers=config.layers_per_block)
            if attend:
                block = AttnDownBlock2D(
                    **shape, attention_head_dim=config.head_width, downsample_type=None if last else "conv"
                )
            else:
                block = DownBlock2D(**shape, add_downsample=not last)
            blocks.append(block)
        self.down = nn.ModuleList(blocks)
        self.mid = UNetMidBlock2D(
            in_channels=ch[-1], temb_channels=None, resnet_groups=groups, attention_head_dim=config.head_width
        )
        self.out = nn.Sequential(
            nn.GroupNorm(groups, ch[-1]),
            nn.SiLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(ch[-1], num_units, 1),
            nn.Flatten(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for block in self.down:
            h, _ = block(h, None)
        return self.out(self.mid(h, None))  # (B, K)


class UShapedEncoder(nn.Module):
    """Images (B, C, H, W) in [-1, 1] -> code a (B, K): InfoDiffusion's encoder (module docstring)."""

    def __init__(self, config: SemanticEncoderConfig, num_units: int, resolution: int, in_channels: int = 3):
        super().__init__()
        config.check_resolution(resolution)
        self.unet = UNet2DModel(
            sample_size=resolution,
            in_channels=in_channels,
            out_channels=1,
            block_out_channels=tuple(config.channels),
            down_block_types=tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in config.attention),
            up_block_types=tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(config.attention)),
            layers_per_block=config.layers_per_block,
            norm_num_groups=config.norm_groups,
            attention_head_dim=config.head_width,
        )
        self.head = nn.Linear(resolution * resolution, num_units)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = torch.zeros(len(x), dtype=torch.long, device=x.device)  # fixed: no time in an encoder
        return self.head(self.unet(x, t, return_dict=False)[0].flatten(1))  # (B, 1 H W) -> (B, K)
