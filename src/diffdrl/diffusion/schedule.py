"""Beta schedules and the forward process q(x_t | x_0).

The four schedules of the EncDiff paper's ablation (METHODS.md, "Schedules"), written once here.
Tables are computed in float64 and stored float32 (STYLE.md, precision policy).

Notation: t in {0, ..., T-1}; beta_t the noise added at step t; alpha_t = 1 - beta_t;
alpha_bar_t = prod_{s<=t} alpha_s; x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from diffdrl.diffusion.draws import StepDraws

# The network as the schedule, the loss and the samplers see it: (x_t (B, C, H, W), t (B,)) -> eps
# prediction; conditioning (tokens) is closed over by the caller.
EpsModel = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

SCHEDULES = ("linear", "sqrt_linear", "cosine", "sqrt")


@dataclass
class ScheduleConfig:
    """Which beta schedule and its constants (defaults: the released EncDiff code)."""

    name: str = "linear"  # LDM naming: linear in sqrt(beta)
    timesteps: int = 1000
    beta_start: float = 0.0015
    beta_end: float = 0.0155
    cosine_s: float = 0.008
    # Training timesteps have density proportional to (t + 1) ** high_noise_bias: 0 is the paper's
    # uniform draw; > 0 spends more steps at high noise, where the image is gone and only the
    # tokens can tell the denoiser what to draw (EncDiff's information-bottleneck argument).
    high_noise_bias: float = 0.0
    # The fraction of training timesteps drawn uniformly instead (0: the bias alone). With the bias
    # alone, t < 100 gets (0.1) ** (1 + bias) of the draws (0.1% for bias 2), so low-noise denoising
    # is never learnt and samples keep a speckle of residual noise; a uniform share of m gives those
    # steps m / 10 of the draws and keeps 1 - m of the bias (docs/small_budget.md, "Clean pictures").
    uniform_fraction: float = 0.0

    def __post_init__(self):
        if self.name not in SCHEDULES:
            raise ValueError(f"schedule.name must be one of {SCHEDULES}, got {self.name!r}")
        if self.timesteps < 2:
            raise ValueError(f"schedule.timesteps must be >= 2, got {self.timesteps}")
        if not 0 < self.beta_start < self.beta_end < 1:
            raise ValueError(
                f"need 0 < schedule.beta_start < schedule.beta_end < 1, "
                f"got {self.beta_start}, {self.beta_end}"
            )
        if self.high_noise_bias < 0:
            raise ValueError(f"schedule.high_noise_bias must be >= 0, got {self.high_noise_bias}")
        if not 0.0 <= self.uniform_fraction <= 1.0:
            raise ValueError(f"schedule.uniform_fraction must be in [0, 1], got {self.uniform_fraction}")


def make_betas(config: ScheduleConfig) -> np.ndarray:
    """beta_t for t = 0..T-1 as float64 (METHODS.md formulas, LDM's naming)."""
    T, b0, b1 = config.timesteps, config.beta_start, config.beta_end
    frac = np.arange(T, dtype=np.float64) / (T - 1)
    if config.name == "linear":
        return (math.sqrt(b0) + frac * (math.sqrt(b1) - math.sqrt(b0))) ** 2
    if config.name == "sqrt_linear":
        return b0 + frac * (b1 - b0)
    if config.name == "sqrt":
        return (b0 + frac * (b1 - b0)) ** 0.5
    # cosine (Nichol & Dhariwal 2021): alpha_bar from a squared cosine, betas from its ratios.
    s = config.cosine_s
    i = np.arange(T + 1, dtype=np.float64) / T
    f = np.cos((i + s) / (1 + s) * math.pi / 2) ** 2
    alpha_bar = f / f[0]
    return np.clip(1 - alpha_bar[1:] / alpha_bar[:-1], 0.0, 0.999)


def alpha_bar_of(betas: np.ndarray) -> np.ndarray:
    """alpha_bar_t = prod_{s<=t} (1 - beta_s) as float64 (the one place this product is written)."""
    return np.cumprod(1.0 - np.asarray(betas, dtype=np.float64))


def pdae_coefficient(betas: np.ndarray) -> np.ndarray:
    """k_t = -sqrt(alpha_t) (1 - alpha_bar_{t-1}) / sqrt(1 - alpha_bar_t), alpha_bar_{-1} = 1, as
    float64: how much a predicted mean shift (a gradient field g) moves the epsilon prediction,
    eps = eps_0 + k_t g (PDAE, Zhang et al., NeurIPS 2022; how DisDiff combines its chunks)."""
    betas = np.asarray(betas, dtype=np.float64)
    alpha_bar = alpha_bar_of(betas)
    alpha_bar_prev = np.concatenate([[1.0], alpha_bar[:-1]])
    return -np.sqrt(1.0 - betas) * (1.0 - alpha_bar_prev) / np.sqrt(1.0 - alpha_bar)


class NoiseSchedule(torch.nn.Module):
    """The fixed forward process: tables as non-persistent buffers that follow the module's device."""

    def __init__(self, config: ScheduleConfig):
        super().__init__()
        self.config = config
        betas = make_betas(config)
        alpha_bar = alpha_bar_of(betas)
        self.register_buffer("betas", torch.from_numpy(betas).float(), persistent=False)
        self.register_buffer("alpha_bar", torch.from_numpy(alpha_bar).float(), persistent=False)
        self.register_buffer("sqrt_alpha_bar", torch.from_numpy(np.sqrt(alpha_bar)).float(), persistent=False)
        self.register_buffer(
            "sqrt_one_minus_alpha_bar",
            torch.from_numpy(np.sqrt(1.0 - alpha_bar)).float(),
            persistent=False,
        )

    @property
    def timesteps(self) -> int:
        return self.config.timesteps

    def sample_timesteps(self, draws: StepDraws) -> torch.Tensor:
        """One training timestep per sample of ``draws``' batch: density proportional to
        (t + 1) ** ``high_noise_bias``, mixed with the uniform draw in the share ``uniform_fraction``
        (``ScheduleConfig``)."""
        bias, mix, T = self.config.high_noise_bias, self.config.uniform_fraction, self.timesteps
        if bias == 0 or mix == 1:
            return draws.integers(0, T)
        u = draws.uniform(dtype=torch.float64)
        if mix == 0:  # the bias alone: the draws of runs made before uniform_fraction existed
            return (T * u ** (1.0 / (1.0 + bias))).long().clamp_(max=T - 1)
        # one uniform number per draw: below mix it is rescaled to a uniform t, above to a biased one
        uniform = u < mix
        v = torch.where(uniform, u / mix, (u - mix) / (1.0 - mix))
        t = torch.where(uniform, v, v ** (1.0 / (1.0 + bias)))
        return (T * t).long().clamp_(max=T - 1)

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps, per sample t (B,)."""
        shape = (-1,) + (1,) * (x0.ndim - 1)
        return self.sqrt_alpha_bar[t].view(shape) * x0 + self.sqrt_one_minus_alpha_bar[t].view(shape) * eps

    def predict_x0(self, x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """x_0 = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t): ``q_sample`` solved for x_0."""
        shape = (-1,) + (1,) * (x_t.ndim - 1)
        return (x_t - self.sqrt_one_minus_alpha_bar[t].view(shape) * eps) / self.sqrt_alpha_bar[t].view(shape)


def information_bottleneck_curve(betas: np.ndarray, x0_second_moment: float = 1.0) -> np.ndarray:
    """C_t = E KL(q(x_{t-1} | x_t, x_0) || N(0, I)) per dimension, t = 1..T-1 (EncDiff eq. 5).

    The posterior is N(mu_t, beta~_t) with mu_t = a_t x_0 + b_t x_t,
    a_t = sqrt(abar_{t-1}) beta_t / (1 - abar_t), b_t = sqrt(alpha_t) (1 - abar_{t-1}) / (1 - abar_t),
    beta~_t = (1 - abar_{t-1}) / (1 - abar_t) beta_t, and KL = 1/2 (beta~ - 1 - log beta~ + mu^2).
    The expectation over x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps uses
    E[mu^2] = (a_t + b_t sqrt(abar_t))^2 E[x_0^2] + b_t^2 (1 - abar_t), with E[x_0^2] given.
    """
    betas = np.asarray(betas, dtype=np.float64)
    abar = alpha_bar_of(betas)
    beta, ab, ab_prev = betas[1:], abar[1:], abar[:-1]
    a = np.sqrt(ab_prev) * beta / (1 - ab)
    b = np.sqrt(1 - beta) * (1 - ab_prev) / (1 - ab)
    var = (1 - ab_prev) / (1 - ab) * beta
    mu2 = (a + b * np.sqrt(ab)) ** 2 * x0_second_moment + b**2 * (1 - ab)
    return 0.5 * (var - 1 - np.log(var) + mu2)
