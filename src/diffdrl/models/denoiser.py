"""The denoiser eps_theta(x_t, t, c): a U-Net that reads the N tokens through cross-attention.

Built from diffusers' ``UNet2DConditionModel`` (SpatialTransformer-style blocks: self-attention,
cross-attention with queries from pixels and keys/values from tokens, feed-forward), kept behind
this small config so the rest of the library never sees its 48 arguments. It knows nothing of
betas or losses (STYLE.md: network | schedule | loss | sampler).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from diffusers import UNet2DConditionModel
from torch import nn

from diffdrl.models.skip_dropout import SkipDropoutConfig, install_skip_dropout


@dataclass
class DenoiserConfig:
    """U-Net shape. ``cross_attention[i]`` says whether level i (0 = full resolution) has
    transformer blocks; the bottleneck always has one. Defaults: the paper-scale U-Net."""

    channels: tuple[int, ...] = (64, 128, 256, 256)
    cross_attention: tuple[bool, ...] = (True, True, True, False)
    layers_per_block: int = 2
    heads: int = 8
    norm_groups: int = 32
    dropout: float = 0.0
    scale_shift_norm: bool = True  # LDM's use_scale_shift_norm
    skip_dropout: SkipDropoutConfig = field(default_factory=SkipDropoutConfig)  # DyGA; off by default

    def __post_init__(self):
        if len(self.channels) != len(self.cross_attention):
            raise ValueError(
                f"denoiser.cross_attention needs one flag per level ({len(self.channels)}), "
                f"got {len(self.cross_attention)}"
            )
        if any(c % self.norm_groups for c in self.channels):
            raise ValueError(
                f"denoiser.norm_groups={self.norm_groups} must divide every channel count {self.channels}"
            )
        if any(c % self.heads for c in self.channels):
            raise ValueError(f"denoiser.heads={self.heads} must divide every channel count {self.channels}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"denoiser.dropout must be in [0, 1), got {self.dropout}")
        if any(not 0 <= level < len(self.channels) for level in self.skip_dropout.levels):
            raise ValueError(
                f"denoiser.skip_dropout.levels must lie in [0, {len(self.channels)}), "
                f"got {self.skip_dropout.levels}"
            )
        if self.layers_per_block < 1:
            raise ValueError(f"denoiser.layers_per_block must be >= 1, got {self.layers_per_block}")


class Denoiser(nn.Module):
    def __init__(self, config: DenoiserConfig, token_dim: int, resolution: int, channels: int = 3):
        super().__init__()
        levels = len(config.channels)
        if resolution % 2 ** (levels - 1):
            raise ValueError(
                f"resolution {resolution} is not divisible by 2^{levels - 1} for a {levels}-level U-Net"
            )
        down = tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in config.cross_attention)
        up = tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(config.cross_attention))
        self.unet = UNet2DConditionModel(
            sample_size=resolution,
            in_channels=channels,
            out_channels=channels,
            down_block_types=down,
            up_block_types=up,
            block_out_channels=tuple(config.channels),
            layers_per_block=config.layers_per_block,
            norm_num_groups=config.norm_groups,
            cross_attention_dim=token_dim,
            # diffusers reads ``attention_head_dim`` as the number of heads (diffusers issue 2011).
            attention_head_dim=config.heads,
            dropout=config.dropout,
            resnet_time_scale_shift="scale_shift" if config.scale_shift_norm else "default",
        )
        install_skip_dropout(self.unet, config.skip_dropout)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        return self.unet(x_t, t, encoder_hidden_states=tokens, return_dict=False)[0]
