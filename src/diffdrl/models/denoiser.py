"""The denoiser eps_theta(x_t, t, c): a U-Net that reads the N tokens through cross-attention.

Built from diffusers' ``UNet2DConditionModel`` (SpatialTransformer-style blocks: self-attention,
cross-attention with queries from pixels and keys/values from tokens, feed-forward), kept behind
this small config so the rest of the library never sees its 48 arguments. It knows nothing of
betas or losses (STYLE.md: network | schedule | loss | sampler).

``conditioning="adagn"`` is the EncDiff paper's ablation (Shapes3D FactorVAE 0.911 / DCI 0.637
against 0.999 / 0.969 with cross-attention): the tokens are concatenated (B, N d), projected by an
MLP and added to the timestep embedding, and every resnet block's group norm takes its scale and
shift from that sum (AdaGN, as in Diff-AE). The transformer blocks become plain self-attention
blocks (LDM's ``AttentionBlock``, ADM/Diff-AE style) at the same levels, so only the way the tokens
are read changes. Deviations: Diff-AE multiplies the group norm by a separate projection of its
code, z_s (t_s GN(h) + t_b); here the code is added to the timestep embedding (diffusers'
``class_embed_type="projection"``). Self-attention heads have a fixed width (LDM's
``num_head_channels``): the narrowest attention level's channels / ``heads``, since diffusers'
conditional U-Net hands its up blocks the per-level head widths in down-path order.

``conditioning="adagn_scale"`` / ``"adagn_scale_shift"`` are Diff-AE's and InfoDiffusion's
two-condition AdaGN (models/code_modulation.py): the same attention-free U-Net without the code in
the timestep embedding; instead the code scales (and shifts) every res block's group norm after the
timestep's scale-shift, as those papers do.

``patch_size`` p > 1 (not in the paper; 1 = the paper's U-Net) is a space-to-depth stem, the
"simple diffusion" idea (Hoogeboom et al. 2023): each p x p patch becomes C p^2 channels, the U-Net
runs at H/p x W/p, and its output is folded back (pixel shuffle). Most of a pixel U-Net's FLOPs sit
at full resolution, so p = 2 makes a step several times cheaper; the first level sees 4x the
channels for the same width.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from diffusers import UNet2DConditionModel
from diffusers.models.unets.unet_2d_blocks import UNetMidBlock2D
from torch import nn
from torch.nn import functional as F

from diffdrl.models.code_modulation import install_code_modulation
from diffdrl.models.skip_dropout import SkipDropoutConfig, install_skip_dropout

CONDITIONINGS = ("cross_attention", "adagn", "adagn_scale", "adagn_scale_shift")
# two-condition AdaGN (models/code_modulation.py): the code scales (Diff-AE), or scales and shifts
# (InfoDiffusion), every res block's group norm after the timestep's scale-shift
CODE_MODULATIONS = {"adagn_scale": False, "adagn_scale_shift": True}  # name -> with a shift


@dataclass
class UNetShape:
    """U-Net levels (0 = full resolution): channels, and whether level i has transformer blocks
    (``cross_attention[i]``); the bottleneck always has one. Defaults: the paper-scale U-Net.
    Shared by EncDiff's denoiser and EncDec's decoder (``section`` names the key in errors)."""

    section: ClassVar[str] = "denoiser"

    channels: tuple[int, ...] = (64, 128, 256, 256)
    cross_attention: tuple[bool, ...] = (False, True, True, True)
    layers_per_block: int = 2
    heads: int = 8
    norm_groups: int = 32
    dropout: float = 0.0

    def __post_init__(self):
        key = self.section
        if len(self.channels) != len(self.cross_attention):
            raise ValueError(
                f"{key}.cross_attention needs one flag per level ({len(self.channels)}), "
                f"got {len(self.cross_attention)}"
            )
        if any(c % self.norm_groups for c in self.channels):
            raise ValueError(
                f"{key}.norm_groups={self.norm_groups} must divide every channel count {self.channels}"
            )
        if any(c % self.heads for c in self.channels):
            raise ValueError(f"{key}.heads={self.heads} must divide every channel count {self.channels}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"{key}.dropout must be in [0, 1), got {self.dropout}")
        if self.layers_per_block < 1:
            raise ValueError(f"{key}.layers_per_block must be >= 1, got {self.layers_per_block}")

    def bottleneck_side(self, resolution: int) -> int:
        """Side of the lowest level's feature maps (the U-Net downsamples once between levels)."""
        levels = len(self.channels)
        if resolution % 2 ** (levels - 1):
            raise ValueError(
                f"resolution {resolution} is not divisible by 2^{levels - 1} for a {levels}-level U-Net"
            )
        return resolution // 2 ** (levels - 1)


