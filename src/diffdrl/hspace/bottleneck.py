"""h-space access: the U-Net bottleneck h_t (mid-block output) of any of our denoisers.

Kwon et al. (Asyrp, ICLR 2023) call the middle block's output "h-space": a small, semantically
organised space (B, C, s, s) that the decoder half turns into eps. Three operations are needed:

- ``capture``: one ordinary forward pass that also returns h_t and what the decoder half needs
  (the timestep embedding, the tokens, every skip tensor), as a ``DecoderState``;
- ``decode``: the decoder half rerun from h_t + dh on the *same* skip features (about 0.5 of a
  forward pass, so an edited step costs about 1.5 passes);
- ``bottleneck``: h_t as a differentiable function of x_t (or of the tokens) that stops after the
  mid block, for Jacobians (torch.func jvp / vjp) and the isometry loss.

It is generic over diffusers U-Nets (``UNet2DConditionModel``: cross-attention, AdaGN; a latent
denoiser built on one) because it works through hooks on ``unet.mid_block`` and ``unet.up_blocks``
rather than a copy of diffusers' forward: the pre-hooks of the up blocks record each block's
arguments (skips, temb, tokens) and ``decode`` calls the same blocks with them. Only the final
norm / activation / conv_out after the up blocks is repeated here (three lines, as in diffusers).
A model is reached through ``denoise(x_t, t)``, a closure over its tokens (see ``denoiser_of``),
so nothing here knows how a model is conditioned; the unconditional variant is the same closure
with the tokens zeroed (``null_tokens``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from diffdrl.diffusion.schedule import EpsModel


class _StopAtBottleneck(Exception):  # noqa: N818 (control flow, not an error)
    """Raised by the mid-block hook to end a forward pass once h_t exists."""

    def __init__(self, h: torch.Tensor):
        self.h = h


@dataclass
class DecoderState:
    """What the decoder half of one forward pass needs besides h_t: each up block's (args, kwargs)
    with its input ``hidden_states`` left out (it is the previous block's output)."""

    h: torch.Tensor  # (B, C, s, s) the mid-block output
    calls: list[tuple[tuple, dict]]
    eps: torch.Tensor  # the unedited output of the same pass


def require_pixel_space(model: nn.Module) -> None:
    """h-space methods here edit and measure in pixels (x_0, x_t, P_t compared as images); a model that
    diffuses in a first stage's latents is a ``ValueError`` saying so, not a shape error deep inside."""
    if getattr(model, "first_stage", None) is not None:
        raise ValueError(
            "h-space methods need a pixel-space diffusion model: this run diffuses in the latents of its "
            "first stage (model.first_stage.path)"
        )


def unet_of(model: nn.Module) -> nn.Module:
    """The diffusers U-Net inside a model (EncDiff: ``model.denoiser.unet``; a bare U-Net itself)."""
    inner = getattr(getattr(model, "denoiser", None), "unet", None)
    for candidate in (inner, getattr(model, "unet", None), model):
        if candidate is not None and hasattr(candidate, "mid_block") and hasattr(candidate, "up_blocks"):
            if candidate.mid_block is None:
                raise ValueError("the denoiser's U-Net has no mid block, so it has no h-space")
            return candidate
    raise TypeError(
        f"{type(model).__name__} has no diffusers U-Net (mid_block / up_blocks): h-space methods need a "
        "diffusion model such as encdiff"
    )


def denoiser_of(model: nn.Module, tokens: torch.Tensor | None) -> EpsModel:
    """``denoise(x_t, t)`` for an EncDiff-like model under fixed ``tokens`` (B, N, d); ``None`` =
    the unconditional use of the same network, tokens zeroed (``null_tokens``)."""
    if not callable(getattr(model, "denoiser", None)):
        raise TypeError(f"{type(model).__name__} has no denoiser: h-space methods need a diffusion model")
    if tokens is None:
        return lambda x_t, t: model.denoiser(x_t, t, null_tokens(model, len(x_t)).to(x_t))
    return lambda x_t, t: model.denoiser(x_t, t, tokens)


def null_tokens(model: nn.Module, batch: int) -> torch.Tensor:
    """Zero tokens (B, N, d): the "unconditional" reading of a token-conditioned denoiser.

    EncDiff is never trained without tokens, so this is off its training distribution; we use it
    only where a method is defined on an unconditional model and say so in its results."""
    return torch.zeros(batch, model.config.units, model.config.token_dim)


def _contiguous(_module, args):
    return (args[0].contiguous(), *args[1:])


class HSpace:
    """h-space of one U-Net, reached through a ``denoise`` closure that calls it."""

    def __init__(self, unet: nn.Module):
        self.unet = unet
        config = getattr(unet, "config", None)
        if getattr(config, "time_embedding_type", None) == "fourier":
            raise ValueError("U-Nets with Fourier time embeddings rescale their output; not supported")

    # -- one pass with h_t recorded --------------------------------------------------------------

    def capture(self, denoise: EpsModel, x_t: torch.Tensor, t: torch.Tensor) -> DecoderState:
        """eps and h_t of one ordinary pass, with every up block's inputs kept for ``decode``."""
        calls: list[tuple[tuple, dict]] = []
        box: dict[str, torch.Tensor] = {}

        def keep_h(_module, _args, output):
            box["h"] = output

        def keep_call(_module, args, kwargs):
            calls.append((args[1:], {k: v for k, v in kwargs.items() if k != "hidden_states"}))

        handles = [self.unet.mid_block.register_forward_hook(keep_h)]
        handles += [b.register_forward_pre_hook(keep_call, with_kwargs=True) for b in self.unet.up_blocks]
        try:
            eps = denoise(x_t, t)
        finally:
            for handle in handles:
                handle.remove()
        if len(calls) != len(self.unet.up_blocks):
            raise RuntimeError("the U-Net's up blocks were not all called once; cannot replay its decoder")
        return DecoderState(box["h"], calls, eps)

    def decode(self, state: DecoderState, h: torch.Tensor) -> torch.Tensor:
        """eps from bottleneck features ``h`` (e.g. h_t + dh), reusing ``state``'s skip features."""
        if h.shape != state.h.shape:
            raise ValueError(
                f"h must have the bottleneck's shape {tuple(state.h.shape)}, got {tuple(h.shape)}"
            )
        sample = h
        for block, (args, kwargs) in zip(self.unet.up_blocks, state.calls, strict=True):
            # ``forward`` skips the block's pre-hooks: the recorded arguments already went through
            # them (DyGA's skip dropout), and must not be dropped out twice
            sample = (
                block.forward(sample, *args, **kwargs)
                if args
                else block.forward(hidden_states=sample, **kwargs)
            )
        if self.unet.conv_norm_out is not None:
            sample = self.unet.conv_act(self.unet.conv_norm_out(sample))
        return self.unet.conv_out(sample)

    def edited(self, denoise: EpsModel, x_t: torch.Tensor, t: torch.Tensor, dh) -> tuple:
        """(eps(x_t), eps(x_t | h_t + dh), h_t) in 1.5 passes; ``dh`` a tensor or ``dh(h, t)``."""
        state = self.capture(denoise, x_t, t)
        delta = dh(state.h, t) if callable(dh) else dh
        return state.eps, self.decode(state, state.h + delta), state.h

    # -- h_t as a function, for derivatives ------------------------------------------------------

    def bottleneck(self, denoise: EpsModel, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """h_t (B, C, s, s), stopping the pass after the mid block (differentiable, torch.func-safe)."""

        def stop(_module, _args, output):
            raise _StopAtBottleneck(output)

        handles = [self.unet.mid_block.register_forward_hook(stop)]
        # torch's group-norm derivatives (forward mode, double backward) reject the strided maps
        # diffusers' self-attention blocks hand on (AdaGN U-Net); a contiguous copy is the same value
        handles += [
            m.register_forward_pre_hook(_contiguous)
            for m in self.unet.modules()
            if isinstance(m, nn.GroupNorm)
        ]
        try:
            denoise(x_t, t)
        except _StopAtBottleneck as done:
            return done.h
        finally:
            for handle in handles:
                handle.remove()
        raise RuntimeError("the U-Net's mid block was never called")
