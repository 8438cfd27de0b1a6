"""Two-condition AdaGN: every res block of a diffusers U-Net modulated by the timestep and by a code.

Diff-AE (Preechakul et al., CVPR 2022) and InfoDiffusion (Wang et al., ICML 2023) read their code
through the group norm of every res block, after the timestep's scale-shift:

    h = GN(h) (1 + t_s) + t_b                       (the timestep, as LDM's scale-shift norm)
    h = h (1 + z_s)         z_s = Linear(SiLU(z))               (Diff-AE: a scale only)
    h = h (1 + z_s) + z_b   (z_s, z_b) = Linear(SiLU(z))        (InfoDiffusion: scale and shift)

Both are one affine map of GN(h), so they fit diffusers' ``ResnetBlock2D`` unchanged: its
``time_emb_proj`` is swapped for ``CodeModulation``, which returns the combined scale and shift

    scale = (1 + t_s)(1 + z_s) - 1,    shift = t_b (1 + z_s) + z_b,

and the block computes GN(h) (1 + scale) + shift, exactly the two steps above. The code reaches
every block stateless: the time embedding is wrapped to return [temb, z] (the U-Net's
``timestep_cond`` carries z), the block applies SiLU to the whole, and ``CodeModulation`` splits
it again, so the code's projection sees SiLU(z) as in Diff-AE's ``cond_emb_layers``.

The code's projections keep PyTorch's default initialisation, not zero: a zero-initialised scale
gives the encoder no gradient on the first step (phizaz/diffae #63, #77).
"""

from __future__ import annotations

import torch
from diffusers.models.resnet import ResnetBlock2D
from torch import nn


class _TimeAndCode(nn.Module):
    """The U-Net's time embedding, returning [temb, code]: ``forward(t_emb, code)`` (B, D + K)."""

    def __init__(self, time_embedding: nn.Module):
        super().__init__()
        self.inner = time_embedding

    def forward(self, t_emb: torch.Tensor, code: torch.Tensor | None = None) -> torch.Tensor:
        if code is None:
            raise ValueError("a code-modulated U-Net needs its code (timestep_cond)")
        temb = self.inner(t_emb)
        return torch.cat([temb, code.to(temb.dtype)], dim=1)  # (B, D + K)


class CodeModulation(nn.Module):
    """A res block's ``time_emb_proj`` extended by the code: SiLU([temb, z]) (B, D + K) -> the
    combined (scale, shift) (B, 2C) of the module docstring."""

    def __init__(self, time_proj: nn.Linear, code_dim: int, shift: bool):
        super().__init__()
        self.time_proj, self.shift = time_proj, shift
        self.time_dim = time_proj.in_features
        channels = time_proj.out_features // 2
        self.code_proj = nn.Linear(code_dim, channels * (2 if shift else 1))

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        t_s, t_b = self.time_proj(emb[:, : self.time_dim]).chunk(2, dim=1)  # (B, C) each
        code = self.code_proj(emb[:, self.time_dim :])  # SiLU(z) -> (B, C) or (B, 2C)
        z_s, z_b = code.chunk(2, dim=1) if self.shift else (code, 0.0)
        return torch.cat([(1 + t_s) * (1 + z_s) - 1, t_b * (1 + z_s) + z_b], dim=1)


def install_code_modulation(unet: nn.Module, code_dim: int, shift: bool) -> None:
    """Make every scale-shift res block of a diffusers U-Net also read a (B, ``code_dim``) code
    passed as ``timestep_cond``: a scale (Diff-AE) or, with ``shift``, a scale and shift
    (InfoDiffusion)."""
    blocks = [m for m in unet.modules() if isinstance(m, ResnetBlock2D) and m.time_emb_proj is not None]
    if not blocks or any(b.time_embedding_norm != "scale_shift" for b in blocks):
        raise ValueError("code modulation needs a U-Net whose res blocks use scale-shift norms")
    for block in blocks:
        block.time_emb_proj = CodeModulation(block.time_emb_proj, code_dim, shift)
    unet.time_embedding = _TimeAndCode(unet.time_embedding)
