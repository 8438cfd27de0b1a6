"""Subspace diffusion at high noise (Jing et al., ECCV 2022; bjing2016/subspace-diffusion).

Past a cutoff t1 the sample lives in the 2x-pooled subspace: with U the orthonormal upsampling
(nearest x2, divided by 2: each 2x2 block's unit vector (1/2, 1/2, 1/2, 1/2)), y = U^T x is 2x2
average pooling times 2, and P = U U^T projects onto the subspace (d = D / 4 dimensions). The
orthogonal part (I - P) x_t is modelled as Gaussian with per-dimension variance
abar_t sigma_perp^2 + (1 - abar_t), sigma_perp^2 = E ||x_0 - P x_0||^2 / (D - d) from the data.

Sampling: for grid t > t1, DDIM runs on y only; the network is fed x_t = U y_t + n_t with
n_t = std_perp(t) (I - P) z for one fixed z (the exact DDIM-ODE path of a Gaussian component), and
its eps is projected, eps_y = U^T eps. At t1 the full x = U y + n_t1 continues with plain DDIM.
Deviation (ours): Jing et al. train a separate low-resolution score model for the subspace; we
project the full network's eps, so this tests the Gaussian-orthogonal approximation, not a compute
saving. t1 comes from a sweep (``divergence_sweep``, ours): the 1-D Wasserstein-2 distance between
the per-pixel orthogonal residuals of noised data, standardised by the model's std, and N(0, 1)
(pixel marginals, because random projections look Gaussian by the central limit theorem whatever
the data); t1 is the lowest grid t from which on (toward T) it stays below tol.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F
from tqdm.auto import tqdm

from diffdrl.diffusion.sampling import EDIT_STEPS
from diffdrl.diffusion.schedule import EpsModel
from diffdrl.hspace.asymmetric import asymmetric_step, ddim_grid


def down(x: torch.Tensor) -> torch.Tensor:
    """U^T x: 2x2 average pooling times 2 (orthonormal coefficients)."""
    if x.shape[-1] % 2 or x.shape[-2] % 2:
        raise ValueError(f"subspace diffusion needs even image sides, got {tuple(x.shape[-2:])}")
    return 2.0 * F.avg_pool2d(x, 2)


def up(y: torch.Tensor) -> torch.Tensor:
    """U y: nearest upsampling divided by 2 (so U^T U = I)."""
    return F.interpolate(y, scale_factor=2, mode="nearest") / 2.0


def project(x: torch.Tensor) -> torch.Tensor:
    """P x = U U^T x."""
    return up(down(x))


def sigma_perp(x0: torch.Tensor) -> float:
    """RMS distance per orthogonal dimension of images x0 (B, C, H, W) to the pooled subspace."""
    residual = (x0 - project(x0)).flatten(1)
    dims = residual.shape[1] * 3 / 4  # D - d
    return float((residual.pow(2).sum(1).mean() / dims).sqrt())


def _std_perp(abar: float, s_perp: float) -> float:
    return float(np.sqrt(abar * s_perp**2 + 1.0 - abar))


@torch.no_grad()
def divergence_sweep(x0: torch.Tensor, betas: np.ndarray, steps: int = EDIT_STEPS, seed: int = 0) -> dict:
    """Per grid t, the 1-D Wasserstein-2 distance between the pooled per-pixel orthogonal residuals
    of x_t, standardised by the Gaussian model's std, and N(0, 1) (module docstring)."""
    if len(x0) < 16:
        raise ValueError(f"the divergence sweep needs at least 16 images, got {len(x0)}")
    gen = torch.Generator().manual_seed(seed)
    s_perp = sigma_perp(x0)
    t_grid, abar, _ = ddim_grid(betas, steps)
    div = []
    for a in abar:
        x_t = a**0.5 * x0 + (1 - a) ** 0.5 * torch.randn(x0.shape, generator=gen)
        # a pixel's residual from its 2x2 block mean has 3/4 of the per-dimension variance
        r = (x_t - project(x_t)).flatten() / (_std_perp(float(a), s_perp) * 0.75**0.5)
        n = len(r)
        normal = torch.distributions.Normal(0.0, 1.0).icdf((torch.arange(n) + 0.5) / n)
        div.append(float((r.sort().values - normal).pow(2).mean().sqrt()))
    return {"t": t_grid.tolist(), "divergence": div, "sigma_perp": s_perp}


def choose_t1(sweep: dict, tol: float = 0.02) -> int:
    """The lowest grid t from which on (toward T) the divergence stays <= tol; T-1 if none."""
    if not tol > 0:
        raise ValueError(f"tol must be > 0, got {tol}")
    t, d = np.asarray(sweep["t"]), np.asarray(sweep["divergence"])
    order = np.argsort(t)[::-1]  # noisiest first
    t1 = int(t[order[0]])
    for i in order:
        if d[i] > tol:
            break
        t1 = int(t[i])
    return t1


@torch.no_grad()
def subspace_sample(
    denoise: EpsModel,
    x_T: torch.Tensor,
    betas: np.ndarray,
    t1: int,
    s_perp: float,
    *,
    steps: int = EDIT_STEPS,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Deterministic DDIM with the pooled-subspace phase for grid t > t1 (module docstring)."""
    if not 0 <= t1 < len(betas):
        raise ValueError(f"t1 must be in [0, {len(betas)}), got {t1}")
    if not s_perp >= 0:
        raise ValueError(f"sigma_perp must be >= 0, got {s_perp}")
    z = torch.randn(x_T.shape, generator=generator, device=x_T.device, dtype=x_T.dtype)
    z_perp = z - project(z)
    y = down(x_T)
    x = None
    grid = list(zip(*ddim_grid(betas, steps), strict=True))
    for t, abar_t, abar_prev in tqdm(grid, disable=not progress, desc="subspace sampling", leave=False):
        tt = torch.full((len(x_T),), int(t), device=x_T.device, dtype=torch.long)
        if t > t1:
            x_in = up(y) + _std_perp(float(abar_t), s_perp) * z_perp
            eps_y = down(denoise(x_in, tt))
            y = asymmetric_step(y, eps_y, eps_y, float(abar_t), float(abar_prev))
            continue
        if x is None:  # leave the subspace: add the Gaussian orthogonal part at this noise level
            x = up(y) + _std_perp(float(abar_t), s_perp) * z_perp
        eps = denoise(x, tt)
        x = asymmetric_step(x, eps, eps, float(abar_t), float(abar_prev))
    if x is None:
        x = up(y)
    return x.clamp(-1.0, 1.0)
