"""Diff-AE: a semantic encoder trained end to end through a diffusion model it conditions by AdaGN.

Preechakul et al., "Diffusion Autoencoders: Toward a Meaningful and Decodable Representation",
CVPR 2022 (phizaz/diffae). The whole path, top to bottom:

    x0 (B, C, H, W) -> semantic encoder -> z_sem (B, K)      (the U-Net's down half, pooled)
    t ~ U{0..T-1}, eps ~ N(0, I), x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps
    eps_theta(x_t, t, z_sem): every res block  h = (GN(h) (1 + t_s) + t_b) (1 + z_s)
    loss = |eps - eps_theta|^2                                            -> (loss, terms)

| name here   | paper                                              |
|-------------|----------------------------------------------------|
| units       | z_sem (512 at 64 px; ``units`` here)               |
| tokens      | z_sem as K one-dimensional tokens (B, K, 1)        |
| denoiser    | the conditional DDIM's U-Net (two-condition AdaGN)  |

The units (z_sem) are what the metrics score; ``tokens`` only reshapes them so the sampling path
and the pictures are EncDiff's (``generate``, ``invert``: they need ``denoiser``, ``schedule``,
``noise_shape`` and ``first_stage``, here always None: pixel space only). There is no per-unit
cross-attention, so attention maps are a stated skip.

Deviations: the U-Net is diffusers' (models/denoiser.py) with the code installed per res block
(models/code_modulation.py); the code's projections are default-initialised, not zero (see there).
Unconditional samples (FID) need Diff-AE's second, latent DDIM on z_sem; it is not part of this
model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from diffdrl.diffusion.draws import StepDraws, step_draws
from diffdrl.diffusion.loss import LOSSES, epsilon_loss
from diffdrl.diffusion.schedule import NoiseSchedule, ScheduleConfig
from diffdrl.models.denoiser import Denoiser, DenoiserConfig
from diffdrl.models.encdiff import EncDiff, image_batch
from diffdrl.models.semantic_encoder import SemanticEncoder, SemanticEncoderConfig


@dataclass
class DiffAEDenoiserConfig(DenoiserConfig):
    conditioning: str = "adagn_scale"  # Diff-AE's: z_sem scales every group norm


@dataclass
class DiffAEScheduleConfig(ScheduleConfig):
    name: str = "sqrt_linear"  # betas linear in t (DDPM's), 1e-4 -> 0.02, T = 1000
    beta_start: float = 1.0e-4
    beta_end: float = 0.02


def check_code_model(config, conditioning: str) -> None:
    """What the code-conditioned diffusion models (Diff-AE, InfoDiffusion) validate alike."""
    if config.units < 1:
        raise ValueError(f"model.units must be >= 1, got {config.units}")
    if config.loss not in LOSSES:
        raise ValueError(f"model.loss must be one of {LOSSES}, got {config.loss!r}")
    if config.denoiser.conditioning != conditioning:
        raise ValueError(
            f"model.denoiser.conditioning must be {conditioning!r} for model {config.name!r}, "
            f"got {config.denoiser.conditioning!r}"
        )


@dataclass
class DiffAEConfig:
    """The model; sub-configs hold each component's own defaults (Diff-AE's at 64 px)."""

    name: str = "diffae"
    units: int = 20  # the size of z_sem (Diff-AE: 512; 20 as EncDiff's units, the study's rows)
    loss: str = "mse"  # Diff-AE: plain MSE on epsilon
    encoder: SemanticEncoderConfig = field(default_factory=SemanticEncoderConfig)
    denoiser: DiffAEDenoiserConfig = field(default_factory=DiffAEDenoiserConfig)
    schedule: DiffAEScheduleConfig = field(default_factory=DiffAEScheduleConfig)

    def __post_init__(self):
        if self.name != "diffae":
            raise ValueError(f"DiffAEConfig.name must be 'diffae', got {self.name!r}")
        check_code_model(self, "adagn_scale")


class CodeDiffusion(nn.Module):
    """A diffusion model conditioned on one code (B, K) from an image encoder: what Diff-AE and
    InfoDiffusion share. Subclasses build ``self.encoder`` and may override ``code``."""

    conditions_on_tokens = True  # the trainer logs token reliance: the loss with codes shuffled
    first_stage = None  # pixel space (EncDiff's sampling path reads this)

    def __init__(self, config, resolution: int, channels: int = 3):
        super().__init__()
        self.config, self.resolution, self.channels = config, resolution, channels
        self.noise_shape = (channels, resolution, resolution)
        self.denoiser = Denoiser(config.denoiser, 1, resolution, channels, config.units)
        self.schedule = NoiseSchedule(config.schedule)

    def encode(self, x: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Units (B, K) of images: float (B, C, H, W) in [-1, 1], or uint8 (B, H, W, C)."""
        return self.encode_input(image_batch(x, self.channels, self.resolution, self.schedule.betas.device))

    def encode_input(self, x0: torch.Tensor) -> torch.Tensor:
        """Units (B, K) of a batch in model input form: the encoder's code."""
        return self.encoder(x0)

    def tokens(self, units: torch.Tensor) -> torch.Tensor:
        """The code as the denoiser reads it: K one-dimensional tokens (B, K, 1)."""
        return units[..., None]

    raw_tokens = tokens

    def code(self, x0: torch.Tensor, draws: StepDraws) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """(code the denoiser reads (B, K), regulariser added to the loss, its terms) for a batch."""
        return self.encode_input(x0), 0.0, {}

    def forward(
        self, x0: torch.Tensor, draws: StepDraws | None = None, shuffle_tokens: bool = False
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(loss, terms) for a batch x0 (B, C, H, W) in [-1, 1]; ``draws`` holds the step's t and eps
        (the code's own draws come first). ``shuffle_tokens`` pairs each image
        with another image's code (the token-reliance diagnostic)."""
        draws = step_draws(draws, len(x0), x0.device)
        z, regulariser, terms = self.code(x0, draws)  # (B, K)
        if shuffle_tokens:
            z = z.roll(1, dims=0)
        c = self.tokens(z)  # (B, K, 1)
        loss, _ = epsilon_loss(
            self.conditioned(c),
            x0,
            schedule=self.schedule,
            kind=self.config.loss,
            draws=draws,
        )
        return loss + regulariser, {k: v.detach() for k, v in terms.items()}

    loss = forward

    # -- generation: EncDiff's path (tokens -> sampler -> images), see the module docstring ----
    diffusion_input = EncDiff.diffusion_input
    conditioned = EncDiff.conditioned
    _batches = EncDiff._batches
    generate = EncDiff.generate
    invert = EncDiff.invert


class DiffAE(CodeDiffusion):
    def __init__(self, config: DiffAEConfig, resolution: int, channels: int = 3):
        super().__init__(config, resolution, channels)
        self.encoder = SemanticEncoder(config.encoder, config.units, resolution, channels)
