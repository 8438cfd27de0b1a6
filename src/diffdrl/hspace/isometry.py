"""Isometric regulariser of h-space (Hahm et al., ICML 2024; isno0907/isodiff), as a training option.

It makes the map x_t -> h_t a scaled isometry, so that equal steps in x_t give equal steps in h_t
(smoother, more linear h-space edits). With J = dh_t/dx_t and R = J^T J (the pullback metric with
G = I: the released stereographic metric reduces to it),

    L_iso = Tr(R^2) / Tr(R)^2,   Tr R = E_u ||J u||^2,  Tr R^2 = E_u ||J^T J u||^2,  u ~ N(0, I),

estimated by Hutchinson's method with differentiable jvp / vjp (create_graph). L_iso lies in
[1/n, 1] and is 1/n exactly when J's singular values are all equal. Gating (the paper's): with
probability ``probability`` a training step draws t in [T/2, T) and adds ``weight`` L_iso;
otherwise it is the model's ordinary step. The gated step's diffusion term is the model's own
epsilon loss at those t (``diffusion/loss.py``: its L1/MSE and ``loss_weighting``), which composes
L_iso as a regulariser (``isometry_step``, ``Isometry``). Variant chosen on purpose: this
trace-ratio form (the latent-model loss), not the pixel script's path-length penalty. Deviation
(ours): the ordinary step keeps the model's own timestep draw rather than the paper's [0, T/2),
because the tiny presets bias t toward high noise, where EncDiff's encoder learns.

``target="tokens"`` is ours: the same estimator on c -> h_t (EncDiff's tokens to the bottleneck),
asking the denoiser to read the tokens isometrically.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from diffdrl.diffusion.draws import StepDraws
from diffdrl.diffusion.loss import Regulariser

TARGETS = ("x", "tokens")


@dataclass
class IsometryConfig:
    """``model.isometry``: off by default (``weight`` 0 = the EncDiff paper)."""

    weight: float = 0.0  # lambda_iso (Hahm et al.: 1e-3 latent, 1e-6 pixel path-length variant)
    target: str = "x"  # "x": x_t -> h_t (Hahm et al.); "tokens": c -> h_t (ours)
    probability: float = 0.5  # share of steps at high noise that carry the regulariser
    samples: int = 1  # Hutchinson probes per image

    def __post_init__(self):
        if not self.weight >= 0:
            raise ValueError(f"model.isometry.weight must be >= 0, got {self.weight}")
        if self.target not in TARGETS:
            raise ValueError(f"model.isometry.target must be one of {TARGETS}, got {self.target!r}")
        if not 0 < self.probability <= 1:
            raise ValueError(f"model.isometry.probability must be in (0, 1], got {self.probability}")
        if self.samples < 1:
            raise ValueError(f"model.isometry.samples must be >= 1, got {self.samples}")


def trace_ratio(
    f: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    samples: int = 1,
    generator: torch.Generator | None = None,
    create_graph: bool = True,
) -> torch.Tensor:
    """Hutchinson estimate of Tr(R^2) / Tr(R)^2 for R = J^T J, J = df/dx at x (rows independent).

    J u comes from reverse over reverse (J u = d/dw <J^T w, u>), which torch supports for every
    layer of our U-Nets at any order (forward mode does not for diffusers' attention kernels)."""
    x = x.detach().requires_grad_(True) if not x.requires_grad else x
    xs = x.repeat(samples, *([1] * (x.ndim - 1)))
    h = f(xs)
    u = torch.randn(xs.shape, generator=generator, device=x.device, dtype=x.dtype)
    w = torch.zeros_like(h, requires_grad=True)
    (jt_w,) = torch.autograd.grad(h, xs, w, create_graph=True)
    (ju,) = torch.autograd.grad(jt_w, w, u, create_graph=True)
    (jtju,) = torch.autograd.grad(h, xs, ju, create_graph=create_graph)
    return jtju.pow(2).flatten(1).sum(1).mean() / ju.pow(2).flatten(1).sum(1).mean().pow(2)


def exact_trace_ratio(jacobian: torch.Tensor) -> torch.Tensor:
    """Tr(R^2) / Tr(R)^2 of an explicit Jacobian (m, n): the quantity ``trace_ratio`` estimates."""
    r = jacobian.T @ jacobian
    return torch.trace(r @ r) / torch.trace(r) ** 2


def isometry_step(
    config: IsometryConfig, timesteps: int, denoiser: nn.Module, c: torch.Tensor, draws: StepDraws
) -> tuple[torch.Tensor | None, dict[str, tuple[float, Regulariser]]]:
    """The gate of one training step (module docstring): with probability ``config.probability``
    (one shared draw), timesteps from the high-noise half of the ``timesteps`` and the regulariser
    ``{"isometry": (weight, L_iso)}`` for ``epsilon_loss`` to compose; otherwise ``(None, {})``, the
    ordinary step. ``denoiser(x_t, t, c)`` reads tokens ``c`` (B, N, d); the probes are shared draws."""
    draw = torch.rand((), device=draws.device, generator=draws.generator)
    if float(draw) >= config.probability:
        return None, {}
    t = draws.integers(timesteps // 2, timesteps).to(c.device)  # the high-noise half
    return t, {"isometry": (config.weight, Isometry(config, denoiser, c, draws.generator))}


class Isometry:
    """L_iso of the denoiser's h-space at (x_t, t) under tokens c (B, N, d): a ``Regulariser``."""

    def __init__(self, config: IsometryConfig, denoiser: nn.Module, c: torch.Tensor, generator=None):
        self.config, self.denoiser, self.c, self.generator = config, denoiser, c, generator

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        from diffdrl.hspace.bottleneck import HSpace, unet_of

        space, c, denoiser = HSpace(unet_of(self.denoiser)), self.c, self.denoiser

        def h_of_x(x):  # x_t -> h_t, the tokens held fixed (the k probes are stacked on the batch)
            k = len(x) // len(c)
            return space.bottleneck(lambda a, s: denoiser(a, s, c.repeat(k, 1, 1)), x, t.repeat(k))

        def h_of_c(cc):  # c -> h_t, x_t held fixed (ours)
            k = len(cc) // len(x_t)
            return space.bottleneck(lambda a, s: denoiser(a, s, cc), x_t.repeat(k, 1, 1, 1), t.repeat(k))

        f, at = (h_of_x, x_t) if self.config.target == "x" else (h_of_c, c)
        with sdpa_kernel([SDPBackend.MATH]):  # fused attention kernels have no double backward
            return trace_ratio(f, at, self.config.samples, self.generator)
