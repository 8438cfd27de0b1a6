"""DisDiff: disentangling a frozen, pre-trained diffusion model with an encoder and a decoder of
gradient fields, one per chunk of the code.

Yang et al., "DisDiff: Unsupervised Disentanglement of Diffusion Probabilistic Models", NeurIPS
2023 (facts from the paper and its released code: BASELINES.md). The whole path, top to bottom:

    x0 (B, C, H, W) -> encoder -> z (B, N d) -> chunks z_c (B, N, d)
    t ~ p(t), eps ~ N(0, I), x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps
    eps_0, features = frozen U-Net(x_t, t)                     (pre-trained, never trained here)
    g_c = decoder(features, t, z_c, part c)      for every c  (one batch of N B rows)
    eps_hat = eps_0 + k_t sum_c g_c,  k_t = -sqrt(alpha_t)(1 - abar_{t-1}) / sqrt(1 - abar_t)  (PDAE)
    loss = |eps - eps_hat| + lambda L_dis                       (L1 as released; L_dis: disentangling.py)

| name here          | paper / released code                                      |
|--------------------|------------------------------------------------------------|
| units N, chunk_dim d | latent_unit (6), dimension of each z_c (32)              |
| pretrained         | the frozen DPM (LDM on a VQ-f4 stage in the paper; pixels here) |
| decoder            | shift_middle_block / shift_output_blocks / shift_out       |
| k_t                | shift_coef; sampling uses ddim_coef = -sqrt(1 - abar_t)    |
| disentangling_weight | dis_weight (0.05; 0.01 on MPI3D)                         |

The disentangling loss re-encodes predictions with a frozen copy of the encoder. The released code
deep-copies the encoder at every step (``copy.deepcopy``, ``requires_grad_(False)``, ``eval()``), so
the copy is always the current encoder, frozen; here the same without the copy: the encoder's
own weights, detached, in eval mode (``frozen_encode``). The encoder learns from the diffusion loss
only: the disentangling loss's own decoder row for chunk c reads z_c detached.

Deliberate deviations: pixel space (no VQ first stage) by default; the decoder's res blocks are
diffusers' with the chunk's scale-shift composed into their time scale-shift (gradient_field.py).
Evaluation: each chunk's PCA-1 (``scored_representation``), as DisDiff and DyGA score it; the raw
chunks are ``encode``'s (B, N d), the ``units`` representation.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from diffdrl.diffusion.draws import StepDraws, step_draws
from diffdrl.diffusion.loss import LOSSES
from diffdrl.diffusion.schedule import NoiseSchedule, make_betas, pdae_coefficient
from diffdrl.models.disentangling import disentangling_loss
from diffdrl.models.encdiff import EncDiff, image_batch
from diffdrl.models.encoder import Encoder, EncoderConfig
from diffdrl.models.gradient_field import GradientFieldDecoder, frozen_pass
from diffdrl.models.pretrained import FrozenDenoiser, PretrainedConfig

# How sampling weighs the summed fields: "ddim" -sqrt(1 - abar_t), as the released DDIM sampler
# does (and its disentangling loss); "pdae" the training coefficient k_t.
SAMPLING_COEFFICIENTS = ("ddim", "pdae")


@dataclass
class DisDiffConfig:
    """The model; the noise schedule is the pre-trained run's (the frozen U-Net was trained on it)."""

    name: str = "disdiff"
    units: int = 6  # N chunks
    chunk_dim: int = 32  # d
    loss: str = "l1"
    disentangling_weight: float = 0.05  # lambda (Shapes3D, Cars3D, CelebA; 0.01 on MPI3D)
    sampling_coefficient: str = "ddim"
    # Training timesteps, as ``ScheduleConfig``'s keys of the same names (0, 0: uniform, the paper)
    high_noise_bias: float = 0.0
    uniform_fraction: float = 0.0
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    pretrained: PretrainedConfig = field(default_factory=PretrainedConfig)

    def __post_init__(self):
        if self.name != "disdiff":
            raise ValueError(f"DisDiffConfig.name must be 'disdiff', got {self.name!r}")
        if self.units < 2:
            raise ValueError(
                f"model.units (chunks) must be >= 2 for the disentangling loss, got {self.units}"
            )
        if self.chunk_dim < 1:
            raise ValueError(f"model.chunk_dim must be >= 1, got {self.chunk_dim}")
        if self.loss not in LOSSES:
            raise ValueError(f"model.loss must be one of {LOSSES}, got {self.loss!r}")
        if not self.disentangling_weight >= 0:
            raise ValueError(f"model.disentangling_weight must be >= 0, got {self.disentangling_weight}")
        if self.sampling_coefficient not in SAMPLING_COEFFICIENTS:
            raise ValueError(
                f"model.sampling_coefficient must be one of {SAMPLING_COEFFICIENTS}, "
                f"got {self.sampling_coefficient!r}"
            )


