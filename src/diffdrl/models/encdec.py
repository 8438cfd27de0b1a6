"""EncDec: EncDiff without diffusion, an encoder trained through a plain cross-attention decoder.

The EncDiff paper's ablation "EncDec w/o Diff" (Yang et al., NeurIPS 2024; Shapes3D FactorVAE 0.537 /
DCI 0.178 against EncDiff's 0.999 / 0.969): the same encoder and token bank, but the decoder is the
U-Net's decoder half fed a learnable spatial tensor instead of a noisy image, with no timestep, and
the loss is L2 reconstruction. The paper's reading: cross-attention over the tokens without the
diffusion process does not disentangle.

    x0 (B, C, H, W) -> encoder -> s (B, N) -> token bank -> c (B, N, d)
    x_hat = D(q, c)     q: a learnable (C_L, H / 2^(L-1), W / 2^(L-1)) tensor, the bottleneck's shape
    loss = mean |x0 - x_hat|^2

The decoder D mirrors the denoiser's mid block and up path (diffusers' building blocks, the same
``decoder`` shape keys as ``model.denoiser``): the bottleneck's resnet, cross-attention transformer,
resnet; then per level, deepest first, ``layers_per_block + 1`` resnets, each followed by a
transformer block (self-attention, cross-attention over the tokens, feed-forward) where
``cross_attention[level]`` is set, and an upsampling conv between levels; group norm, SiLU and a
3x3 conv to pixels. There are no skip connections (there is no encoder half) and no timestep
embedding (the resnets take none). Deviations: none known beyond the paper's unstated details
(learnable tensor initialised N(0, I); no anchoring, which belongs to DyGA).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.models.resnet import ResnetBlock2D
from diffusers.models.transformers.transformer_2d import Transformer2DModel
from diffusers.models.unets.unet_2d_blocks import UNetMidBlock2DCrossAttn
from diffusers.models.upsampling import Upsample2D
from torch import nn

from diffdrl.diffusion.draws import StepDraws
from diffdrl.models.denoiser import UNetShape
from diffdrl.models.encdiff import image_batch
from diffdrl.models.encoder import Encoder, EncoderConfig
from diffdrl.models.token_bank import TokenBank, TokenBankConfig


@dataclass
class DecoderConfig(UNetShape):
    """The decoder half's shape: the denoiser's keys, read for the up path only."""

    section: ClassVar[str] = "decoder"


@dataclass
class EncDecConfig:
    """The ablation model; sub-configs hold each component's own defaults."""

    name: str = "encdec"
    units: int = 20
    token_dim: int = 16
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    token_bank: TokenBankConfig = field(default_factory=TokenBankConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)

    def __post_init__(self):
        if self.name != "encdec":
            raise ValueError(f"EncDecConfig.name must be 'encdec', got {self.name!r}")
        if self.units < 1:
            raise ValueError(f"model.units must be >= 1, got {self.units}")
        if self.token_dim < 1:
            raise ValueError(f"model.token_dim must be >= 1, got {self.token_dim}")


