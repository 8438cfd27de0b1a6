"""``diffdrl report RUN``: one self-contained HTML page (PNGs embedded) that shows a run whole:
config, training curves, metrics over time, the unit-factor matrix, interchange grid,
traversals, attention maps, reconstructions and the schedule plot. The PNGs are kept beside it."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import torch
from tqdm.auto import tqdm

from diffdrl.api import Run, encode_images
from diffdrl.training.checkpoint import atomic_write_text
from diffdrl.training.config import dump_config
from diffdrl.viz.attention import attention_maps, save_attention
from diffdrl.viz.grid import panels, save_figure, save_grid, to_uint8
from diffdrl.viz.interchange import interchange, save_interchange, unit_names
from diffdrl.viz.schedules import save_schedule_plot
from diffdrl.viz.traversal import traverse, unit_ranges
from diffdrl.viz.unit_embeddings import save_unit_embeddings
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
    steps: int = 50,
    seed: int = 0,
    pairs: int = 6,
    progress: bool = True,
) -> Path:
    """Write ``out_dir/report.html`` (default ``RUN/report``) and its PNGs; returns the HTML path."""
    out = Path(out_dir) if out_dir else run.path / "report"
    out.mkdir(parents=True, exist_ok=True)
    model, sections = run.model, []
    bar = tqdm(total=9, desc="report", leave=False, disable=not progress)

    def figure(title: str, path: Path | None, note: str = "") -> None:
        bar.update(1)
        if path is not None:
            sections.append((title, path, note))

    figure(
        "Training",
        plot_curves(
            read_jsonl(run.path / "train_log.jsonl"), out / "training.png", "training log", log_keys=("loss",)
        ),
    )
    figure(
        "Evaluations over training",
        plot_curves(read_jsonl(run.path / "metrics.jsonl"), out / "metrics.png", "metrics.jsonl"),
    )
    names = unit_names(run.config.model.units)
    if getattr(run.data, "factor_sizes", None):
        importance = unit_factor_importance(run, seed=seed)
        names = unit_names(run.config.model.units, importance, run.data.factor_names)
        figure(
            "Unit-factor matrix",
            save_unit_factor_matrix(importance, run.data.factor_names, out / "unit_factor.png"),
            "Fast DCI importances (LightGBM gain; not the canonical estimator). Units sorted by factor.",
        )
        figure(
            "Unit embeddings",
            save_unit_embeddings(run, out / "unit_embeddings.png", seed=seed, importance=importance),
            "Tokens before anchoring, PCA to 2-D, coloured by each unit's factor; DyGA's mixtures if fitted.",
        )
    _, images = run.sample(2 * pairs, seed)
    swap = interchange(model, images[:pairs], images[pairs:], steps=steps, seed=seed)
    figure(
        "Latent interchange",
        save_interchange(swap, out / "interchange.png", names),
        "Row 'swap unit i': the source with unit i taken from the target; same x_T along a column.",
    )
    _, reference = run.sample(1000, seed + 1)
    values = unit_ranges(torch.from_numpy(encode_images(model, reference)), 8)
    rows = traverse(model, images[0], values, steps=steps, seed=seed)
    figure(
        "Traversals",
        save_grid(
            list(rows), out / "traversal.png", row_labels=names, title="one unit over its 2%-98% quantiles"
        ),
    )
    maps = attention_maps(model, images[:4], seed=seed)
    figure("Cross-attention maps", save_attention(images[:4], maps, out / "attention.png", names))
    with torch.no_grad():
        generated = to_uint8(
            model.generate(model.tokens(model.encode(images[:pairs])), "ddim", steps, eta=1.0, seed=seed)
        )
    figure(
        "Reconstructions",
        save_grid(
            [images[:pairs], generated],
            out / "reconstruction.png",
            ["input", "generated"],
            title=f"DDIM {steps} steps, eta 1",
        ),
    )
    figure(
        "Beta schedules",
        save_schedule_plot(out / "schedules.png", run.config.model.schedule.timesteps),
        f"This run uses the '{run.config.model.schedule.name}' schedule.",
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
        f'<img src="data:image/png;base64,{_b64(p)}" alt="{html.escape(t)}">'
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
