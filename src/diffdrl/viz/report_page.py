"""The pieces every report page is made of: log curves, and one self-contained HTML page (PNGs
embedded) of titled sections; ``report`` and ``first_stage_report`` both build on them."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from diffdrl.atomic import atomic_write_text
from diffdrl.training.config import dump_config
from diffdrl.training.runs import Run
from diffdrl.viz.grid import panels, save_figure


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


def write_page(
    run: Run, out: Path, sections: list[tuple[str, Path | None, str]], head_html: str = ""
) -> Path:
    """``out/report.html``: ``head_html``, then each (title, PNG or None, note) section, then the config."""
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
        f"<h1>Run {html.escape(str(run.path))}</h1>{head_html}{body}"
        f"<h2>Config</h2><pre>{html.escape(dump_config(run.config))}</pre></body></html>"
    )
    path = out / "report.html"
    atomic_write_text(path, page)
    return path
