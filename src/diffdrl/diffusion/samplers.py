"""Samplers: turn a ``denoise(x_t, t) -> eps`` callable into images, and images back into noise.

The update rules are diffusers' schedulers (DDPM ancestral, DDIM, DPM-Solver++, UniPC), fed our
own beta table so that training and sampling share one schedule (``diffusion.schedule``). The
samplers never import a model: editing an image means changing its tokens, then calling these.
Their defaults (sampler, steps, eta) are ``diffusion.sampling.DEFAULT_SAMPLING``.
"""

from __future__ import annotations

import numpy as np
import torch
from diffusers import (
    DDIMInverseScheduler,
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    UniPCMultistepScheduler,
)
from tqdm.auto import tqdm

from diffdrl.diffusion.sampling import DEFAULT_SAMPLING, SAMPLER_NAMES
from diffdrl.diffusion.schedule import EpsModel

SAMPLERS = {
    "ddpm": DDPMScheduler,
    "ddim": DDIMScheduler,
    "dpm++": DPMSolverMultistepScheduler,
    "unipc": UniPCMultistepScheduler,
}
assert tuple(SAMPLERS) == SAMPLER_NAMES  # the names the command line offers (diffusion.sampling)


def make_scheduler(name: str, betas: np.ndarray, clip_sample: bool = False, clean_final_step: bool = True):
    """A diffusers scheduler of kind ``name`` over our beta table, epsilon-parameterised.

    ``clean_final_step``: DDIM's last step lands on alpha_bar = 1, i.e. returns the model's x0
    estimate, as DPM-Solver++, UniPC and DDPM do. False is LDM's DDIM sampler (the released code),
    which stops at alpha_bar_0 = 1 - beta_0 and so adds sqrt(beta_0) (~0.04 on [-1, 1]) of predicted
    noise, and with eta 1 as much fresh noise: a grain that shows on flat 32x32 pixel images.
    """
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r} (samplers: {', '.join(SAMPLERS)})")
    kwargs = dict(
        num_train_timesteps=len(betas),
        trained_betas=np.asarray(betas, dtype=np.float64),
        prediction_type="epsilon",
    )
    if name in ("ddpm", "ddim"):
        kwargs["clip_sample"] = clip_sample
    if name == "ddim":
        # clean_final_step (set_alpha_to_one): the last step lands on the clean image (alpha_bar = 1),
        # not on t = 0's noise level; with our beta_start 0.0015 that level leaves noise of std 0.04 in
        # every picture (tests/diffusion/test_sampler_contract.py)
        kwargs.update(set_alpha_to_one=clean_final_step, timestep_spacing="trailing")
    if name == "dpm++":
        kwargs.update(algorithm_type="dpmsolver++", solver_order=2)
    return SAMPLERS[name](**kwargs)


@torch.no_grad()
def sample(
    denoise: EpsModel,
    x_T: torch.Tensor,
    betas: np.ndarray,
    sampler: str = DEFAULT_SAMPLING.sampler,
    steps: int = DEFAULT_SAMPLING.steps,
    eta: float = DEFAULT_SAMPLING.eta,
    generator: torch.Generator | None = None,
    progress: bool = False,
    clamp: bool = True,
    clean_final_step: bool = True,
) -> torch.Tensor:
    """Run the reverse process from ``x_T`` to x_0 (clamped to [-1, 1] unless ``clamp=False``:
    a first stage's latents have no such range).

    ``eta`` is DDIM's stochasticity (0: deterministic, 1: DDPM-like; EncDiff samples with 1).
    ``generator`` drives the noise of stochastic steps (DDPM, DDIM with eta > 0).
    ``clean_final_step``: see ``make_scheduler`` (False: the released code's DDIM).
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    scheduler = make_scheduler(sampler, betas, clean_final_step=clean_final_step)
    if sampler == "ddpm":
        steps = len(betas)  # ancestral sampling is defined on the full chain
    scheduler.set_timesteps(steps, device=x_T.device)
    x = x_T * scheduler.init_noise_sigma
    extra = {"eta": eta} if sampler == "ddim" else {}
    if sampler in ("ddpm", "ddim"):
        extra["generator"] = generator
    for t in tqdm(scheduler.timesteps, disable=not progress, desc=f"{sampler} sampling", leave=False):
        eps = denoise(x, t.expand(x.shape[0]))
        x = scheduler.step(eps, t, x, **extra).prev_sample
    return x.clamp(-1.0, 1.0) if clamp else x


@torch.no_grad()
def ddim_invert(
    denoise: EpsModel,
    x0: torch.Tensor,
    betas: np.ndarray,
    steps: int = DEFAULT_SAMPLING.steps,
    progress: bool = False,
    clean_final_step: bool = True,
) -> torch.Tensor:
    """Deterministic DDIM inversion x_0 -> x_T; ``sample(..., 'ddim', eta=0)`` maps it back.

    Uses the same (trailing) timestep grid and the same end point (``clean_final_step``) as
    ``sample``'s DDIM, so inversion and generation retrace one path.
    """
    scheduler = DDIMInverseScheduler(
        num_train_timesteps=len(betas),
        trained_betas=np.asarray(betas),
        prediction_type="epsilon",
        clip_sample=False,
        set_alpha_to_one=clean_final_step,  # starts from the clean image, where ``sample``'s DDIM ends
        timestep_spacing="trailing",
    )
    scheduler.set_timesteps(steps, device=x0.device)
    x = x0
    for t in tqdm(scheduler.timesteps, disable=not progress, desc="DDIM inversion", leave=False):
        eps = denoise(x, t.expand(x.shape[0]))
        x = scheduler.step(eps, t, x).prev_sample
    return x
