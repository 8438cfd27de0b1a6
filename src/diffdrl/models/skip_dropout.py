"""Skip Dropout: drop whole channels of the U-Net's skip connections while training.

Jun et al., "Disentangling Disentangled Representations", WACV 2025 (METHODS.md). The high-resolution
skips let the decoder rebuild an image without reading the tokens; zeroing some of their channels
(mask per sample x channel, Bernoulli keep 1 - rate, survivors scaled by 1 / (1 - rate)) pushes the
denoiser to rely on cross-attention instead. Identity in eval mode.

Where the skips are, in diffusers' ``UNet2DConditionModel.forward``: the down path collects
``down_block_res_samples`` (conv_in's output, each down block's resnet outputs and its downsampler
output), and up block j receives the last ``len(resnets)`` of them as ``res_hidden_states_tuple``,
concatenating each onto its main path. With the standard layout every skip an up block receives has
that up block's resolution, so "level L" (0 = full resolution) is ``up_blocks[-1 - L]``. A forward
pre-hook on that up block replaces the tuple by its dropped-out copy: only the skip copies change,
never the down path's own tensors, and no diffusers code is copied.

Levels count resolutions of the denoiser's input: the released code's (0, 1) hit the 16x16 and 8x8
skips of a 16x16 latent; in pixel space at 64x64 they hit 64x64 and 32x32.
"""

from __future__ import annotations

from dataclasses import dataclass

from diffusers import UNet2DConditionModel
from torch import nn
from torch.nn.functional import dropout2d
from torch.utils.hooks import RemovableHandle


@dataclass
class SkipDropoutConfig:
    """Rate of channel dropout on the skips of the given resolution levels (0 = full resolution).
    ``rate`` 0 is off; the released code uses 0.2 on levels (0, 1)."""

    rate: float = 0.0
    levels: tuple[int, ...] = (0, 1)

    def __post_init__(self):
        if not 0.0 <= self.rate < 1.0:
            raise ValueError(f"skip_dropout.rate must be in [0, 1), got {self.rate}")
        if any(level < 0 for level in self.levels) or len(set(self.levels)) != len(self.levels):
            raise ValueError(f"skip_dropout.levels must be distinct levels >= 0, got {self.levels}")


class _DropSkips:
    """Forward pre-hook of one up block: channel dropout on the skip tensors it is given."""

    def __init__(self, rate: float):
        self.rate = rate

    def __call__(self, block: nn.Module, args: tuple, kwargs: dict):
        if not block.training:
            return None
        if "res_hidden_states_tuple" in kwargs:
            kwargs["res_hidden_states_tuple"] = self.drop(kwargs["res_hidden_states_tuple"])
        else:  # positional: forward(hidden_states, res_hidden_states_tuple, ...)
            args = (args[0], self.drop(args[1]), *args[2:])
        return args, kwargs

    def drop(self, skips: tuple) -> tuple:
        # dropout2d zeroes whole channels of (B, C, H, W) per sample, from torch's global RNG
        return tuple(dropout2d(s, self.rate, training=True) for s in skips)


def install_skip_dropout(unet: UNet2DConditionModel, config: SkipDropoutConfig) -> list[RemovableHandle]:
    """Add Skip Dropout to ``unet`` in place (nothing when ``config.rate`` is 0).

    Returns the hooks' handles; ``handle.remove()`` takes it out again. The hooks are plain objects,
    so ``copy.deepcopy`` of the model keeps them.
    """
    levels = len(unet.up_blocks)
    bad = [level for level in config.levels if level >= levels]
    if bad:
        raise ValueError(f"skip_dropout.levels must be < {levels} (the U-Net's levels), got {config.levels}")
    if config.rate == 0.0:
        return []
    return [
        unet.up_blocks[levels - 1 - level].register_forward_pre_hook(
            _DropSkips(config.rate), with_kwargs=True
        )
        for level in config.levels
    ]
