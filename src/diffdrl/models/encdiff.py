"""EncDiff: an encoder trained end to end through a diffusion model conditioned on its units.

Yang et al., "Diffusion Model with Cross Attention as an Inductive Bias for Disentanglement",
NeurIPS 2024. The whole path, top to bottom:

    x0 (B, C, H, W) -> encoder -> s (B, N) -> token bank -> c (B, N, d) -> [anchors] -> c' (B, N, d)
    t ~ p(t), eps ~ N(0, I), x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps
    loss = |eps - eps_theta(x_t, t, c')|       (L1 as released; MSE as in the paper, eq. 3)
           [+ regularisers: isometry of h-space, decorrelation of the units]  -> (loss, terms)

| name here   | paper            |
|-------------|------------------|
| units  s    | z (N scalars)    |
| tokens c    | concept tokens   |
| denoiser    | eps_theta (U-Net with cross-attention over c) |
| anchors     | DyGA's Gaussian anchors (Jun et al., WACV 2025); identity unless enabled |

Space: pixels by default; with ``first_stage.path`` the diffusion runs on z0 = scale E(x0), the
latents of a frozen first stage (models/latent_space.py), as both papers do. The encoder still
reads the pixels x0; generation samples latents and decodes them, D(z0 / scale). The paper reports
pixel space works as well on Shapes3D (METHODS.md).

The paper's ablations are config values (presets ``*-adagn``, ``*-encdiffv``): AdaGN conditioning
(``denoiser.conditioning``, see denoiser.py) and EncDiff-V (``token_bank.kind="vector"``): the
encoder emits N d features, cut into the N tokens, so ``encode`` returns (B, N d), the flattened
token vectors, and the metrics see those; each token's PCA-1, the paper's evaluation of EncDiff-V,
is ``representation(model, kind="tokens", data=...)`` (``models.representation``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from diffdrl.data.ground_truth import to_model_input
from diffdrl.diffusion.draws import StepDraws, step_draws
from diffdrl.diffusion.loss import LOSSES, WEIGHTINGS, epsilon_loss
from diffdrl.diffusion.samplers import DEFAULT_SAMPLING, ddim_invert, sample
from diffdrl.diffusion.schedule import NoiseSchedule, ScheduleConfig, make_betas
from diffdrl.hspace.isometry import IsometryConfig, isometry_step
from diffdrl.models.anchoring import AnchoringConfig, GaussianAnchors
from diffdrl.models.decorrelation import decorrelation_penalty
from diffdrl.models.denoiser import Denoiser, DenoiserConfig
from diffdrl.models.encoder import Encoder, EncoderConfig
from diffdrl.models.latent_space import FirstStageConfig, FrozenFirstStage
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
    # Weight of a penalty on the batch correlation between units, added to the loss (0 = the paper;
    # models/decorrelation.py). A cheap independence prior for small budgets.
    decorrelation: float = 0.0
    # Standardise each unit over the batch (BatchNorm without affine; running statistics at eval)
    # before the token bank, so no unit can shrink to nothing or dominate by scale (paper: false).
    unit_norm: bool = False
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    token_bank: TokenBankConfig = field(default_factory=TokenBankConfig)
    denoiser: DenoiserConfig = field(default_factory=DenoiserConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    anchoring: AnchoringConfig = field(default_factory=AnchoringConfig)
    first_stage: FirstStageConfig = field(default_factory=FirstStageConfig)  # latent diffusion when set
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
        if not self.decorrelation >= 0:
            raise ValueError(f"model.decorrelation must be >= 0, got {self.decorrelation}")
        if self.decorrelation and self.units < 2:
            raise ValueError(f"model.decorrelation needs model.units >= 2, got {self.units}")


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
        path = config.first_stage.path
        self.first_stage = FrozenFirstStage(path, resolution, channels) if path else None
        # (C, H, W) of what is diffused and of the sampler's x_T: latents or pixels
        self.noise_shape = self.first_stage.latent_shape if path else (channels, resolution, resolution)
        features = config.token_bank.in_features(config.units, config.token_dim)  # N (EncDiff-V: N d)
        self.encoder = Encoder(config.encoder, features, resolution, channels)
        if config.unit_norm:  # a module only when on, so older checkpoints keep their keys
            self.unit_norm = nn.BatchNorm1d(features, affine=False)
        self.token_bank = TokenBank(config.token_bank, config.units, config.token_dim)
        self.anchors = GaussianAnchors(config.anchoring, config.units, config.token_dim)
        c, side, _ = self.noise_shape
        self.denoiser = Denoiser(config.denoiser, config.token_dim, side, c, config.units)
        self.schedule = NoiseSchedule(config.schedule)

    def param_groups(self, lr: float) -> list[dict]:
        """One group at ``lr``, or with ``encoder_lr_scale`` != 1 the encoder and token bank in a
        group of their own at the scaled rate (one group keeps older checkpoints loadable)."""
        scale = self.config.encoder_lr_scale
        trained = [p for p in self.parameters() if p.requires_grad]  # not a frozen first stage
        if scale == 1.0:
            return [{"params": trained, "lr": lr}]
        own = [*self.encoder.parameters(), *self.token_bank.parameters()]
        ids = {id(p) for p in own}
        rest = [p for p in trained if id(p) not in ids]
        return [{"params": own, "lr": lr * scale}, {"params": rest, "lr": lr}]

    def encode(self, x: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Units s (B, N) of images (EncDiff-V: (B, N d)): float (B, C, H, W) in [-1, 1], or uint8
        (B, H, W, C)."""
        return self.encode_input(image_batch(x, self.channels, self.resolution, self.schedule.betas.device))

    def encode_input(self, x0: torch.Tensor) -> torch.Tensor:
        """Units s (B, N) of a batch already in model input form (float (B, C, H, W) in [-1, 1] on
        the model's device; ``encode`` converts and checks first): the encoder's output, standardised
        when ``unit_norm`` is on."""
        s = self.encoder(x0)
        return self.unit_norm(s) if self.config.unit_norm else s

    def raw_tokens(self, units: torch.Tensor) -> torch.Tensor:
        """Tokens before anchoring (what DyGA's mixtures are fitted on; EncDiff-V: the units cut)."""
        return self.token_bank(units)  # (B, N, d)

    def tokens(self, units: torch.Tensor) -> torch.Tensor:
        """The tokens the denoiser reads: anchored when DyGA is on and fitted."""
        return self.anchors(self.token_bank(units))  # (B, N, d)

    def diffusion_input(self, x0: torch.Tensor) -> torch.Tensor:
        """What the diffusion runs on for images x0 in [-1, 1]: x0, or its scaled latents z0."""
        return x0 if self.first_stage is None else self.first_stage.encode(x0)  # (B, C', h, w)

    def forward(
        self,
        x0: torch.Tensor,
        draws: StepDraws | None = None,
        shuffle_tokens: bool = False,
        latents: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(loss, terms) for a batch x0 (B, C, H, W) in [-1, 1]; ``draws`` holds the step's t and eps.
        The terms, detached, by name: ``isometry`` (L_iso, on the steps that measure it) and
        ``anchoring_lambda`` (DyGA's lambda, once the anchors are fitted).

        ``shuffle_tokens`` pairs each image with another image's tokens: the rise in loss it
        causes measures how much the denoiser relies on the tokens (a cheap diagnostic).
        ``latents``: ``diffusion_input(x0)`` when the caller already has it (the trainer's latent
        cache, training/latent_cache.py), so the frozen first stage is not run again.
        """
        s = self.encode_input(x0)  # (B, N) units: the encoder's scalars (standardised under unit_norm)
        c, lam = self.anchors.anchor(self.token_bank(s))  # (B, N, d) concept tokens, anchored under DyGA
        if shuffle_tokens:
            c = c.roll(1, dims=0)
        z0 = self.diffusion_input(x0) if latents is None else latents  # (B, C, H, W) pixels or latents
        draws = step_draws(draws, len(z0), z0.device)
        t, regularisers = None, {}
        if self.config.isometry.weight > 0 and self.training:  # gated: some steps add L_iso at high noise
            t, regularisers = isometry_step(
                self.config.isometry, self.schedule.timesteps, self.denoiser, c, draws
            )
        loss, terms = epsilon_loss(
            self.conditioned(c),
            z0,
            schedule=self.schedule,
            kind=self.config.loss,
            draws=draws,
            weighting=self.config.loss_weighting,
            t=t,
            regularisers=regularisers,
        )
        if self.config.decorrelation:
            loss = loss + self.config.decorrelation * decorrelation_penalty(s)
        if lam is not None:
            terms["anchoring_lambda"] = lam
        return loss, terms

    loss = forward

    # -- generation: tokens (possibly edited) -> sampler -> images ------------------------------

    def conditioned(self, tokens: torch.Tensor):
        """The eps model x_t, t -> eps under ``tokens`` (B, N, d): what the samplers call."""
        return lambda x_t, t: self.denoiser(x_t, t, tokens)

    def _batches(self, tokens: torch.Tensor, x: torch.Tensor, batch_size: int):
        """(eps model under a batch's tokens, that batch of x) in slices of ``batch_size``."""
        for i in range(0, len(tokens), batch_size):
            yield self.conditioned(tokens[i : i + batch_size]), x[i : i + batch_size]

    @torch.no_grad()
    def generate(
        self,
        tokens: torch.Tensor,
        sampler: str = DEFAULT_SAMPLING.sampler,
        steps: int = DEFAULT_SAMPLING.steps,
        eta: float = DEFAULT_SAMPLING.eta,
        seed: int = 0,
        x_T: torch.Tensor | None = None,
        batch_size: int = 256,
        progress: bool = False,
    ) -> torch.Tensor:
        """Images (B, C, H, W) in [-1, 1] denoised from ``x_T`` (B, *noise_shape) (default: N(0, I)
        drawn from ``seed``) under ``tokens`` (B, N, d), decoded by the first stage if there is one.
        Same seed and tokens give the same images."""
        device = self.schedule.betas.device
        tokens = tokens.to(device)
        gen = torch.Generator(device).manual_seed(seed)
        if x_T is None:
            x_T = torch.randn((len(tokens), *self.noise_shape), generator=gen, device=device)
        betas = make_betas(self.schedule.config)
        pixels = self.first_stage is None
        parts = [
            sample(denoise, x, betas, sampler, steps, eta, gen, progress, clamp=pixels)
            for denoise, x in self._batches(tokens, x_T.to(device), batch_size)
        ]
        return torch.cat(parts if pixels else [self.first_stage.decode(z) for z in parts])

    @torch.no_grad()
    def invert(
        self,
        x0: torch.Tensor,
        tokens: torch.Tensor,
        steps: int = DEFAULT_SAMPLING.steps,
        batch_size: int = 256,
    ) -> torch.Tensor:
        """Deterministic DDIM inversion of images x0 (B, C, H, W) under their tokens: the x_T (of
        their latents, with a first stage) from which ``generate(tokens, 'ddim', steps, eta=0,
        x_T=...)`` retraces x0 (faithful edits)."""
        betas = make_betas(self.schedule.config)
        device = self.schedule.betas.device
        z0 = self.diffusion_input(x0.to(device))
        parts = [
            ddim_invert(denoise, x, betas, steps)
            for denoise, x in self._batches(tokens.to(device), z0, batch_size)
        ]
        return torch.cat(parts)
