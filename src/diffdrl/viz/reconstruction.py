"""Reconstructions: a run's images regenerated under their own units, scored and drawn.

``reconstruction_scores`` is the one place a reconstruction is scored (MSE, PSNR and SSIM in
[0, 1], plus FID and LPIPS when their feature networks are given); the report's reconstruction
section and ``sample_reconstructions`` (the ``diffdrl sample`` command) both use it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from diffdrl.data.ground_truth import to_model_input
from diffdrl.diffusion.sampling import DEFAULT_SAMPLING, RECONSTRUCTION_ETA
from diffdrl.metrics.reconstruction import image_similarity
from diffdrl.training.runs import Run
from diffdrl.viz.grid import save_grid, to_uint8
from diffdrl.viz.render import describe_sampling, reconstruct

SHOWN = 16  # images drawn in the grid (all ``num`` are scored)


def reconstruction_scores(
    images: np.ndarray, generated: torch.Tensor, inception=None, lpips_network=None
) -> dict[str, float]:
    """Scores of ``generated`` (B, C, H, W) in [-1, 1] against uint8 ``images`` (B, H, W, C):
    ``reconstruction.mse``/``psnr``/``ssim`` in [0, 1]; ``fid`` and ``reconstruction.lpips`` when
    an Inception or LPIPS network (``metrics.generation.load_feature_network``) is given."""
    from diffdrl.metrics.generation import fid, lpips

    generated = generated.detach().cpu()
    scores = image_similarity((to_model_input(images) + 1) / 2, (generated.float() + 1) / 2)
    if inception is not None or lpips_network is not None:
        pixels = to_uint8(generated)
        if inception is not None:
            scores["fid"] = fid(inception, images, pixels)
        if lpips_network is not None:
            scores["reconstruction.lpips"] = lpips(lpips_network, images, pixels)
    return scores


def reconstruction_title(model, sampler=None, steps=None, eta=None, start=None) -> str:
    """How the reconstructions are made (and a check of the options: a ``ValueError`` for
    sampling options of a model without a sampler)."""
    inverted = start == "inversion"
    default_eta = DEFAULT_SAMPLING.eta if inverted else RECONSTRUCTION_ETA
    title = describe_sampling(model, sampler, steps, eta, default_eta=default_eta)
    return title + (", from each image's DDIM-inverted x_T" if inverted else "")


def sample_reconstructions(
    run: Run,
    out: str | Path,
    *,
    num: int = 64,
    seed: int = 0,
    sampler: str | None = None,
    steps: int | None = None,
    eta: float | None = None,
    start: str | None = None,
    inception: str | Path | None = None,
    lpips: str | Path | None = None,
) -> tuple[Path, dict[str, float]]:
    """``num`` dataset images of the run regenerated under their own units: the grid of the first
    ``SHOWN`` (inputs above, reconstructions below) written to ``out``, and the scores of all.

    ``inception`` / ``lpips``: paths of feature networks (TorchScript or ``.pt2``) for FID and
    LPIPS; they are loaded first, so a bad file is reported before minutes of sampling."""
    from diffdrl.metrics.generation import load_feature_network

    inception_net = load_feature_network(inception, "Inception") if inception else None
    lpips_net = load_feature_network(lpips, "LPIPS") if lpips else None
    sampling = {"sampler": sampler, "steps": steps, "eta": eta}
    title = reconstruction_title(run.model, start=start, **sampling)  # checks them too
    _, images = run.sample(num, seed)
    generated = reconstruct(run.model, images, seed=seed, start=start, **sampling).cpu()
    scores = reconstruction_scores(images, generated, inception_net, lpips_net)
    grid = [images[:SHOWN], to_uint8(generated)[:SHOWN]]
    return save_grid(grid, out, ["input", "generated"], title=title), scores
