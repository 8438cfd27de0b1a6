"""InfoDiffusion: a diffusion model conditioned on a low-dimensional code with a prior-matching term.

Wang et al., "InfoDiffusion: Representation Learning Using Information Maximizing Diffusion
Models", ICML 2023 (isjakewong/InfoDiffusion). The whole path, top to bottom:

    x0 (B, C, H, W) -> U-shaped encoder -> 1-channel map -> linear -> a (B, K)
    t ~ U{0..T-1}, eps ~ N(0, I), x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps
    eps_theta(x_t, t, a): every res block  h = (GN(h) (1 + t_s) + t_b) (1 + s_a) + b_a
    loss = |eps - eps_theta|^2 + lambda MMD(a, N(0, I))                   (prior = "mmd")
    loss = |eps - eps_theta|^2 + beta KL(q(a | x0) || N(0, I)),  a ~ q     (prior = "kl")

| name here          | paper / code                                        |
|--------------------|-----------------------------------------------------|
| units              | a (``a_dim``, 32 on CelebA); mu under ``prior: kl`` |
| ``mmd_weight``     | lambda = ``mmd_weight`` = 0.1                       |
| ``kl_weight``      | ``kld_weight`` (the KL variant)                     |

The MMD is InfoVAE's (models/vae_losses.py ``mmd``: kernel exp(-mean_d (x_d - y_d)^2 / d)) between
the batch's codes and as many N(0, I) draws. The KL variant puts mu / log-variance heads on a (as
the released encoder's ``fc_mu`` / ``fc_var``) and conditions on a sample; its representation is mu.

Deviations, on purpose:

- The released loss adds a "reconstruction" term weighted 1/T: the one-step x0 estimate
  (x0 - beta_1 / sqrt(1 - abar_1) eps_theta) / sqrt(alpha_1), built from the clean x0 and the
  prediction at the step's random t, against x0. With its betas (beta_1 = 1e-5) that is
  sqrt(beta_1) eps_theta, so the term is about beta_1 |eps_theta|^2 / T ~ 1e-8 of the loss: omitted.
- The paper's mutual-information weight is a pair of weights on these terms; the exact mapping is
  not in the released code (BASELINES.md: NOT FOUND), so the two weights are config values.
- The KL term is the per-image KL averaged over the batch (the released code sums over the batch,
  which ties the weight to the batch size); ``kl_weight`` 1 by default (NOT FOUND: the released
  scripts run the MMD variant).
- The encoder is diffusers' U-Net at a fixed timestep (models/semantic_encoder.py); the decoder's
  U-Net is diffusers' with the code installed per res block (models/code_modulation.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from diffdrl.diffusion.draws import StepDraws
from diffdrl.diffusion.schedule import ScheduleConfig
from diffdrl.models.denoiser import DenoiserConfig
from diffdrl.models.diffae import CodeDiffusion, check_code_model
from diffdrl.models.semantic_encoder import SemanticEncoderConfig, UShapedEncoder
from diffdrl.models.vae_losses import gaussian_kl, mmd

PRIORS = ("mmd", "kl")


@dataclass
class InfoDiffusionEncoderConfig(SemanticEncoderConfig):
    """The U-shaped encoder at 64 px: the released code's (1, 2, 2, 2) x 64 channels, two res blocks
    per level, attention at level 2 (its ``attn=[2]``)."""

    channels: tuple[int, ...] = (64, 128, 128, 128)
    attention: tuple[bool, ...] = (False, False, True, False)


@dataclass
class InfoDiffusionDenoiserConfig(DenoiserConfig):
    conditioning: str = "adagn_scale_shift"  # the code scales and shifts every group norm


@dataclass
class InfoDiffusionScheduleConfig(ScheduleConfig):
    name: str = "sqrt_linear"  # betas linear in t, 1e-5 -> 1e-2, T = 1000 (the released code)
    beta_start: float = 1.0e-5
    beta_end: float = 1.0e-2


@dataclass
class InfoDiffusionConfig:
    """The model; sub-configs hold each component's own defaults (the released code's)."""

    name: str = "infodiffusion"
    units: int = 20  # a_dim (32 on CelebA; 20 as EncDiff's units, the study's rows)
    loss: str = "mse"
    prior: str = "mmd"  # how a is pulled to N(0, I): "mmd" (the paper's) or "kl" (the variant)
    mmd_weight: float = 0.1  # lambda
    kl_weight: float = 1.0  # used with prior "kl" only
    encoder: InfoDiffusionEncoderConfig = field(default_factory=InfoDiffusionEncoderConfig)
    denoiser: InfoDiffusionDenoiserConfig = field(default_factory=InfoDiffusionDenoiserConfig)
    schedule: InfoDiffusionScheduleConfig = field(default_factory=InfoDiffusionScheduleConfig)

    def __post_init__(self):
        if self.name != "infodiffusion":
            raise ValueError(f"InfoDiffusionConfig.name must be 'infodiffusion', got {self.name!r}")
        check_code_model(self, "adagn_scale_shift")
        if self.prior not in PRIORS:
            raise ValueError(f"model.prior must be one of {PRIORS}, got {self.prior!r}")
        for key in ("mmd_weight", "kl_weight"):
            if not getattr(self, key) >= 0:
                raise ValueError(f"model.{key} must be >= 0, got {getattr(self, key)}")


class InfoDiffusion(CodeDiffusion):
    def __init__(self, config: InfoDiffusionConfig, resolution: int, channels: int = 3):
        super().__init__(config, resolution, channels)
        self.encoder = UShapedEncoder(config.encoder, config.units, resolution, channels)
        if config.prior == "kl":  # a -> (mu, log-variance), the released encoder's fc_mu / fc_var
            self.posterior_heads = nn.Linear(config.units, 2 * config.units)

    def posterior(self, x0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, logvar) of q(a | x0), each (B, K) float32 (the KL variant)."""
        mu, logvar = self.posterior_heads(self.encoder(x0)).float().chunk(2, dim=1)
        return mu, logvar

    def encode_input(self, x0: torch.Tensor) -> torch.Tensor:
        """Units (B, K): the code a, or under ``prior: kl`` the posterior mean mu."""
        return self.posterior(x0)[0] if self.config.prior == "kl" else self.encoder(x0)

    def code(self, x0: torch.Tensor, draws: StepDraws) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """The code the denoiser reads and its prior-matching term (module docstring)."""
        if self.config.prior == "kl":
            mu, logvar = self.posterior(x0)  # (B, K) each
            a = mu + torch.exp(0.5 * logvar) * draws.normal(mu.shape[1]).to(mu.device)
            kl = gaussian_kl(mu, logvar).mean()
            return a, self.config.kl_weight * kl, {"kl": kl}
        a = self.encoder(x0)  # (B, K)
        divergence = mmd(a, draws.normal(a.shape[1]).to(a.device))
        return a, self.config.mmd_weight * divergence, {"mmd": divergence}
