"""Units -> images for every model: the one place the pictures turn (edited) units into pixels.

Swaps, traversals, interpolations and reconstructions only need "units -> image"; how depends on
what the model has (capabilities, not classes, so a new model with the same members just works):

| the model has                | units (B, K) -> images (B, C, H, W) in [-1, 1]                     |
|------------------------------|--------------------------------------------------------------------|
| ``generate`` (diffusion)     | ``generate(tokens(units), sampler, steps, eta, x_T)``: EncDiff and |
|                              | its ablations (AdaGN, EncDiff-V, DyGA)                             |
| ``tokens`` and ``decode``    | ``decode(tokens(units))``, one deterministic pass: EncDec          |
| ``decode`` only              | ``decode(units)``, the Bernoulli means: the VAE baselines          |

Sampling options (``sampler``, ``steps``, ``eta``, the start ``x_T``, the interchange's ``start``,
attention ``timesteps``) exist only for diffusion models. Left unset (``None``) they take the
pictures' usual values (DDIM, 50 steps, eta 0 for grids, eta 1 for reconstructions, fresh noise);
set for a model that decodes deterministically they are a ``ValueError`` naming them, never
silently ignored, so no command line suggests a setting took effect that did not. ``seed`` is
always accepted: it draws x_T for a diffusion model and is unused by a deterministic decoder (on
the command line ``--seed`` also picks the images).
"""

from __future__ import annotations

import numpy as np
import torch

from diffdrl.data.ground_truth import to_model_input
from diffdrl.diffusion.sampling import DEFAULT_SAMPLING, RECONSTRUCTION_ETA, STARTS, Sampling
from diffdrl.models.representation import has_tokens


def model_name(model) -> str:
    """The model's registry name (``model.name`` of its config), for messages."""
    return getattr(getattr(model, "config", None), "name", type(model).__name__)


def can_sample(model) -> bool:
    """Whether the model generates through a sampler (diffusion) rather than decoding in one pass."""
    return callable(getattr(model, "generate", None))


def resolve_sampling(
    model,
    sampler: str | None = None,
    steps: int | None = None,
    eta: float | None = None,
    *,
    default_eta: float = DEFAULT_SAMPLING.eta,
    defaults: Sampling = DEFAULT_SAMPLING,
    **other,
) -> dict:
    """The sampling options with unset ones (None) at ``defaults`` (the pictures': DEFAULT_SAMPLING;
    eta at ``default_eta``); ``{}`` for a model without a sampler, where setting any of them (or of
    ``other``, e.g. ``start``) is a ``ValueError`` naming them; an unknown ``start`` is one for
    every model."""
    start = other.get("start")
    if start is not None and start not in STARTS:
        raise ValueError(f"start must be one of {STARTS}, got {start!r}")
    given = [k for k, v in {"sampler": sampler, "steps": steps, "eta": eta, **other}.items() if v is not None]
    if not can_sample(model):
        if given:
            raise ValueError(
                f"{', '.join(given)}: sampling options of diffusion models, but model "
                f"{model_name(model)!r} decodes its units in one pass (deterministic); leave them unset"
            )
        return {}
    return {
        "sampler": sampler or defaults.sampler,
        "steps": defaults.steps if steps is None else steps,
        "eta": default_eta if eta is None else eta,
    }


def describe_sampling(model, sampler=None, steps=None, eta=None, *, default_eta=DEFAULT_SAMPLING.eta) -> str:
    """A short caption of how the pictures are made with these options."""
    options = resolve_sampling(model, sampler, steps, eta, default_eta=default_eta)
    if not options:
        return f"{model_name(model)}: units decoded in one deterministic pass"
    return f"{options['sampler']}, {options['steps']} steps, eta {options['eta']:g}"


