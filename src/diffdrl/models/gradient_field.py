"""DisDiff's decoder of gradient fields g_c(x_t, t, z_c), one per chunk z_c, beside a frozen U-Net.

Yang et al., "DisDiff: Unsupervised Disentanglement of Diffusion Probabilistic Models", NeurIPS 2023
(BASELINES.md). The frozen U-Net's down half runs once (``frozen_pass``, no gradient); the decoder
is a trainable network of the shape of its bottleneck and up half (mid block, up blocks, output
head: built fresh from the same diffusers config, with the output conv zeroed so g = 0 and eps =
eps_frozen at the start, as released) that reads the frozen features and skips. Each of its res
blocks applies the time scale-shift and then a second scale-shift from the chunk:

    h <- (GN(h) (1 + s_t) + b_t) (1 + s_z) + b_z

done by replacing each copied block's ``time_emb_proj`` with ``TwoConditionProjection``, which
composes both into one (scale, shift) for diffusers' own block: the embedding handed down is
[time embedding + part embedding, chunk embedding], and SiLU of it feeds both projections, as
DisDiff's ``emb_layers`` and ``cond_emb_layers`` do.

A chunk's identity is its part embedding: row c of the orthogonal matrix expm(W - W^T) (W is
D/2 x D/2, D the time-embedding width), through a linear layer to D, added to the time embedding.

Vectorised over chunks: every (sample, chunk) pair is one row of one batch (rows index the
samples' frozen features), so the N chunks of B images are a single decoder call on N B rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers import UNet2DModel
from diffusers.models.resnet import ResnetBlock2D
from torch import nn


@dataclass
class FrozenFeatures:
    """What the frozen U-Net computed for x_t: its epsilon, its bottleneck input h (B, C, h, w),
    the skips of its down half and its time embedding (B, D)."""

    eps: torch.Tensor
    h: torch.Tensor
    skips: tuple[torch.Tensor, ...]
    emb: torch.Tensor

    def rows(self, index: torch.Tensor) -> FrozenFeatures:
        """The features of samples ``index`` (R,), one row each (repeats allowed)."""
        return FrozenFeatures(
            self.eps[index], self.h[index], tuple(s[index] for s in self.skips), self.emb[index]
        )


def _up_path(mid, ups, norm, act, conv, h, skips, emb) -> torch.Tensor:
    """A U-Net's bottleneck and up half (diffusers' ``UNet2DModel.forward``, steps 4-6)."""
    h = mid(h, emb)
    for block in ups:
        n = len(block.resnets)
        h, skips = block(h, skips[-n:], emb), skips[:-n]
    return conv(act(norm(h)))


@torch.no_grad()
def frozen_pass(unet: UNet2DModel, x_t: torch.Tensor, t: torch.Tensor) -> FrozenFeatures:
    """One pass of the frozen U-Net (``UNet2DModel.forward`` unrolled), keeping what the decoder reads."""
    emb = unet.time_embedding(unet.time_proj(t).to(x_t.dtype))  # (B, D)
    h = unet.conv_in(x_t)
    skips = (h,)
    for block in unet.down_blocks:
        h, res = block(hidden_states=h, temb=emb)
        skips += res
    eps = _up_path(
        unet.mid_block, unet.up_blocks, unet.conv_norm_out, unet.conv_act, unet.conv_out, h, skips, emb
    )
    # diffusers' attention blocks hand back channels-last strides; on CPU, GroupNorm's backward
    # through such an input crashes the process (torch 2.13), so the decoder gets contiguous ones
    return FrozenFeatures(eps, h.contiguous(), tuple(s.contiguous() for s in skips), emb)


class TwoConditionProjection(nn.Module):
    """A res block's ``time_emb_proj`` that also reads a chunk embedding. With scale-shift norm:
    (GN(h) (1 + s_t) + b_t) (1 + s_z) + b_z = GN(h) (1 + s) + b with 1 + s = (1 + s_t)(1 + s_z),
    b = b_t (1 + s_z) + b_z; without it, the two shifts add."""

    def __init__(self, time: nn.Linear, cond_dim: int, scale_shift: bool):
        super().__init__()
        self.time, self.scale_shift = time, scale_shift
        self.time_dim = time.in_features
        self.cond = nn.Linear(cond_dim, time.out_features)

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        a_t, a_z = a.split([self.time_dim, a.shape[1] - self.time_dim], dim=1)  # SiLU already applied
        if not self.scale_shift:
            return self.time(a_t) + self.cond(a_z)
        s_t, b_t = self.time(a_t).chunk(2, dim=1)
        s_z, b_z = self.cond(a_z).chunk(2, dim=1)
        return torch.cat([(1 + s_t) * (1 + s_z) - 1, b_t * (1 + s_z) + b_z], dim=1)


class GradientFieldDecoder(nn.Module):
    """g(rows of frozen features, chunk z (R, d), part index (R,)) -> (R, C, H, W)."""

    def __init__(self, frozen: UNet2DModel, num_chunks: int, chunk_dim: int):
        super().__init__()
        fresh = UNet2DModel.from_config(frozen.config)  # the frozen U-Net's shape, new weights
        self.mid_block, self.up_blocks = fresh.mid_block, fresh.up_blocks
        self.norm_out, self.act, self.conv_out = fresh.conv_norm_out, fresh.conv_act, fresh.conv_out
        nn.init.zeros_(self.conv_out.weight)  # g = 0 at the start
        nn.init.zeros_(self.conv_out.bias)
        width = frozen.time_embedding.linear_2.out_features  # D
        scale_shift = frozen.config.resnet_time_scale_shift == "scale_shift"
        for block in self.modules():
            if isinstance(block, ResnetBlock2D):
                block.time_emb_proj = TwoConditionProjection(block.time_emb_proj, width, scale_shift)
        self.num_chunks = num_chunks
        self.chunk_embed = nn.Linear(chunk_dim, width)  # DisDiff's repre_embed
        self.part_weight = nn.Parameter(torch.randn(width // 2, width // 2))  # W of expm(W - W^T)
        self.part_embed = nn.Linear(width // 2, width)

    def part_embeddings(self) -> torch.Tensor:
        """(N, D): rows of the orthogonal expm(W - W^T) (W - W^T is skew-symmetric), projected."""
        w = self.part_weight
        return self.part_embed(torch.linalg.matrix_exp(w - w.T)[: self.num_chunks])

    def forward(self, features: FrozenFeatures, z: torch.Tensor, part: torch.Tensor) -> torch.Tensor:
        """g for rows of ``features`` (``FrozenFeatures.rows``), each under chunk z (R, d) and part
        index (R,)."""
        emb = torch.cat([features.emb + self.part_embeddings()[part], self.chunk_embed(z)], dim=1)  # (R, 2D)
        return _up_path(
            self.mid_block, self.up_blocks, self.norm_out, self.act, self.conv_out,
            features.h, features.skips, emb,
        )  # fmt: skip
