"""Cross-attention maps: where in the image each concept token is read (EncDiff's Figure 6).

``CrossAttentionCapture`` wraps every cross-attention layer's processor: the original processor
still computes the layer's output (so outputs stay bit-identical), and the wrapper recomputes the
attention probabilities softmax(q k^T / sqrt(d)) on the side and records them.

A diffusion model's maps come from its denoiser at a few noise levels; EncDec's from its decoder's
one pass (no timesteps). Models without tokens (the VAEs) or without cross-attention (AdaGN) have
no per-token attention, nor has a model that reads its tokens another way and says so in its
``no_attention_reason`` (DisDiff): ``attention_unavailable`` says why.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention

from diffdrl.data.ground_truth import to_model_input
from diffdrl.models.representation import tokens_unavailable
from diffdrl.viz.grid import panels, save_figure
from diffdrl.viz.render import can_sample, resolve_sampling


class _Recorder:
    def __init__(self, inner, maps: list):
        self.inner, self.maps = inner, maps

    def __call__(
        self,
        attn: Attention,
        hidden_states,
        encoder_hidden_states=None,
        attention_mask=None,
        temb=None,
        *args,
        **kwargs,
    ):
        out = self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)
        q = attn.head_to_batch_dim(attn.to_q(hidden_states))  # (B heads, HW, d_head)
        k = attn.head_to_batch_dim(attn.to_k(encoder_hidden_states))  # (B heads, N, d_head)
        probs = attn.get_attention_scores(q, k)  # (B heads, HW, N)
        b = hidden_states.shape[0]
        self.maps.append(probs.reshape(b, attn.heads, *probs.shape[1:]).mean(1).detach())  # (B, HW, N)
        return out


class CrossAttentionCapture:
    """``with CrossAttentionCapture(unet) as maps:`` records (B, HW, N) per cross-attention call."""

    def __init__(self, unet: torch.nn.Module):
        self.layers = [
            m for name, m in unet.named_modules() if isinstance(m, Attention) and name.endswith("attn2")
        ]
        if not self.layers:
            raise ValueError(
                "attention maps need a denoiser that reads its tokens through cross-attention, and this one "
                "has none (AdaGN conditioning, model.denoiser.conditioning='adagn' as in Diff-AE and "
                "InfoDiffusion, feeds the concatenated tokens to the group norms instead, so no per-token "
                "attention exists to show)"
            )
        self.maps: list[torch.Tensor] = []

    def __enter__(self) -> list[torch.Tensor]:
        self.saved = [layer.processor for layer in self.layers]
        for layer in self.layers:
            layer.set_processor(_Recorder(layer.processor, self.maps))
        return self.maps

    def __exit__(self, *exc) -> None:
        for layer, processor in zip(self.layers, self.saved, strict=True):
            layer.set_processor(processor)


def _network(model) -> torch.nn.Module:
    """The network that reads the tokens: a diffusion model's U-Net, or EncDec's decoder."""
    return model.denoiser.unet if can_sample(model) else model.decoder


def attention_unavailable(model) -> str | None:
    """Why ``model`` has no per-token cross-attention to show, or None when it has."""
    if reason := tokens_unavailable(model, "cross-attention maps"):
        return reason
    if reason := getattr(model, "no_attention_reason", None):  # tokens read some other way (DisDiff)
        return reason
    try:
        CrossAttentionCapture(_network(model))
    except ValueError as err:
        return str(err)
    return None


@torch.no_grad()
def attention_maps(
    model, images: np.ndarray, timesteps: tuple[int, ...] | None = None, seed: int = 0
) -> torch.Tensor:
    """(B, N, H, W): each token's attention over the image, averaged over heads, layers and, for a
    diffusion model, ``timesteps`` (default: 10/30/50/70% of T; x_t drawn from q(x_t | x_0) with
    noise from ``seed``), normalised to sum 1. EncDec: its decoder's one pass (no timesteps)."""
    if reason := attention_unavailable(model):
        raise ValueError(reason)
    resolve_sampling(model, timesteps=timesteps)  # timesteps: diffusion models only
    x0 = to_model_input(images).to(next(model.parameters()).device)
    tokens = model.tokens(model.encode(x0))  # (B, N, d)
    total = torch.zeros(len(x0), tokens.shape[1], *x0.shape[2:], device=x0.device)
    for maps in _passes(model, x0, tokens, timesteps, seed):
        for m in maps:
            side = int(round(m.shape[1] ** 0.5))
            m = m.transpose(1, 2).reshape(len(x0), -1, side, side)  # (B, N, h, w)
            total += F.interpolate(m, size=x0.shape[2:], mode="bilinear", align_corners=False)
    return total / total.sum(dim=(2, 3), keepdim=True)


def _passes(model, x0: torch.Tensor, tokens: torch.Tensor, timesteps, seed: int):
    """The recorded maps of each forward pass of the network that reads the tokens."""
    if not can_sample(model):  # EncDec: the decoder reads the tokens once
        with CrossAttentionCapture(model.decoder) as maps:
            model.decoder(tokens)
        yield maps
        return
    T = model.schedule.timesteps
    timesteps = timesteps or tuple(int(f * T) for f in (0.1, 0.3, 0.5, 0.7))
    if any(not 0 <= t < T for t in timesteps):
        raise ValueError(f"timesteps must lie in [0, {T}), got {timesteps}")
    gen = torch.Generator(x0.device).manual_seed(seed)
    z0 = model.diffusion_input(x0)  # latents with a first stage: maps at latent resolution, upsampled
    for t in timesteps:
        t_batch = torch.full((len(x0),), t, device=x0.device, dtype=torch.long)
        x_t = model.schedule.q_sample(z0, t_batch, torch.randn(z0.shape, generator=gen, device=x0.device))
        with CrossAttentionCapture(model.denoiser.unet) as maps:
            model.denoiser(x_t, t_batch, tokens)
        yield maps


def save_attention(
    images: np.ndarray,
    maps: torch.Tensor,
    path: str | Path,
    names: list[str] | None = None,
    units: list[int] | None = None,
) -> Path:
    """A figure: each row an image, then one overlay per token (``units`` chooses which)."""
    maps = maps.cpu().numpy()
    units = list(range(maps.shape[1])) if units is None else units
    names = names or [f"unit {i}" for i in range(maps.shape[1])]
    rows, cols = len(images), len(units) + 1
    figure, axes = panels(rows * cols, cols, 1.1, 1.2)
    grid = axes.reshape(rows, cols)
    for r in range(rows):
        grid[r, 0].imshow(images[r])
        for c, unit in enumerate(units, start=1):
            grid[r, c].imshow(images[r])
            grid[r, c].imshow(maps[r, unit], cmap="jet", alpha=0.55, interpolation="bilinear")
            if r == 0:
                grid[r, c].set_title(names[unit].replace(": ", "\n"), fontsize=6)
    for ax in grid.flat:
        ax.set_axis_off()
    grid[0, 0].set_title("image", fontsize=6)
    figure.suptitle("cross-attention of each token (averaged over heads, layers, timesteps)", fontsize=8)
    return save_figure(figure, path)