class DisDiff(nn.Module):
    conditions_on_tokens = True  # the trainer logs the rise in loss with chunks shuffled
    scored_representation = "tokens"  # each chunk's PCA-1 (models/representation.py)
    no_attention_reason = (
        "cross-attention maps: not available for model 'disdiff', whose chunks act through the "
        "scale-shift of its decoder's group norms (one gradient field per chunk), not cross-attention"
    )

    def __init__(self, config: DisDiffConfig, resolution: int, channels: int = 3):
        super().__init__()
        self.config, self.resolution, self.channels = config, resolution, channels
        self.noise_shape = (channels, resolution, resolution)
        self.pretrained = FrozenDenoiser(config.pretrained, resolution, channels)
        n, d = config.units, config.chunk_dim
        self.code_width = n * d  # K of ``encode``
        self.encoder = Encoder(config.encoder, n * d, resolution, channels)
        self.decoder = GradientFieldDecoder(self.pretrained.unet, n, d)
        schedule = self.pretrained.config.schedule
        self.schedule = NoiseSchedule(
            dataclasses.replace(
                schedule, high_noise_bias=config.high_noise_bias, uniform_fraction=config.uniform_fraction
            )
        )
        k = torch.from_numpy(pdae_coefficient(make_betas(schedule))).float()
        self.register_buffer("k_t", k, persistent=False)  # (T,)

    def param_groups(self, lr: float) -> list[dict]:
        """The trained parameters only: the encoder and the decoder (the pre-trained U-Net is frozen)."""
        return [{"params": [p for p in self.parameters() if p.requires_grad], "lr": lr}]

    # -- the code: z (B, N d), chunks (B, N, d) --------------------------------------------------

    def encode(self, x: torch.Tensor | np.ndarray) -> torch.Tensor:
        """The raw chunks z (B, N d) of images: float (B, C, H, W) in [-1, 1], or uint8 (B, H, W, C)."""
        return self.encoder(image_batch(x, self.channels, self.resolution, self.k_t.device))

    def tokens(self, units: torch.Tensor) -> torch.Tensor:
        """The chunks (B, N, d) of codes (B, N d): what the decoder reads, one chunk per field."""
        return units.view(len(units), self.config.units, self.config.chunk_dim)

    raw_tokens = tokens

    def frozen_encode(self, x: torch.Tensor) -> torch.Tensor:
        """Chunks (B, N, d) of ``x`` by the frozen copy of the encoder: its current weights, detached,
        in eval mode (BatchNorm's running statistics, not updated); gradients reach ``x`` only."""
        weights = {k: p.detach() for k, p in self.encoder.named_parameters()}
        mode = self.encoder.training
        self.encoder.eval()
        try:
            return self.tokens(functional_call(self.encoder, weights, (x,)))
        finally:
            self.encoder.train(mode)

    # -- the fields ------------------------------------------------------------------------------

    def _chunk_rows(self, chunks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Every (chunk, sample) pair as a row, chunk-major: (sample index, part index, z_c) of N B rows."""
        b, n, d = chunks.shape
        samples = torch.arange(b, device=chunks.device).repeat(n)  # (N B,)
        parts = torch.arange(n, device=chunks.device).repeat_interleave(b)  # (N B,)
        return samples, parts, chunks.transpose(0, 1).reshape(n * b, d)

    def _summed(self, g: torch.Tensor, batch: int) -> torch.Tensor:
        return g[: self.config.units * batch].unflatten(0, (self.config.units, batch)).sum(0)  # (B, C, H, W)

    def denoise(self, x_t: torch.Tensor, t: torch.Tensor, chunks: torch.Tensor, coefficient: torch.Tensor):
        """eps_0 + coefficient[t] sum_c g_c for chunks (B, N, d): the model as a sampler sees it."""
        frozen = frozen_pass(self.pretrained.unet, x_t, t)
        samples, parts, z = self._chunk_rows(chunks)
        g = self._summed(self.decoder(frozen.rows(samples), z, parts), len(x_t))
        return frozen.eps + coefficient[t].view(-1, 1, 1, 1) * g

    def forward(
        self, x0: torch.Tensor, draws: StepDraws | None = None, shuffle_tokens: bool = False
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(loss, terms) for a batch x0 (B, C, H, W) in [-1, 1]; terms ``diffusion`` and, with
        lambda > 0, ``disentangling`` (before its weight). ``shuffle_tokens`` pairs each image with
        another's chunks (token reliance)."""
        b, n = len(x0), self.config.units
        chunks = self.tokens(self.encoder(x0))  # (B, N, d)
        if shuffle_tokens:
            chunks = chunks.roll(1, dims=0)
        draws = step_draws(draws, b, x0.device)
        t = self.schedule.sample_timesteps(draws).to(x0.device)  # (B,)
        eps = draws.normal(*x0.shape[1:], dtype=x0.dtype).to(x0.device)
        x_t = self.schedule.q_sample(x0, t, eps)
        frozen = frozen_pass(self.pretrained.unet, x_t, t)  # no gradient
        samples, parts, z = self._chunk_rows(chunks)  # N B rows
        lam = self.config.disentangling_weight
        if lam > 0:  # one more row per image: its drawn chunk c, detached (no encoder gradient)
            chunk = draws.integers(0, n).to(x0.device)  # (B,)
            own = torch.arange(b, device=x0.device)
            samples, parts = torch.cat([samples, own]), torch.cat([parts, chunk])
            z = torch.cat([z, chunks[own, chunk].detach()])
        g = self.decoder(frozen.rows(samples), z, parts)  # (N B [+ B], C, H, W)
        eps_hat = frozen.eps + self.k_t[t].view(-1, 1, 1, 1) * self._summed(g, b)
        err = eps_hat.float() - eps
        loss = err.abs().mean() if self.config.loss == "l1" else err.square().mean()
        terms = {"diffusion": loss.detach()}
        if lam > 0:
            shift = -self.schedule.sqrt_one_minus_alpha_bar[t].view(-1, 1, 1, 1)
            with torch.no_grad():
                x0_hat = self.schedule.predict_x0(x_t, t, frozen.eps)
                z_hat = self.frozen_encode(x0_hat)
            x0_hat_c = self.schedule.predict_x0(x_t, t, frozen.eps + shift * g[n * b :])
            weight = (x0_hat - x0_hat_c.detach()).square().flatten(1).mean(1)  # (B,)
            dis = disentangling_loss(chunks, z_hat, self.frozen_encode(x0_hat_c), chunk, weight)
            terms["disentangling"] = dis.detach()
            loss = loss + lam * dis
        return loss, terms

    loss = forward

    # -- generation: chunks (possibly edited) -> sampler -> images -------------------------------

    def _coefficient(self) -> torch.Tensor:
        if self.config.sampling_coefficient == "pdae":
            return self.k_t
        return -self.schedule.sqrt_one_minus_alpha_bar

    def conditioned(self, tokens: torch.Tensor):
        """The eps model x_t, t -> eps under chunks ``tokens`` (B, N, d), with the sampling
        coefficient (``sampling_coefficient``)."""
        coefficient = self._coefficient()
        return lambda x_t, t: self.denoise(x_t, t, tokens, coefficient)

    # EncDiff's sampling path: x_T (default N(0, I) from ``seed``) -> images, and DDIM inversion
    first_stage = None  # pixel space
    diffusion_input = EncDiff.diffusion_input
    _batches = EncDiff._batches
    generate = EncDiff.generate
    invert = EncDiff.invert
