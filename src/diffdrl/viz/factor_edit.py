"""Edit one ground-truth factor of a run's images and draw the edits: Asyrp's learned DeltaBlock
(``hspace.learned``, strengths = coefficients) or classifier guidance (``hspace.guidance``,
strengths = guidance scales). One row per image, one column per strength.

``edit_factor`` is the ``diffdrl edit`` command as one call; classifiers and DeltaBlocks are
trained on first use and kept in ``RUN/hspace/`` (``hspace.learned``).
"""

from __future__ import annotations

from pathlib import Path

import torch

from diffdrl.diffusion.sampling import STRIP_STEPS
from diffdrl.hspace import learned
from diffdrl.hspace.asymmetric import check_interval
from diffdrl.hspace.bottleneck import denoiser_of
from diffdrl.hspace.directions import Sources, betas_of, sources
from diffdrl.hspace.interval import measure_interval
from diffdrl.training.runs import Run
from diffdrl.viz.hspace import save_rows

EDIT_METHODS = ("delta", "guidance")
COEFFICIENTS = (-1.0, 0.0, 0.5, 1.0, 1.5)  # DeltaBlock strengths (negative reverses)
SCALES = (0.0, 1.0, 3.0, 10.0)  # guidance scales (0: the unguided sampler)


def edit_rows(edit, strengths, count: int) -> dict[str, torch.Tensor]:
    """``{"img i": (S, C, H, W)}``: ``edit(strength)`` (B, C, H, W) for each strength, by image."""
    columns = [edit(s) for s in strengths]  # S x (B, C, H, W)
    return {f"img {i + 1}": torch.stack([c[i] for c in columns]) for i in range(count)}


def learned_edit_rows(
    run: Run, src: Sources, factor: str, value: int, coefficients, *, t_edit: int | None, train_images: int,
    seed: int, steps: int, classifier_budget: tuple[int, int], progress: bool,
) -> tuple[dict[str, torch.Tensor], str]:  # fmt: skip
    """Rows of the sources edited by the DeltaBlock toward ``factor=value``, and the picture title.

    The block trains on ``train_images`` other images; ``t_edit`` None measures the interval by
    the documented criterion (``hspace.interval``) on those images."""
    model, folder = run.model, Path(run.path) / "hspace"
    clf = learned.classifier_for(model, run.data, folder, "clean", *classifier_budget, progress=progress)
    train_src = sources(model, run.sample(train_images, seed + 1)[1], steps)
    if t_edit is None:
        denoise = denoiser_of(model, train_src.tokens)
        t_edit = measure_interval(denoise, train_src.x0, betas_of(model), steps)["t_edit"]
    block, info = learned.delta_for(
        model, train_src, clf, folder, factor, value, t_edit, steps=steps, progress=progress
    )
    rows = edit_rows(
        lambda c: learned.delta_edit(model, src, block, info, c, steps), coefficients, len(src.x0)
    )
    return rows, f"Asyrp DeltaBlock toward {factor}={value} (t_edit {info['t_edit']})"


def edit_factor(
    run: Run,
    factor: str,
    value: int = 0,
    out: str | Path | None = None,
    *,
    method: str = "delta",
    strengths=None,
    images: int = 4,
    train_images: int = 32,
    steps: int = STRIP_STEPS,
    t_edit: int | None = None,
    classifier_steps: int = 400,
    classifier_images: int = 4096,
    seed: int = 0,
    progress: bool = False,
) -> Path:
    """The PNG (default ``RUN/samples/edit_METHOD_FACTOR_VALUE.png``) of ``images`` dataset images
    with ``factor`` moved toward ``value``; ``strengths``: coefficients for ``delta`` (default
    ``COEFFICIENTS``), guidance scales for ``guidance`` (default ``SCALES``)."""
    if method not in EDIT_METHODS:
        raise ValueError(f"method must be one of {EDIT_METHODS}, got {method!r}")
    what = "guidance" if method == "guidance" else "a learned edit"
    learned.require_factors(run.data, f"diffdrl edit ({what})")
    learned.check_factor(run.data, factor, value)
    model = run.model
    if t_edit is not None:
        check_interval(t_edit, -1, model.config.schedule.timesteps)
    src = sources(model, run.sample(images, seed)[1], steps)
    budget = (classifier_steps, classifier_images)
    if method == "guidance":
        strengths = list(SCALES if strengths is None else strengths)
        folder = Path(run.path) / "hspace"
        clf = learned.classifier_for(model, run.data, folder, "noisy", *budget, progress=progress)

        def edit(scale):
            return learned.guidance_edit(model, src, clf, factor, value, scale, steps)

        rows = edit_rows(edit, strengths, images)
        columns, title = [f"s={s:g}" for s in strengths], f"classifier guidance toward {factor}={value}"
    else:
        strengths = list(COEFFICIENTS if strengths is None else strengths)
        rows, title = learned_edit_rows(
            run, src, factor, value, strengths, t_edit=t_edit, train_images=train_images, seed=seed,
            steps=steps, classifier_budget=budget, progress=progress,
        )  # fmt: skip
        columns = [f"c={c:g}" for c in strengths]
    default = Path(run.path) / "samples" / f"edit_{method}_{factor}_{value}.png"
    return save_rows(rows, Path(out) if out else default, columns, title)