class _Level(nn.Module):
    """One up-path level without skips: resnets (each followed by a transformer block when
    ``attention``), then an optional 2x upsampling conv."""

    def __init__(
        self, c_in: int, c_out: int, config: DecoderConfig, attention: bool, token_dim: int, up: bool
    ):
        super().__init__()
        groups, heads = config.norm_groups, config.heads
        layers = config.layers_per_block + 1  # as the U-Net's up blocks
        self.resnets = nn.ModuleList(
            ResnetBlock2D(
                in_channels=c_in if i == 0 else c_out,
                out_channels=c_out,
                temb_channels=None,
                groups=groups,
                dropout=config.dropout,
            )
            for i in range(layers)
        )
        self.attentions = nn.ModuleList(
            Transformer2DModel(
                heads,
                c_out // heads,
                in_channels=c_out,
                cross_attention_dim=token_dim,
                norm_num_groups=groups,
            )
            for _ in range(layers if attention else 0)
        )
        self.upsample = Upsample2D(c_out, use_conv=True) if up else nn.Identity()

    def forward(self, h: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        for i, resnet in enumerate(self.resnets):
            h = resnet(h, None)
            if self.attentions:
                h = self.attentions[i](h, encoder_hidden_states=tokens, return_dict=False)[0]
        return self.upsample(h)


class TokenDecoder(nn.Module):
    """D(q, c): images (B, C, H, W) from tokens (B, N, d), starting from the learnable tensor q."""

    def __init__(self, config: DecoderConfig, token_dim: int, resolution: int, channels: int = 3):
        super().__init__()
        side, widths = config.bottleneck_side(resolution), config.channels
        self.start = nn.Parameter(torch.randn(widths[-1], side, side))  # q
        self.mid = UNetMidBlock2DCrossAttn(
            in_channels=widths[-1],
            temb_channels=None,
            dropout=config.dropout,
            resnet_groups=config.norm_groups,
            num_attention_heads=config.heads,
            cross_attention_dim=token_dim,
        )
        levels = range(len(widths) - 1, -1, -1)  # deepest first
        self.levels = nn.ModuleList(
            _Level(
                widths[min(k + 1, len(widths) - 1)],
                widths[k],
                config,
                config.cross_attention[k],
                token_dim,
                k > 0,
            )
            for k in levels
        )
        self.out = nn.Sequential(
            nn.GroupNorm(config.norm_groups, widths[0]),
            nn.SiLU(),
            nn.Conv2d(widths[0], channels, 3, padding=1),
        )

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.start.expand(len(tokens), *self.start.shape)  # (B, C_L, h, w)
        h = self.mid(h, None, encoder_hidden_states=tokens)
        for level in self.levels:
            h = level(h, tokens)
        return self.out(h)  # (B, C, H, W)


class EncDec(nn.Module):
    conditions_on_tokens = True

    def __init__(self, config: EncDecConfig, resolution: int, channels: int = 3):
        super().__init__()
        self.config, self.resolution, self.channels = config, resolution, channels
        features = config.token_bank.in_features(config.units, config.token_dim)
        self.encoder = Encoder(config.encoder, features, resolution, channels)
        self.token_bank = TokenBank(config.token_bank, config.units, config.token_dim)
        self.decoder = TokenDecoder(config.decoder, config.token_dim, resolution, channels)

    def encode(self, x: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Units s (B, N) of images: float (B, C, H, W) in [-1, 1], or uint8 (B, H, W, C)."""
        return self.encoder(image_batch(x, self.channels, self.resolution, self.decoder.start.device))

    def raw_tokens(self, units: torch.Tensor) -> torch.Tensor:
        return self.token_bank(units)  # (B, N, d)

    def tokens(self, units: torch.Tensor) -> torch.Tensor:
        """The tokens the decoder reads (no anchoring here)."""
        return self.token_bank(units)  # (B, N, d)

    def forward(
        self, x0: torch.Tensor, draws: StepDraws | None = None, shuffle_tokens: bool = False
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(mean squared reconstruction error of a batch x0 in [-1, 1], no terms); ``draws`` is accepted for
        the model contract and unused (the loss draws nothing). ``shuffle_tokens`` pairs each image
        with another's tokens (the trainer's token-reliance diagnostic)."""
        c = self.tokens(self.encoder(x0))  # (B, N, d)
        if shuffle_tokens:
            c = c.roll(1, dims=0)
        return F.mse_loss(self.decoder(c).float(), x0.float()), {}

    loss = forward

    @torch.no_grad()
    def decode(self, tokens: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Images (B, C, H, W) decoded from tokens (B, N, d), possibly edited (trained toward [-1, 1];
        not clipped). What a swap or traversal picture would call instead of ``generate``."""
        tokens = tokens.to(self.decoder.start.device)
        return torch.cat(
            [self.decoder(tokens[i : i + batch_size]) for i in range(0, len(tokens), batch_size)]
        )