def shared_start(model, seed: int = 0, count: int = 1) -> torch.Tensor | None:
    """x_T (count, C, H, W) ~ N(0, I) from ``seed``, to share between the images of a grid
    (``render_units`` broadcasts it); ``None`` for a model without a sampler (nothing to share)."""
    if not can_sample(model):
        return None
    device = next(model.parameters()).device
    gen = torch.Generator(device).manual_seed(seed)
    shape = (count, *model.noise_shape)  # pixels, or a first stage's latents
    return torch.randn(shape, generator=gen, device=device)


def inverted_start(model, images: np.ndarray | torch.Tensor, steps: int | None = None) -> torch.Tensor:
    """x_T (B, *noise_shape) from deterministic DDIM inversion of ``images`` (uint8 (B, H, W, C) or
    float (B, C, H, W)) under their own tokens: DDIM with eta 0 from it retraces each image, so an
    edit of the units changes what they carry and keeps the rest (the diffusion-autoencoder way of
    drawing edits). A ``ValueError`` for a model that cannot invert."""
    if not callable(getattr(model, "invert", None)):
        raise ValueError(
            f"start 'inversion' needs a diffusion model that inverts; {model_name(model)!r} does not"
        )
    float_input = torch.is_tensor(images) and images.dtype != torch.uint8
    x0 = images if float_input else to_model_input(images)
    steps = DEFAULT_SAMPLING.steps if steps is None else steps
    return model.invert(x0, model.tokens(model.encode(images)), steps)


@torch.no_grad()
def render_units(
    model,
    units: torch.Tensor,
    *,
    x_T: torch.Tensor | None = None,
    seed: int = 0,
    sampler: str | None = None,
    steps: int | None = None,
    eta: float | None = None,
) -> torch.Tensor:
    """Images (..., C, H, W) in [-1, 1] of units (..., K), any leading shape, for any model.

    Diffusion: tokens -> ``sampler`` (default DDIM, 50 steps, eta 0) from ``x_T`` broadcast against
    the leading shape (e.g. (P, C, H, W) shared down every row of an (R, P) grid), or from fresh
    noise drawn from ``seed`` per image. Other models decode deterministically (module docstring).
    """
    options = resolve_sampling(model, sampler, steps, eta, x_T=x_T)
    lead, flat = units.shape[:-1], units.reshape(-1, units.shape[-1])  # (B, K)
    if options:
        if x_T is not None:
            x_T = x_T.expand(*lead, *x_T.shape[-3:]).reshape(-1, *x_T.shape[-3:])  # (B, C, H, W)
        images = model.generate(model.tokens(flat), seed=seed, x_T=x_T, **options)
    elif has_tokens(model):
        images = model.decode(model.tokens(flat))  # EncDec: its decoder reads tokens
    else:
        images = model.decode(flat)  # a VAE: its decoder reads the units
    images = images.float().clamp(-1.0, 1.0)  # a no-op for samplers, which clamp already
    return images.reshape(*lead, *images.shape[1:])


@torch.no_grad()
def reconstruct(
    model,
    images: np.ndarray | torch.Tensor,
    *,
    seed: int = 0,
    sampler: str | None = None,
    steps: int | None = None,
    eta: float | None = None,
    start: str | None = None,
) -> torch.Tensor:
    """Images (B, C, H, W) in [-1, 1] rendered from the units of ``images`` (uint8 (B, H, W, C) or
    float (B, C, H, W)): a VAE's or EncDec's decode(encode(x)); a diffusion model's generation from
    fresh noise drawn from ``seed`` under the images' tokens (eta default 1, as EncDiff samples),
    or with ``start="inversion"`` from each image's DDIM-inverted x_T (eta default 0: the
    deterministic round trip)."""
    inverted = start == "inversion"
    default_eta = DEFAULT_SAMPLING.eta if inverted else RECONSTRUCTION_ETA
    options = resolve_sampling(model, sampler, steps, eta, default_eta=default_eta, start=start)
    x_T = inverted_start(model, images, options["steps"]) if inverted else None
    return render_units(model, model.encode(images), seed=seed, x_T=x_T, **options)
