"""An unconditional denoiser eps_theta(x_t, t): EncDiff's U-Net trained without tokens (Ho et al.,
NeurIPS 2020), the frozen pre-trained model DisDiff starts from (models/disdiff.py).

A model of its own (``model.name: ddpm``) rather than an EncDiff option: it has no encoder, units
or tokens, so it cannot keep EncDiff's contract (``encode`` -> units), and DisDiff must be able to
tell "a run that is an unconditional denoiser" from an EncDiff run by its name alone.

The U-Net is EncDiff's (``UNetShape``: levels, widths, blocks, heads, groups) with self-attention
where EncDiff has its transformer blocks (``cross_attention[i]`` marks the attention levels here
too, so a ``tiny-cpu`` U-Net shape carries over unchanged), and a self-attention bottleneck, as
the AdaGN ablation's U-Net; built from diffusers' ``UNet2DModel``, whose parts (``time_embedding``,
``down_blocks``, ``mid_block``, ``up_blocks``, ``conv_out``) DisDiff's gradient-field decoder reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from diffusers import UNet2DModel
from torch import nn

from diffdrl.diffusion.draws import StepDraws
from diffdrl.diffusion.loss import LOSSES, epsilon_loss
from diffdrl.diffusion.samplers import DEFAULT_SAMPLING, sample
from diffdrl.diffusion.schedule import NoiseSchedule, ScheduleConfig, make_betas
from diffdrl.models.denoiser import UNetShape


@dataclass
class UnconditionalUNetConfig(UNetShape):
    """The U-Net's shape (``UNetShape``; ``cross_attention[i]``: self-attention at level i) and
    LDM's scale-shift norm of the timestep embedding."""

    scale_shift_norm: bool = True


@dataclass
class DDPMConfig:
    """The unconditional denoiser; the schedule is the one DisDiff inherits from the run."""

    name: str = "ddpm"
    loss: str = "l1"  # as EncDiff's released objective; "mse" is Ho et al.'s
    denoiser: UnconditionalUNetConfig = field(default_factory=UnconditionalUNetConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)

    def __post_init__(self):
        if self.name != "ddpm":
            raise ValueError(f"DDPMConfig.name must be 'ddpm', got {self.name!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"model.loss must be one of {LOSSES}, got {self.loss!r}")


def unconditional_unet(config: UnconditionalUNetConfig, resolution: int, channels: int = 3) -> UNet2DModel:
    """diffusers' ``UNet2DModel`` of this shape: self-attention at the flagged levels and in the
    bottleneck; heads of a fixed width (the narrowest attention level's channels / ``heads``)."""
    config.bottleneck_side(resolution)
    attention = (*config.cross_attention[:-1], True)
    head_width = min(c for c, a in zip(config.channels, attention, strict=True) if a) // config.heads
    return UNet2DModel(
        sample_size=resolution,
        in_channels=channels,
        out_channels=channels,
        block_out_channels=tuple(config.channels),
        down_block_types=tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in config.cross_attention),
        up_block_types=tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(config.cross_attention)),
        layers_per_block=config.layers_per_block,
        attention_head_dim=head_width,
        norm_num_groups=config.norm_groups,
        dropout=config.dropout,
        resnet_time_scale_shift="scale_shift" if config.scale_shift_norm else "default",
    )


class DDPM(nn.Module):
    """eps_theta(x_t, t) trained with the plain epsilon loss; no units (``encode`` refuses)."""

    has_units = False  # an unconditional denoiser: nothing to encode, score or swap

    def __init__(self, config: DDPMConfig, resolution: int, channels: int = 3):
        super().__init__()
        self.config, self.resolution, self.channels = config, resolution, channels
        self.noise_shape = (channels, resolution, resolution)
        self.unet = unconditional_unet(config.denoiser, resolution, channels)
        self.schedule = NoiseSchedule(config.schedule)

    def denoise(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.unet(x_t, t, return_dict=False)[0]  # (B, C, H, W)

    def forward(
        self, x0: torch.Tensor, draws: StepDraws | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(loss, terms) of the plain epsilon loss (``diffusion.loss.epsilon_loss``); no terms."""
        return epsilon_loss(self.denoise, x0, schedule=self.schedule, kind=self.config.loss, draws=draws)

    def encode(self, x) -> torch.Tensor:
        raise ValueError(
            "model 'ddpm' is an unconditional denoiser with no units to encode or score; it is the "
            "pre-trained model of DisDiff (model.name=disdiff, model.pretrained.path=<this run>)"
        )

    @torch.no_grad()
    def sample_images(
        self,
        count: int,
        sampler: str = DEFAULT_SAMPLING.sampler,
        steps: int = DEFAULT_SAMPLING.steps,
        eta: float = DEFAULT_SAMPLING.eta,
        seed: int = 0,
    ) -> torch.Tensor:
        """``count`` unconditional samples (B, C, H, W) in [-1, 1] from noise drawn from ``seed``."""
        device = self.schedule.betas.device
        gen = torch.Generator(device).manual_seed(seed)
        x_T = torch.randn((count, *self.noise_shape), generator=gen, device=device)
        betas: np.ndarray = make_betas(self.config.schedule)
        return sample(self.denoise, x_T, betas, sampler, steps, eta, gen)