@dataclass
class DenoiserConfig(UNetShape):
    """The denoising U-Net: its shape plus how it reads the tokens (``conditioning``)."""

    scale_shift_norm: bool = True  # LDM's use_scale_shift_norm
    skip_dropout: SkipDropoutConfig = field(default_factory=SkipDropoutConfig)  # DyGA; off by default
    # or "adagn" (the paper's ablation); "adagn_scale" / "adagn_scale_shift": Diff-AE's and
    # InfoDiffusion's two-condition AdaGN, set by those models
    conditioning: str = "cross_attention"
    patch_size: int = 1  # space-to-depth stem: the U-Net runs at resolution / patch_size (paper: 1)

    def __post_init__(self):
        super().__post_init__()
        if self.patch_size < 1:
            raise ValueError(f"denoiser.patch_size must be >= 1, got {self.patch_size}")
        if any(not 0 <= level < len(self.channels) for level in self.skip_dropout.levels):
            raise ValueError(
                f"denoiser.skip_dropout.levels must lie in [0, {len(self.channels)}), "
                f"got {self.skip_dropout.levels}"
            )
        if self.conditioning not in CONDITIONINGS:
            raise ValueError(
                f"denoiser.conditioning must be one of {CONDITIONINGS}, got {self.conditioning!r}"
            )
        if self.conditioning != "cross_attention" and not self.scale_shift_norm:
            raise ValueError(
                f"denoiser.scale_shift_norm must be true with conditioning={self.conditioning!r} "
                "(the tokens act through the group norms' scale and shift)"
            )


class Denoiser(nn.Module):
    """eps_theta(x_t, t, c) for tokens c (B, N, d); ``num_units`` N is needed by AdaGN only."""

    def __init__(
        self,
        config: DenoiserConfig,
        token_dim: int,
        resolution: int,
        channels: int = 3,
        num_units: int | None = None,
    ):
        super().__init__()
        self.patch = p = config.patch_size
        if resolution % p:
            raise ValueError(f"denoiser.patch_size={p} must divide the resolution {resolution}")
        config.bottleneck_side(resolution // p)
        self.conditioning = config.conditioning
        shape = dict(
            sample_size=resolution // p,
            in_channels=channels * p * p,
            out_channels=channels * p * p,
            block_out_channels=tuple(config.channels),
            layers_per_block=config.layers_per_block,
            norm_num_groups=config.norm_groups,
            dropout=config.dropout,
            resnet_time_scale_shift="scale_shift" if config.scale_shift_norm else "default",
        )
        if config.conditioning != "cross_attention":
            if num_units is None:
                raise ValueError(
                    f"denoiser.conditioning={config.conditioning!r} needs num_units (the tokens are "
                    "concatenated)"
                )
            code_dim = num_units * token_dim
            if config.conditioning in CODE_MODULATIONS:
                self.unet = _adagn_unet(config, None, shape)
                install_code_modulation(self.unet, code_dim, CODE_MODULATIONS[config.conditioning])
            else:
                self.unet = _adagn_unet(config, code_dim, shape)
        else:
            self.unet = UNet2DConditionModel(
                down_block_types=tuple(
                    "CrossAttnDownBlock2D" if a else "DownBlock2D" for a in config.cross_attention
                ),
                up_block_types=tuple(
                    "CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(config.cross_attention)
                ),
                cross_attention_dim=token_dim,
                # diffusers reads ``attention_head_dim`` as the number of heads (diffusers issue 2011).
                attention_head_dim=config.heads,
                **shape,
            )
        install_skip_dropout(self.unet, config.skip_dropout)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        x = F.pixel_unshuffle(x_t, self.patch) if self.patch > 1 else x_t  # (B, C p^2, H/p, W/p)
        if self.conditioning == "adagn":
            code = tokens.flatten(1)  # (B, N d)
            out = self.unet(x, t, encoder_hidden_states=None, class_labels=code, return_dict=False)[0]
        elif self.conditioning in CODE_MODULATIONS:
            code = tokens.flatten(1)  # (B, N d)
            out = self.unet(x, t, encoder_hidden_states=None, timestep_cond=code, return_dict=False)[0]
        else:
            out = self.unet(x, t, encoder_hidden_states=tokens, return_dict=False)[0]
        return F.pixel_shuffle(out, self.patch) if self.patch > 1 else out  # (B, C, H, W)


def _adagn_unet(config: DenoiserConfig, code_dim: int | None, shape: dict) -> UNet2DConditionModel:
    """The U-Net without cross-attention: self-attention where the transformer blocks were, and the
    concatenated tokens projected into the timestep embedding that drives every scale-shift norm
    (``code_dim`` None: no projection; the code is installed per block, code_modulation.py)."""
    attention = (*config.cross_attention[:-1], True)  # the bottleneck always attends
    head_width = min(c for c, a in zip(config.channels, attention, strict=True) if a) // config.heads
    unet = UNet2DConditionModel(
        down_block_types=tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in config.cross_attention),
        up_block_types=tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(config.cross_attention)),
        attention_head_dim=head_width,  # the head width in diffusers' self-attention blocks
        class_embed_type=None if code_dim is None else "projection",  # MLP(code) added to the temb
        projection_class_embeddings_input_dim=code_dim,
        mid_block_type=None,  # diffusers' attention-free "UNetMidBlock2D" has a single resnet
        **shape,
    )
    # the bottleneck: resnet, self-attention, resnet (as the cross-attention U-Net's, less cross-attention)
    unet.mid_block = UNetMidBlock2D(
        in_channels=config.channels[-1],
        temb_channels=unet.time_embedding.linear_2.out_features,
        dropout=config.dropout,
        num_layers=1,
        resnet_groups=config.norm_groups,
        resnet_time_scale_shift="scale_shift",
        attn_groups=config.norm_groups,
        attention_head_dim=head_width,
    )
    return unet
