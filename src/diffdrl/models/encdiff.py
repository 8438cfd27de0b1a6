"""EncDiff: an encoder trained end to end through a diffusion model conditioned on its units.

Yang et al., "Diffusion Model with Cross Attention as an Inductive Bias for Disentanglement",
NeurIPS 2024. The whole path, top to bottom:

    x0 (B, C, H, W) -> encoder -> s (B, N) -> token bank -> c (B, N, d) -> [anchors] -> c' (B, N, d)
    t ~ U{0..T-1}, eps ~ N(0, I), x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps
    loss = |eps - eps_theta(x_t, t, c)|        (L1 as released; MSE as in the paper)

| name here   | paper            |
|-------------|------------------|
| units  s    | z (N scalars)    |
| tokens c    | concept tokens   |
| denoiser    | eps_theta (U-Net with cross-attention over c) |
| anchors     | DyGA's Gaussian anchors (Jun et al., WACV 2025); identity unless enabled |

Deviation: pixel space by default (the paper's latent VQ stage is a separate module); the paper
reports pixel space works as well on Shapes3D (METHODS.md).

The paper's ablations are config values (presets ``*-adagn``, ``*-encdiffv``): AdaGN conditioning
(``denoiser.conditioning``, see denoiser.py) and EncDiff-V (``token_bank.kind="vector"``): the
encoder emits N d features, cut into the N tokens, so ``encode`` returns (B, N d), the flattened
token vectors, and the metrics see those; each token's PCA-1, the paper's evaluation of EncDiff-V,
is ``api.representation(model, kind="tokens", data=...)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from diffdrl.data.ground_truth import to_model_input
from diffdrl.diffusion.loss import LOSSES, WEIGHTINGS, epsilon_loss
from diffdrl.diffusion.samplers import ddim_invert, sample
from diffdrl.diffusion.schedule import NoiseSchedule, ScheduleConfig, make_betas
from diffdrl.hspace.isometry import IsometryConfig, isometric_loss
from diffdrl.models.anchoring import AnchoringConfig, GaussianAnchors
from diffdrl.models.denoiser import Denoiser, DenoiserConfig
from diffdrl.models.encoder import Encoder, EncoderConfig
from diffdrl.models.token_bank import TokenBank, TokenBankConfig


@dataclass
class EncDiffConfig:
    """The model; sub-configs hold each component's own defaults."""

    name: str = "encdiff"
    units: int = 20
    token_dim: int = 16
    loss: str = "l1"
    loss_weighting: str = "none"  # paper: none; see diffusion/loss.py's WEIGHTINGS
    # The encoder and token bank learn only through cross-attention, a weak signal early on; this
    # multiplies their learning rate (1 = the paper's single rate for every parameter).
    encoder_lr_scale: float = 1.0
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    token_bank: TokenBankConfig = field(default_factory=TokenBankConfig)
    denoiser: DenoiserConfig = field(default_factory=DenoiserConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    anchoring: AnchoringConfig = field(default_factory=AnchoringConfig)
    # Hahm et al.'s isometric regulariser of h-space (hspace/isometry.py); weight 0 = off, the paper
    isometry: IsometryConfig = field(default_factory=IsometryConfig)

    def __post_init__(self):
        if self.name != "encdiff":
            raise ValueError(f"EncDiffConfig.name must be 'encdiff', got {self.name!r}")
        if self.units < 1:
            raise ValueError(f"model.units must be >= 1, got {self.units}")
        if self.token_dim < 1:
            raise ValueError(f"model.token_dim must be >= 1, got {self.token_dim}")
        if self.loss not in LOSSES:
            raise ValueError(f"model.loss must be one of {LOSSES}, got {self.loss!r}")
        if self.loss_weighting not in WEIGHTINGS:
            raise ValueError(f"model.loss_weighting must be one of {WEIGHTINGS}, got {self.loss_weighting!r}")
        if not self.encoder_lr_scale > 0:
            raise ValueError(f"model.encoder_lr_scale must be > 0, got {self.encoder_lr_scale}")


def image_batch(x: torch.Tensor | np.ndarray, channels: int, resolution: int, device) -> torch.Tensor:
    """Images as the encoder takes them, float (B, C, H, W) in [-1, 1] on ``device``, from float
    images or uint8 (B, H, W, C); other shapes are a ``ValueError``."""
    if isinstance(x, np.ndarray) or x.dtype == torch.uint8:
        x = to_model_input(x)
    x = x.to(device)
    if x.shape[1:] != (channels, resolution, resolution):
        raise ValueError(
            f"expected images of shape (B, {channels}, {resolution}, {resolution}), got {tuple(x.shape)}"
        )
    return x


class EncDiff(nn.Module):
    conditions_on_tokens = True

    def __init__(self, config: EncDiffConfig, resolution: int, channels: int = 3):
        super().__init__()
        self.config, self.resolution, self.channels = config, resolution, channels
        features = config.token_bank.in_features(config.units, config.token_dim)  # N (EncDiff-V: N d)
        self.encoder = Encoder(config.encoder, features, resolution, channels)
        self.token_bank = TokenBank(config.token_bank, config.units, config.token_dim)
        self.anchors = GaussianAnchors(config.anchoring, config.units, config.token_dim)
        self.denoiser = Denoiser(config.denoiser, config.token_dim, resolution, channels, config.units)
        self.schedule = NoiseSchedule(config.schedule)

    def param_groups(self, lr: float) -> list[dict]:
        """One group at ``lr``, or with ``encoder_lr_scale`` != 1 the encoder and token bank in a
        group of their own at the scaled rate (one group keeps older checkpoints loadable)."""
        scale = self.config.encoder_lr_scale
        if scale == 1.0:
            return [{"params": list(self.parameters()), "lr": lr}]
        own = [*self.encoder.parameters(), *self.token_bank.parameters()]
        ids = {id(p) for p in own}
        rest = [p for p in self.parameters() if id(p) not in ids]
        return [{"params": own, "lr": lr * scale}, {"params": rest, "lr": lr}]

    def encode(self, x: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Units s (B, N) of images (EncDiff-V: (B, N d)): float (B, C, H, W) in [-1, 1], or uint8
        (B, H, W, C)."""
        return self.encoder(image_batch(x, self.channels, self.resolution, self.schedule.betas.device))

    def raw_tokens(self, units: torch.Tensor) -> torch.Tensor:
        """Tokens before anchoring (what DyGA's mixtures are fitted on; EncDiff-V: the units cut)."""
        return self.token_bank(units)  # (B, N, d)

    def tokens(self, units: torch.Tensor) -> torch.Tensor:
        """The tokens the denoiser reads: anchored when DyGA is on and fitted."""
        return self.anchors(self.token_bank(units))  # (B, N, d)

    def forward(
        self, x0: torch.Tensor, generator: torch.Generator | None = None, shuffle_tokens: bool = False
    ) -> torch.Tensor:
        """The training loss for a batch x0 in [-1, 1].

        ``shuffle_tokens`` pairs each image with another image's tokens: the rise in loss it
        causes measures how much the denoiser relies on the tokens (a cheap diagnostic).
        """
        c = self.tokens(self.encoder(x0))  # (B, N, d)
        if shuffle_tokens:
            c = c.roll(1, dims=0)
        elif self.config.isometry.weight > 0 and self.training:
            return isometric_loss(self, x0, c, generator)  # gated: some steps add L_iso
        return epsilon_loss(
            lambda x_t, t: self.denoiser(x_t, t, c),
            x0,
            self.schedule,
            self.config.loss,
            generator,
            self.config.loss_weighting,
        )

    loss = forward

    # -- generation: tokens (possibly edited) -> sampler -> images ------------------------------

    def _batches(self, tokens: torch.Tensor, x: torch.Tensor, batch_size: int):
        for i in range(0, len(tokens), batch_size):
            c = tokens[i : i + batch_size]
            yield (lambda x_t, t, c=c: self.denoiser(x_t, t, c)), x[i : i + batch_size]

    @torch.no_grad()
    def generate(
        self,
        tokens: torch.Tensor,
        sampler: str = "ddim",
        steps: int = 50,
        eta: float = 0.0,
        seed: int = 0,
        x_T: torch.Tensor | None = None,
        batch_size: int = 256,
        progress: bool = False,
    ) -> torch.Tensor:
        """Images (B, C, H, W) in [-1, 1] denoised from ``x_T`` (default: N(0, I) drawn from ``seed``)
        under ``tokens`` (B, N, d). Same seed and tokens give the same images."""
        device = self.schedule.betas.device
        tokens = tokens.to(device)
        gen = torch.Generator(device).manual_seed(seed)
        if x_T is None:
            shape = (len(tokens), self.channels, self.resolution, self.resolution)
            x_T = torch.randn(shape, generator=gen, device=device)
        betas = make_betas(self.config.schedule)
        parts = [
            sample(denoise, x, betas, sampler, steps, eta, gen, progress)
            for denoise, x in self._batches(tokens, x_T.to(device), batch_size)
        ]
        return torch.cat(parts)

    @torch.no_grad()
    def invert(
        self, x0: torch.Tensor, tokens: torch.Tensor, steps: int = 50, batch_size: int = 256
    ) -> torch.Tensor:
        """Deterministic DDIM inversion of images x0 (B, C, H, W) under their tokens: the x_T from
        which ``generate(tokens, 'ddim', steps, eta=0, x_T=...)`` retraces x0 (faithful edits)."""
        betas = make_betas(self.config.schedule)
        device = self.schedule.betas.device
        parts = [
            ddim_invert(denoise, x, betas, steps)
            for denoise, x in self._batches(tokens.to(device), x0.to(device), batch_size)
        ]
        return torch.cat(parts)
