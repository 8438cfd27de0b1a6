"""``diffdrl report RUN``: one self-contained HTML page (PNGs embedded) that shows a run whole:
config, training curves, metrics over time, the unit-factor matrix, interchange grid,
traversals, attention maps, reconstructions and the schedule plot. The PNGs are kept beside it.
A section that does not apply to the run (a VAE's attention maps) says so, and why, in its place."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import torch
from tqdm.auto import tqdm

from diffdrl.atomic import atomic_write_text
from diffdrl.models.representation import encode_images
from diffdrl.training.config import dump_config
from diffdrl.training.runs import Run
from diffdrl.viz.attention import attention_maps, attention_unavailable, save_attention
from diffdrl.viz.grid import panels, save_figure, save_grid, to_uint8
from diffdrl.viz.hspace import HSPACE_SECTIONS, add_hspace_sections
from diffdrl.viz.interchange import interchange, save_interchange, unit_names
from diffdrl.viz.render import (
    RECONSTRUCTION_ETA,
    can_sample,
    describe_sampling,
    model_name,
    reconstruct,
    resolve_sampling,
)
from diffdrl.viz.schedules import save_schedule_plot
from diffdrl.viz.traversal import traversal_title, traverse, unit_ranges
from diffdrl.viz.unit_embeddings import embeddings_unavailable, save_unit_embeddings
from diffdrl.viz.unit_factor import save_unit_factor_matrix, unit_factor_importance


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(r) for r in path.read_text().splitlines() if r] if path.exists() else []


def plot_curves(rows: list[dict], path: Path, title: str, log_keys: tuple[str, ...] = ()) -> Path | None:
    """One small panel per numeric key of log rows (x: step); None when there is nothing to plot."""
    keys = sorted({k for r in rows for k, v in r.items() if k != "step" and isinstance(v, (int, float))})
    if not keys:
        return None
    figure, axes = panels(len(keys), 3, 4, 2.6)
    for ax, key in zip(axes, keys, strict=True):
        points = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), (int, float))]
        ax.plot(*zip(*points, strict=True), marker="." if len(points) < 30 else None)
        if key in log_keys:
            ax.set_yscale("log")
        ax.set_title(key, fontsize=9)
        ax.grid(alpha=0.3)
    figure.suptitle(title)
    figure.tight_layout()
    return save_figure(figure, path, tight=False)


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
    heading with the reason. ``steps`` (default 50) is a diffusion model's sampling option."""
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
    swap = interchange(model, images[:pairs], images[pairs:], steps=steps, seed=seed)
    shared = "; same x_T along a column" if can_sample(model) else ""
    figure(
        "Latent interchange",
        save_interchange(swap, out / "interchange.png", names),
        f"Row 'swap unit i': the source with unit i taken from the target{shared} "
        f"({describe_sampling(model, steps=steps)}).",
    )
    _, reference = run.sample(1000, seed + 1)
    values = unit_ranges(torch.from_numpy(encode_images(model, reference)), 8, num_units=n)
    rows = traverse(model, images[0], values, steps=steps, seed=seed)
    figure(
        "Traversals",
        save_grid(list(rows), out / "traversal.png", row_labels=names, title=traversal_title(values)),
    )
    if reason := attention_unavailable(model):
        skipped("Cross-attention maps", reason)
    else:
        maps = attention_maps(model, images[:4], seed=seed)
        figure("Cross-attention maps", save_attention(images[:4], maps, out / "attention.png", names))
    generated = to_uint8(reconstruct(model, images[:pairs], seed=seed, steps=steps))
    figure(
        "Reconstructions",
        save_grid(
            [images[:pairs], generated],
            out / "reconstruction.png",
            ["input", "generated"],
            title=describe_sampling(model, steps=steps, default_eta=RECONSTRUCTION_ETA),
        ),
    )
    add_hspace_sections(model, images, steps, figure, skipped, out)
    schedule = getattr(run.config.model, "schedule", None)
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
    body = "".join(
        f"<h2>{html.escape(t)}</h2><p>{html.escape(n)}</p>"
        + (f'<img src="data:image/png;base64,{_b64(p)}" alt="{html.escape(t)}">' if p else "")
        for t, p, n in sections
    )
    page = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>diffdrl report: {html.escape(run.path.name)}</title>"
        "<style>body{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em}"
        "img{max-width:100%}pre{background:#f4f4f4;padding:.6em;font-size:12px}"
        "td{padding:2px 10px;border-bottom:1px solid #ddd}</style></head><body>"
        f"<h1>Run {html.escape(str(run.path))}</h1>{metrics_html}{body}"
        f"<h2>Config</h2><pre>{html.escape(dump_config(run.config))}</pre></body></html>"
    )
    path = out / "report.html"
    atomic_write_text(path, page)
    return path
