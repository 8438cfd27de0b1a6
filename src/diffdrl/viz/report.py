"""``diffdrl report RUN``: one self-contained HTML page (PNGs embedded) that shows a run whole:
config, training curves, metrics over time, the unit-factor matrix, interchange grid,
traversals, attention maps, reconstructions and the schedule plot. The PNGs are kept beside it.
A section that does not apply to the run (a VAE's attention maps) says so, and why, in its place."""

from __future__ import annotations

import html
import json
from pathlib import Path

import torch
from tqdm.auto import tqdm

from diffdrl.diffusion.sampling import RECONSTRUCTION_ETA
from diffdrl.models.representation import encode_images
from diffdrl.training.runs import Run
from diffdrl.viz.attention import attention_maps, attention_unavailable, save_attention
from diffdrl.viz.grid import save_grid, to_uint8
from diffdrl.viz.hspace import HSPACE_SECTIONS, add_hspace_sections
from diffdrl.viz.interchange import interchange, save_interchange, unit_names
from diffdrl.viz.reconstruction import reconstruction_scores
from diffdrl.viz.render import (
    describe_sampling,
    model_name,
    reconstruct,
    resolve_sampling,
)
from diffdrl.viz.report_page import plot_curves, read_jsonl, write_page
from diffdrl.viz.schedules import save_schedule_plot
from diffdrl.viz.traversal import traversal_title, traverse, unit_ranges
from diffdrl.viz.unit_embeddings import embeddings_unavailable, save_unit_embeddings
from diffdrl.viz.unit_factor import save_unit_factor_matrix, unit_factor_importance


