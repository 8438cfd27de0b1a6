"""Edit strips of h-space directions: one row per (direction, source image), one column per
strength gamma, the unedited image (gamma 0) in the middle column.

``hspace_strips`` runs every unsupervised method of ``diffdrl.hspace.directions`` on the same
sources (DDIM-inverted real images) and ``save_strips`` draws one PNG per method.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from diffdrl.diffusion.sampling import STRIP_STEPS
from diffdrl.hspace import directions as hd
from diffdrl.hspace.bottleneck import denoiser_of
from diffdrl.hspace.interval import measure_interval
from diffdrl.viz.grid import save_grid, to_uint8

UNSUPERVISED = ("pca", "jacobian_x", "jacobian_c")
GAMMAS = (-3.0, -1.5, 0.0, 1.5, 3.0)


def check_methods(methods) -> tuple[str, ...]:
    bad = [m for m in methods if m not in UNSUPERVISED]
    if bad:
        raise ValueError(f"unknown h-space method(s) {', '.join(bad)} (methods: {', '.join(UNSUPERVISED)})")
    return tuple(methods)


def method_edit(model, method: str, src, fit, k: int, t_edit: int, steps: int):
    """(edit(gamma, j) -> images of the sources along direction j, the number of directions, their
    spectrum) for one method, its directions fitted on ``fit``."""
    if method == "pca":
        pca = hd.fit_pca(model, fit, k=min(k, len(fit.x0) - 1), steps=steps)  # k <= N - 1

        def edit(g, j):
            return hd.pca_edit(model, src, pca, j, g, t_edit, steps=steps)

        return edit, pca.components.shape[1], pca.std[0].tolist()
    if method == "jacobian_x":
        d, t = hd.jacobian_x(model, fit, t_edit, rank=k, steps=steps, iters=10)

        def edit(g, j):
            return hd.jacobian_x_edit(model, src, d, t, j, g, steps)

        return edit, k, d.singular.tolist()
    d, _ = hd.jacobian_c(model, fit, t_edit, rank=k, steps=steps)
    std = hd.token_direction_std(fit, d)

    def edit(g, j):
        return hd.jacobian_c_edit(model, src, d, j, g, std, steps)

    return edit, k, d.singular.tolist()


def hspace_strips(
    model,
    images: np.ndarray,
    *,
    methods=UNSUPERVISED,
    k: int = 3,
    gammas=GAMMAS,
    steps: int = STRIP_STEPS,
    pca_images: np.ndarray | None = None,
    t_edit: int | None = None,
    progress: bool = False,
) -> dict:
    """Edited images per method, (k, G, B, C, H, W), plus the interval and spectra used.

    ``pca_images`` (default: ``images``) are the N samples the PCA is fitted on. ``t_edit`` None
    measures it by the documented criterion (``hspace.interval``) on ``pca_images``."""
    methods = check_methods(methods)
    if k < 1:
        raise ValueError(f"k (directions per method) must be >= 1, got {k}")
    src = hd.sources(model, images, steps)
    fit = src if pca_images is None else hd.sources(model, pca_images, steps)
    betas = hd.betas_of(model)
    interval = measure_interval(denoiser_of(model, fit.tokens), fit.x0, betas, steps)
    if t_edit is not None:
        from diffdrl.hspace.asymmetric import check_interval

        check_interval(t_edit, -1, len(betas))
        interval["t_edit"], interval["t_boost"] = t_edit, min(interval["t_boost"], t_edit)
    t_e = interval["t_edit"]
    out = {"interval": interval, "gammas": list(gammas), "methods": {}}
    bar = tqdm(total=len(methods) * k * len(gammas), disable=not progress, desc="h-space edits", leave=False)

    def run(edit):
        cols = []
        for g in gammas:
            cols.append(edit(g))
            bar.update()
        return torch.stack(cols)

    for method in methods:
        edit, count, spectrum = method_edit(model, method, src, fit, k, t_e, steps)
        rows = [run(lambda g, j=j, edit=edit: edit(g, j)) for j in range(count)]
        out["methods"][method] = {"images": torch.stack(rows), "spectrum": spectrum}
    bar.close()
    return out


TITLES = {
    "pca": "h-space PCA directions (per-timestep PC_j, edit in P_t for t >= {t_edit})",
    "jacobian_x": "Jacobian dh/dx directions (x_t moved at t = {t_edit}, then DDIM)",
    "jacobian_c": "Jacobian dh/dc token directions (tokens moved, resampled)",
}


def save_strips(result: dict, out_dir: str | Path, prefix: str = "hspace") -> list[Path]:
    """One PNG per method: rows 'dir j / img b', columns the gammas (in sigma units)."""
    paths = []
    for method, entry in result["methods"].items():
        images = entry["images"]  # (k, G, B, C, H, W)
        k, _, b = images.shape[:3]
        rows, labels = [], []
        for j in range(k):
            for i in range(b):
                rows.append(to_uint8(images[j, :, i]))
                labels.append(f"dir {j + 1} / img {i + 1}")
        title = TITLES[method].format(t_edit=result["interval"]["t_edit"])
        path = Path(out_dir) / f"{prefix}_{method}.png"
        columns = [f"{g:+g}" for g in result["gammas"]]
        paths.append(save_grid(rows, path, row_labels=labels, column_labels=columns, title=title))
    return paths


def save_rows(rows: dict[str, torch.Tensor], path: str | Path, columns, title: str) -> Path:
    """Rows of edited images (label -> (G, C, H, W)) as one labelled grid."""
    return save_grid(
        [to_uint8(v) for v in rows.values()],
        path,
        row_labels=list(rows),
        column_labels=list(columns),
        title=title,
    )


HSPACE_SECTIONS = {
    "pca": "h-space: PCA directions",
    "jacobian_x": "h-space: Jacobian dh/dx directions",
    "jacobian_c": "h-space: Jacobian dh/dc token directions",
}


def add_hspace_sections(model, images: np.ndarray, steps: int | None, figure, skipped, out: Path) -> None:
    """The report's h-space sections: two directions per method on two images, fitted on the
    rest of ``images``; a model without a U-Net bottleneck gets the reason instead."""
    from diffdrl.hspace.bottleneck import require_pixel_space, unet_of

    try:
        unet_of(model)
        require_pixel_space(model)
        if not hasattr(model, "invert"):
            raise TypeError(f"model {model.config.name!r} has no DDIM inversion")
    except (TypeError, ValueError) as err:
        for title in HSPACE_SECTIONS.values():
            skipped(title, str(err).split(":")[0])
        return
    if len(images) < 4:
        for title in HSPACE_SECTIONS.values():
            skipped(title, "the report needs at least 2 pairs of images (2 to edit, 2 to fit directions on)")
        return
    result = hspace_strips(model, images[:2], k=2, steps=steps or STRIP_STEPS, pca_images=images[2:])
    paths = dict(zip(result["methods"], save_strips(result, out), strict=True))
    interval = result["interval"]
    note = (
        f"Columns: strength gamma in standard deviations along each direction; middle column unedited. "
        f"t_edit {interval['t_edit']}, chosen where pixel MSE of P_t vs x reaches "
        f"{interval['edit_threshold']} of the unrelated-image MSE (our LPIPS-free criterion)."
    )
    for method, title in HSPACE_SECTIONS.items():
        figure(title, paths[method], note)


def save_hspace(
    run,
    out_dir: str | Path | None = None,
    *,
    methods=UNSUPERVISED,
    k: int = 3,
    images: int = 2,
    fit: int = 32,
    steps: int = STRIP_STEPS,
    t_edit: int | None = None,
    seed: int = 0,
    progress: bool = False,
) -> tuple[list[Path], Path, dict]:
    """The ``diffdrl hspace`` command as one call: strips of ``k`` directions per method on
    ``images`` dataset images, fitted on ``fit`` others, one PNG per method in ``out_dir``
    (default ``RUN/samples``) and ``hspace.json`` (interval, spectra, steps) beside them.
    Returns (the PNGs, the JSON, the edit interval used)."""
    import json

    from diffdrl.atomic import atomic_write_text
    from diffdrl.hspace.asymmetric import check_interval

    methods = check_methods(methods)
    if t_edit is not None:
        check_interval(t_edit, -1, run.model.config.schedule.timesteps)
    _, pictures = run.sample(images + fit, seed)
    result = hspace_strips(
        run.model, pictures[:images], methods=methods, k=k, steps=steps, pca_images=pictures[images:],
        t_edit=t_edit, progress=progress,
    )  # fmt: skip
    out = Path(out_dir) if out_dir else Path(run.path) / "samples"
    paths = save_strips(result, out)
    summary = {
        "interval": result["interval"],
        "spectra": {m: e["spectrum"] for m, e in result["methods"].items()},
        "steps": steps,
    }
    atomic_write_text(out / "hspace.json", json.dumps(summary, indent=1))
    return paths, out / "hspace.json", result["interval"]
