"""Classifier guidance on a ground-truth factor (Dhariwal & Nichol 2021; openai/guided-diffusion).

The guided noise prediction, in score form (their Algorithm 2 for DDIM):

    eps_hat(x_t) = eps(x_t) - s sqrt(1 - abar_t) grad_x log p(y | x_t, t)

with p a noise-conditional classifier trained on x_t at random t (``classifier.py``) and s the
guidance scale (1-10 in the paper; s = 0 is the unguided sampler, exactly). Ours: y is a
ground-truth factor value of the synthetic data, and the denoiser is EncDiff under the tokens of
some image (or zero tokens, ``bottleneck.null_tokens``): guidance then has to pull against what the
tokens say, which is the comparison the benchmark makes with EncDiff's own unit swaps.
"""

from __future__ import annotations

import numpy as np
import torch

from diffdrl.diffusion.samplers import sample
from diffdrl.diffusion.sampling import DEFAULT_SAMPLING, EDIT_STEPS
from diffdrl.diffusion.schedule import EpsModel, alpha_bar_of
from diffdrl.hspace.classifier import FactorClassifier


def guided_denoise(
    denoise: EpsModel,
    classifier: FactorClassifier,
    factor: str,
    value: int | torch.Tensor,
    scale: float,
    betas: np.ndarray,
) -> EpsModel:
    """``denoise`` with the classifier's gradient toward ``factor`` = ``value`` added (module doc)."""
    if not classifier.config.noisy:
        raise ValueError("classifier guidance needs a noise-conditional classifier (trained on x_t)")
    f = classifier.factor_index(factor)
    size = classifier.config.factor_sizes[f]
    values = torch.as_tensor(value).long()
    if ((values < 0) | (values >= size)).any():
        raise ValueError(f"value for factor {factor!r} must be in [0, {size}), got {value}")
    if not np.isfinite(scale):
        raise ValueError(f"guidance scale must be finite, got {scale}")
    if len(betas) != classifier.config.timesteps:
        raise ValueError(
            f"the classifier was trained for {classifier.config.timesteps} timesteps, "
            f"the model has {len(betas)}"
        )
    sigma = torch.from_numpy(np.sqrt(1.0 - alpha_bar_of(betas))).float()

    def denoise_guided(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        eps = denoise(x_t, t)
        with torch.enable_grad():
            x = x_t.detach().requires_grad_(True)
            y = values.to(x.device).expand(len(x))
            (grad,) = torch.autograd.grad(classifier.log_prob(x, f, y, t).sum(), x)
        return eps - scale * sigma.to(x.device)[t].view(-1, 1, 1, 1) * grad

    return denoise_guided


def guided_sample(
    denoise: EpsModel,
    classifier: FactorClassifier,
    factor: str,
    value,
    scale: float,
    x_T: torch.Tensor,
    betas: np.ndarray,
    *,
    sampler: str = DEFAULT_SAMPLING.sampler,
    steps: int = EDIT_STEPS,
    eta: float = DEFAULT_SAMPLING.eta,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Images guided toward ``factor`` = ``value`` through the library's own sampler loop."""
    guided = guided_denoise(denoise, classifier, factor, value, scale, betas)
    return sample(guided, x_T, betas, sampler, steps, eta, generator, progress)
