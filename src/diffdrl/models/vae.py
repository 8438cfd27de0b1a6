"""VAE baselines of the disentanglement literature: beta-VAE, beta-TCVAE and FactorVAE.

Architecture, losses and defaults follow Locatello et al., "Challenging Common Assumptions in the
Unsupervised Learning of Disentangled Representations", ICML 2019, as run by disentanglement_lib
(``unsupervised_study_v1``). The whole path:

    x0 (B, C, H, W) -> conv encoder -> (mu, logvar) (B, N) each;  z = mu + exp(logvar / 2) eps
    z -> deconv decoder -> Bernoulli logits (B, C, H, W)
    loss = -log p(x0 | z) + regulariser                                  (means over the batch)
      beta-VAE   (Higgins et al., ICLR 2017):    beta KL
      beta-TCVAE (Chen et al., NeurIPS 2018):    KL + (beta - 1) TC,  TC by minibatch-weighted sampling
      FactorVAE  (Kim & Mnih, ICML 2018):        KL + gamma TC,  TC ~ E[D_real(z) - D_perm(z)] (logits)
                                                  + the discriminator's cross-entropy

| name here  | papers                                                       |
|------------|--------------------------------------------------------------|
| units      | latent dimensions (N = 10)                                   |
| KL         | KL(q(z|x) || N(0, I)), closed form, summed over units        |
| TC         | total correlation KL(q(z) || prod_d q(z_d))                  |
| beta-TCVAE's ``beta`` | the TC weight (MI and dimension-wise KL weights alpha = gamma = 1) |

Defaults (disentanglement_lib): N = 10; beta-VAE beta = 4 (its ``examples/model.gin``; the study
sweeps 1..16); beta-TCVAE beta = 6 (study sweeps 1..10); FactorVAE gamma = 10 (study sweeps 10..100,
the lowest keeps reconstruction usable on small data); discriminator 6 x 1000 LeakyReLU(0.2) -> 2
logits, Adam lr 1e-4, betas (0.5, 0.9).

Deviations, on purpose:

- Resolutions other than 64: one 4x4 stride-2 conv per halving down to 4x4, dropping the *first*
  layers of the channel list (32x32 uses channels 32-64-64), so the 4x4x64 bottleneck and the FC
  layers stay as published. PyTorch's symmetric padding 1 stands in for TF's "same" padding.
- beta-TCVAE adds (beta - 1) TC to the closed-form KL, as disentanglement_lib does, rather than
  estimating all three terms of Chen et al.'s decomposition by sampling (same objective, less noise).
- FactorVAE takes one optimiser step for both players: the TC term reads the discriminator through
  detached parameters (it trains the VAE only), the discriminator's cross-entropy reads detached
  codes (it trains the discriminator only). As in the paper, the permuted codes come from a second
  set of images (the second half of the batch), not the same codes as disentanglement_lib.
- PyTorch's default initialisation, not TF's Glorot uniform.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from diffdrl.diffusion.draws import StepDraws, step_draws
from diffdrl.models.encdiff import image_batch
from diffdrl.models.vae_losses import bernoulli_nll, gaussian_kl, permute_dims, total_correlation


@dataclass
class VAEConfig:
    """What every VAE baseline shares: latent size and the disentanglement_lib conv stack."""

    name: str = ""  # each model's config sets its registry key here
    units: int = 10
    channels: tuple[int, ...] = (32, 32, 64, 64)  # the encoder's convs at 64x64; the decoder mirrors
    hidden: int = 256  # the FC layer between the convs and the latent units

    def __post_init__(self):
        own = type(self).__dataclass_fields__["name"].default
        if self.name != own:
            raise ValueError(f"{type(self).__name__}.name must be {own!r}, got {self.name!r}")
        if self.units < 1:
            raise ValueError(f"model.units must be >= 1, got {self.units}")
        if not self.channels or min(self.channels) < 1:
            raise ValueError(f"model.channels must be a non-empty list of ints >= 1, got {self.channels}")
        if self.hidden < 1:
            raise ValueError(f"model.hidden must be >= 1, got {self.hidden}")


def _check_weight(key: str, value: float) -> None:
    if not value >= 0:
        raise ValueError(f"model.{key} must be >= 0, got {value}")


@dataclass
class BetaVAEConfig(VAEConfig):
    name: str = "betavae"
    beta: float = 4.0

    def __post_init__(self):
        super().__post_init__()
        _check_weight("beta", self.beta)


@dataclass
class BetaTCVAEConfig(VAEConfig):
    name: str = "betatcvae"
    beta: float = 6.0  # weight of the total correlation

    def __post_init__(self):
        super().__post_init__()
        _check_weight("beta", self.beta)


@dataclass
class FactorVAEConfig(VAEConfig):
    name: str = "factorvae"
    gamma: float = 10.0
    discriminator_width: int = 1000
    discriminator_layers: int = 6  # hidden layers, each LeakyReLU(0.2)
    discriminator_lr: float = 1e-4  # its own base rate; follows train.warmup_steps like the VAE's
    discriminator_betas: tuple[float, ...] = (0.5, 0.9)

    def __post_init__(self):
        super().__post_init__()
        _check_weight("gamma", self.gamma)
        for key in ("discriminator_width", "discriminator_layers"):
            if getattr(self, key) < 1:
                raise ValueError(f"model.{key} must be >= 1, got {getattr(self, key)}")
        if not self.discriminator_lr > 0:
            raise ValueError(f"model.discriminator_lr must be > 0, got {self.discriminator_lr}")
        betas = self.discriminator_betas
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"model.discriminator_betas must be two numbers in [0, 1), got {betas}")


# ---------------------------------------------------------------------------------------------
# networks


def _stack(channels: tuple[int, ...], resolution: int) -> tuple[int, ...]:
    """The conv channels used at ``resolution``: one stride-2 layer per halving down to 4x4."""
    halvings = math.log2(resolution / 4) if resolution >= 8 else 0.0
    if not halvings.is_integer() or not 1 <= halvings <= len(channels):
        raise ValueError(
            f"data.resolution must be 4 * 2**k with 1 <= k <= {len(channels)} (len(model.channels)) "
            f"for the VAE's stride-2 convs, got {resolution}"
        )
    return channels[len(channels) - int(halvings) :]


def conv_encoder(units: int, stack: tuple[int, ...], hidden: int, channels: int) -> nn.Sequential:
    """Image -> (mu, logvar) stacked as (B, 2N): 4x4 stride-2 convs, FC ``hidden``, FC 2N (ReLU)."""
    layers: list[nn.Module] = []
    for c_in, c_out in zip((channels, *stack[:-1]), stack, strict=True):
        layers += [nn.Conv2d(c_in, c_out, 4, 2, padding=1), nn.ReLU()]
    flat = stack[-1] * 4 * 4
    layers += [nn.Flatten(), nn.Linear(flat, hidden), nn.ReLU(), nn.Linear(hidden, 2 * units)]
    return nn.Sequential(*layers)


def deconv_decoder(units: int, stack: tuple[int, ...], hidden: int, channels: int) -> nn.Sequential:
    """Codes (B, N) -> logits (B, C, H, W): the encoder mirrored, FC ``hidden``, FC 4x4xC, deconvs."""
    flat = stack[-1] * 4 * 4
    layers: list[nn.Module] = [nn.Linear(units, hidden), nn.ReLU(), nn.Linear(hidden, flat), nn.ReLU()]
    layers.append(nn.Unflatten(1, (stack[-1], 4, 4)))
    outs = (*reversed(stack[:-1]), channels)  # 64x64: 64 -> 64 -> 32 -> 32 -> C
    for i, (c_in, c_out) in enumerate(zip(reversed(stack), outs, strict=True)):
        layers.append(nn.ConvTranspose2d(c_in, c_out, 4, 2, padding=1))
        if i < len(outs) - 1:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def fc_discriminator(units: int, width: int, layers: int) -> nn.Sequential:
    """Codes (B, N) -> 2 logits (real codes, permuted codes): ``layers`` x ``width`` LeakyReLU(0.2)."""
    sizes = (units, *[width] * layers)
    body = [m for a, b in pairwise(sizes) for m in (nn.Linear(a, b), nn.LeakyReLU(0.2))]
    return nn.Sequential(*body, nn.Linear(sizes[-1], 2))


# ---------------------------------------------------------------------------------------------
# models


class VAE(nn.Module):
    """A Gaussian-posterior VAE with a Bernoulli decoder; subclasses supply the regulariser."""

    def __init__(self, config: VAEConfig, resolution: int, channels: int = 3):
        super().__init__()
        self.config, self.resolution, self.channels = config, resolution, channels
        stack = _stack(config.channels, resolution)
        self.encoder = conv_encoder(config.units, stack, config.hidden, channels)
        self.decoder = deconv_decoder(config.units, stack, config.hidden, channels)

    @property
    def _device(self) -> torch.device:
        return next(self.parameters()).device

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, logvar) of q(z | x), each (B, N) float32, for float images in [-1, 1]."""
        mu, logvar = self.encoder(x).float().chunk(2, dim=1)
        return mu, logvar

    def encode(self, x: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Posterior means (B, N) of images: float (B, C, H, W) in [-1, 1], or uint8 (B, H, W, C)."""
        return self.posterior(image_batch(x, self.channels, self.resolution, self._device))[0]

    def decode(self, units: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) in [-1, 1] of codes (B, N): the Bernoulli means, rescaled."""
        return torch.sigmoid(self.decoder(units.to(self._device)).float()) * 2.0 - 1.0

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor | np.ndarray) -> torch.Tensor:
        """decode(encode(x)): images in [-1, 1] through the posterior mean (no sampling noise)."""
        return self.decode(self.encode(x))

    def forward(
        self, x0: torch.Tensor, draws: StepDraws | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(loss, terms) for a batch x0 in [-1, 1]; ``draws`` holds eps per sample (and the generator
        of FactorVAE's permutations). The terms, detached: ``reconstruction``, ``kl`` and the
        regulariser's own parts."""
        mu, logvar = self.posterior(x0)  # (B, N) each
        draws = step_draws(draws, len(mu), mu.device)
        eps = draws.normal(mu.shape[1]).to(mu.device)
        z = mu + torch.exp(0.5 * logvar) * eps
        reconstruction = bernoulli_nll(self.decoder(z), x0).mean()
        kl = gaussian_kl(mu, logvar).mean()
        regulariser, terms = self.regulariser(z, mu, logvar, kl, draws.generator)
        terms = {k: v.detach() for k, v in {"reconstruction": reconstruction, "kl": kl, **terms}.items()}
        return reconstruction + regulariser, terms

    loss = forward

    def regulariser(self, z, mu, logvar, kl, generator) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The scalar added to the reconstruction loss, and its parts to log."""
        raise NotImplementedError


class BetaVAE(VAE):
    """beta-VAE (Higgins et al., ICLR 2017): beta KL."""

    def regulariser(self, z, mu, logvar, kl, generator):
        return self.config.beta * kl, {}


class BetaTCVAE(VAE):
    """beta-TCVAE (Chen et al., NeurIPS 2018): KL + (beta - 1) TC, TC by minibatch-weighted sampling."""

    def regulariser(self, z, mu, logvar, kl, generator):
        tc = total_correlation(z, mu, logvar)
        return kl + (self.config.beta - 1.0) * tc, {"tc": tc}


class FactorVAE(VAE):
    """FactorVAE (Kim & Mnih, ICML 2018): KL + gamma TC, TC estimated by a discriminator between
    codes and dimension-wise permuted codes, trained in the same optimiser step (module docstring)."""

    def __init__(self, config: FactorVAEConfig, resolution: int, channels: int = 3):
        super().__init__(config, resolution, channels)
        self.discriminator = fc_discriminator(
            config.units, config.discriminator_width, config.discriminator_layers
        )

    def param_groups(self, lr: float) -> list[dict]:
        """The VAE at ``lr`` with the trainer's AdamW settings; the discriminator at its own rate and
        betas, without weight decay (the paper's Adam)."""
        vae = [p for n, p in self.named_parameters() if not n.startswith("discriminator.")]
        return [
            {"params": vae, "lr": lr},
            {
                "params": list(self.discriminator.parameters()),
                "lr": self.config.discriminator_lr,
                "betas": tuple(self.config.discriminator_betas),
                "weight_decay": 0.0,
            },
        ]

    def tc_estimate(self, z: torch.Tensor) -> torch.Tensor:
        """TC ~ mean log D(z) / (1 - D(z)) = mean(logit_real - logit_permuted), read through detached
        discriminator parameters: its gradient reaches the encoder, never the discriminator."""
        frozen = {k: v.detach() for k, v in self.discriminator.named_parameters()}
        logits = torch.func.functional_call(self.discriminator, frozen, (z,)).float()  # (B, 2)
        return (logits[:, 0] - logits[:, 1]).mean()

    def discriminator_loss(self, z: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Cross-entropy of telling the first half's codes (label 0) from the second half's codes
        permuted per unit (label 1); codes detached, so it trains the discriminator only."""
        if len(z) < 2:
            raise ValueError(f"FactorVAE needs a batch of at least 2 images, got {len(z)}")
        z = z.detach()
        half = len(z) // 2
        real, permuted = z[: len(z) - half], permute_dims(z[len(z) - half :], generator)
        log_p = F.log_softmax(self.discriminator(torch.cat([real, permuted])).float(), dim=1)  # (B, 2)
        return -0.5 * (log_p[: len(real), 0].mean() + log_p[len(real) :, 1].mean())

    def regulariser(self, z, mu, logvar, kl, generator):
        tc = self.tc_estimate(z)
        discriminator = self.discriminator_loss(z, generator)
        return kl + self.config.gamma * tc + discriminator, {"tc": tc, "discriminator": discriminator}