def build_report(
    run: Run,
    out_dir: str | Path | None = None,
    steps: int | None = None,
    seed: int = 0,
    pairs: int = 6,
    progress: bool = True,
) -> Path:
    """Write ``out_dir/report.html`` (default ``RUN/report``) and its PNGs; returns the HTML path.

    Every section that applies to the run's model and dataset is drawn; each one that does not
    (a VAE has no tokens, attention or noise schedule; an unlabelled dataset no factors) keeps its
    heading with the reason. ``steps`` (default 50) is a diffusion model's sampling option.

    Long on purpose: the sections are drawn in the page's order, each a few lines, so the page's
    layout reads top to bottom here; splitting it would scatter one page over many functions."""
    if getattr(run.model, "is_first_stage", False):  # an autoencoder: reconstructions, not units
        from diffdrl.viz.first_stage_report import build_first_stage_report

        resolve_sampling(run.model, steps=steps)
        return build_first_stage_report(run, out_dir, seed=seed, progress=progress)
    out = Path(out_dir) if out_dir else run.path / "report"
    out.mkdir(parents=True, exist_ok=True)
    model, sections = run.model, []
    resolve_sampling(model, steps=steps)  # fail before any work when steps do not apply
    bar = tqdm(total=9 + len(HSPACE_SECTIONS), desc="report", leave=False, disable=not progress)

    def figure(title: str, path: Path | None, note: str = "") -> None:
        bar.update(1)
        sections.append((title, path, note))

    def skipped(title: str, reason: str) -> None:
        figure(title, None, f"Does not apply: {reason}.")

    for title, log, png, caption, log_keys in (
        ("Training", "train_log.jsonl", "training.png", "training log", ("loss",)),
        ("Evaluations over training", "metrics.jsonl", "metrics.png", "metrics.jsonl", ()),
    ):
        path = plot_curves(read_jsonl(run.path / log), out / png, caption, log_keys)
        if path is None:
            skipped(title, f"{log} has no rows yet")
        else:
            figure(title, path)
    n = run.config.model.units
    names = unit_names(n)
    if getattr(run.data, "factor_sizes", None):
        importance = unit_factor_importance(run, seed=seed)
        names = unit_names(n, importance, run.data.factor_names)
        figure(
            "Unit-factor matrix",
            save_unit_factor_matrix(importance, run.data.factor_names, out / "unit_factor.png"),
            "Fast DCI importances (LightGBM gain; not the canonical estimator). Units sorted by factor.",
        )
    else:
        importance = None
        skipped("Unit-factor matrix", f"dataset {run.config.data.name!r} has no ground-truth factors")
    if reason := embeddings_unavailable(run):
        skipped("Unit embeddings", reason)
    else:
        figure(
            "Unit embeddings",
            save_unit_embeddings(run, out / "unit_embeddings.png", seed=seed, importance=importance),
            "Tokens before anchoring, PCA to 2-D, coloured by each unit's factor; DyGA's mixtures if fitted.",
        )
    _, images = run.sample(2 * pairs, seed)
    # A diffusion model's edits start from each source's DDIM-inverted x_T (as diffusion
    # autoencoders draw them): untouched attributes keep the source's details, and the swapped
    # unit is the only change. The regeneration from fresh noise is the reconstruction section's.
    start = "inversion" if callable(getattr(model, "invert", None)) else None
    swap = interchange(model, images[:pairs], images[pairs:], steps=steps, seed=seed, start=start)
    shared = "; x_T from DDIM inversion of the source, shared along a column" if start else ""
    figure(
        "Latent interchange",
        save_interchange(swap, out / "interchange.png", names),
        f"Row 'swap unit i': the source with unit i taken from the target{shared} "
        f"({describe_sampling(model, steps=steps)}).",
    )
    _, reference = run.sample(1000, seed + 1)
    values = unit_ranges(torch.from_numpy(encode_images(model, reference)), 8, num_units=n)
    rows = traverse(model, images[0], values, steps=steps, seed=seed, start=start)
    figure(
        "Traversals",
        save_grid(list(rows), out / "traversal.png", row_labels=names, title=traversal_title(values)),
        "From the image's DDIM-inverted x_T." if start else "",
    )
    if reason := attention_unavailable(model):
        skipped("Cross-attention maps", reason)
    else:
        maps = attention_maps(model, images[:4], seed=seed)
        figure("Cross-attention maps", save_attention(images[:4], maps, out / "attention.png", names))
    generated = reconstruct(model, images[:pairs], seed=seed, steps=steps)
    rows, labels = [images[:pairs], to_uint8(generated)], ["input", "fresh noise"]
    caption = f"Fresh noise: {describe_sampling(model, steps=steps, default_eta=RECONSTRUCTION_ETA)}"
    if start:
        rows.append(to_uint8(reconstruct(model, images[:pairs], steps=steps, start=start)))
        labels.append("inverted x_T")
        caption += f"; inverted x_T: DDIM inversion, then {describe_sampling(model, steps=steps)}"
    score = reconstruction_scores(images[:pairs], generated)
    caption += (
        f". From fresh noise under their own tokens: MSE {score['reconstruction.mse']:.4f}, "
        f"PSNR {score['reconstruction.psnr']:.1f} dB against the inputs (in [0, 1])."
    )
    figure(
        "Reconstructions",
        save_grid(rows, out / "reconstruction.png", labels, title="regenerated under their own units"),
        caption,
    )
    add_hspace_sections(model, images, steps, figure, skipped, out)
    # the config's, or the model's own where it comes from elsewhere (DisDiff: its pre-trained run)
    schedule = getattr(getattr(model, "schedule", None), "config", None)
    if schedule is None:
        skipped("Beta schedules", f"model {model_name(model)!r} is not a diffusion model (no noise schedule)")
    else:
        figure(
            "Beta schedules",
            save_schedule_plot(out / "schedules.png", schedule.timesteps),
            f"This run uses the '{schedule.name}' schedule.",
        )

    bar.close()
    metrics_file = run.path / "metrics.json"
    metrics_html = ""
    if metrics_file.exists():
        record = json.loads(metrics_file.read_text())
        scores = record["scores"]
        cells = "".join(
            f"<tr><td>{html.escape(k)}</td><td>{v:.4f}</td></tr>"
            for k, v in scores.items()
            if isinstance(v, (int, float))
        )
        note = f"{record['checkpoint']}, {record['weights']} weights, preset {record['preset']}"
        metrics_html = f"<h2>Metrics</h2><p>{html.escape(note)}</p><table>{cells}</table>"
    return write_page(run, out, sections, metrics_html)
