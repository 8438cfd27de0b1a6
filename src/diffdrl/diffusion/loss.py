"""The plain diffusion objective EncDiff trains with: predict the added noise (epsilon), plus the
regularisers a model composes into it (as EDM's loss, it returns the loss and its named terms)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

from diffdrl.diffusion.draws import StepDraws, step_draws
from diffdrl.diffusion.schedule import EpsModel, NoiseSchedule

LOSSES = ("l1", "mse")
# "none": the paper's plain epsilon loss. "truncated_snr" (Salimans & Ho 2022): the error is
# measured in x0 space where the signal-to-noise ratio is below 1 (high noise) and in epsilon space
# above it. At high noise an epsilon error hides a large x0 error, so the plain loss gives the
# tokens, which only matter there, a weak gradient; this weighting is meant to undo that. On a
# small CPU budget it learnt slower than the plain loss (docs/small_budget.md).
WEIGHTINGS = ("none", "truncated_snr")

# A regulariser of the noised batch the loss has just drawn: (x_t, t) -> a scalar penalty.
Regulariser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def epsilon_loss(
    eps_model: EpsModel,
    x0: torch.Tensor,
    *,
    schedule: NoiseSchedule,
    kind: str = "l1",
    draws: StepDraws | None = None,
    weighting: str = "none",
    t: torch.Tensor | None = None,
    regularisers: Mapping[str, tuple[float, Regulariser]] | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The simple diffusion loss (Ho et al. 2020, eq. 14; EncDiff eq. 3 with the concept tokens
    closed over by ``eps_model``), one Monte Carlo sample of t and eps per image, and its terms:

        1. t ~ p(t)                      uniform on {0..T-1}, or biased to high noise (``high_noise_bias``)
        2. eps ~ N(0, I)
        3. x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps                       (DDPM eq. 4)
        4. loss = mean w_t |eps - eps_theta(x_t, t)|   (L1, the released code; MSE, the paper)
        5.      + sum_r weight_r R_r(x_t, t)            (``regularisers``: name -> (weight, R_r))

    with w_t = 1 unless ``weighting`` says otherwise (``WEIGHTINGS``, ``snr_weight``). t and eps come
    from ``draws`` (``diffusion.draws``: reproducible, and the same rows a single process would draw
    when the batch is one process's slice); without it, from the global RNG. ``t``: the timesteps
    when the caller drew them (from the same draws, before eps). Returns (loss, terms), the terms
    being each regulariser's value R_r, detached, by name.
    """
    if kind not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {kind!r}")
    if weighting not in WEIGHTINGS:
        raise ValueError(f"loss weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    draws = step_draws(draws, x0.shape[0], x0.device)
    if t is None:
        t = schedule.sample_timesteps(draws).to(x0.device)  # 1. (B,)
    eps = draws.normal(*x0.shape[1:], dtype=x0.dtype).to(x0.device)  # 2. (B, C, H, W)
    x_t = schedule.q_sample(x0, t, eps)  # 3.
    err = eps_model(x_t, t).float() - eps  # 4.
    if weighting == "none":
        loss = err.abs().mean() if kind == "l1" else err.square().mean()
    else:
        per_sample = (err.abs() if kind == "l1" else err.square()).flatten(1).mean(1)
        loss = (snr_weight(schedule, t, kind) * per_sample).mean()
    terms = {}
    for name, (weight, regulariser) in (regularisers or {}).items():  # 5.
        value = regulariser(x_t, t)
        terms[name] = value.detach()
        loss = loss + weight * value
    return loss, terms


def snr_weight(schedule: NoiseSchedule, t: torch.Tensor, kind: str) -> torch.Tensor:
    """Truncated-SNR weights for an epsilon loss: max(1, 1 / SNR_t) for MSE, and its square root
    for L1 (x0 - x0_hat = (eps - eps_hat) / sqrt(SNR_t)); SNR_t = alpha_bar_t / (1 - alpha_bar_t)."""
    alpha_bar = schedule.alpha_bar[t]
    inverse_snr = (1.0 - alpha_bar) / alpha_bar
    return inverse_snr.clamp(min=1.0).pow(1.0 if kind == "mse" else 0.5)
