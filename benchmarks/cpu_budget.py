"""Disentanglement per CPU-minute: train a preset for a wall-clock budget, scoring it on a schedule.

Training runs in chunks of ``--every`` minutes of training time (evaluation, checkpoints and DyGA
refits are not counted); after each chunk the EMA model is scored (FactorVAE, DCI, MIG by default,
the fast protocol) and a point is added to the curve. The run resumes from its checkpoint, so a
killed study continues where it stopped. Each variant writes ``<results>/<name>-seed<k>.json``.

    python benchmarks/cpu_budget.py run --preset tiny-cpu --minutes 30 --every 5 --name tiny-cpu
    python benchmarks/cpu_budget.py run --preset tiny-cpu --minutes 6 --every 3 --name lr1e-3 \
        --set train.lr=1e-3
    python benchmarks/cpu_budget.py plot benchmarks/results/cpu_budget/*.json --out docs/cpu_budget.png

A budget-limited run stops at a step that depends on the machine's speed, so unlike a step-limited
run it is not bit-reproducible; the step reached is recorded with every point. On a machine shared
with other work, wall-clock budgets are unfair between variants: ``--steps-per-minute R`` (the
variant's steps per minute measured on idle cores, e.g. by ``train_throughput.py``) turns the
budget into ``R * minutes`` steps, so the curve is in idle-machine minutes and bit-reproducible.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

from diffdrl.atomic import atomic_write_text
from diffdrl.training.config import load_config
from diffdrl.training.trainer import Trainer

RESULTS = Path(__file__).parent / "results" / "cpu_budget"
SHOWN = {  # curve key -> metric result keys, fast protocol first
    "factor_vae": ("factor_vae_fast.eval_accuracy", "factor_vae.eval_accuracy"),
    "dci_disentanglement": ("dci_fast.disentanglement", "dci.disentanglement"),
    "dci_completeness": ("dci_fast.completeness", "dci.completeness"),
    "dci_informativeness": ("dci_fast.informativeness_test", "dci.informativeness_test"),
    "mig": ("mig_fast", "mig"),
}


def curve_points(run_dir: Path, batch_size: int, steps_per_minute: float | None) -> list[dict]:
    """One point per scored evaluation in the run's metrics log; ``minutes`` is measured training
    time, or steps / ``steps_per_minute`` when the budget is in steps."""
    points = []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        if not any(k in row for keys in SHOWN.values() for k in keys):
            continue
        step, measured = row["step"], row["train_seconds"] / 60
        minutes = step / steps_per_minute if steps_per_minute else measured
        point = {"minutes": minutes, "measured_minutes": measured, "step": step, "images": step * batch_size}
        for name, keys in SHOWN.items():
            point[name] = next((row[k] for k in keys if k in row), None)
        points.append(point)
    return points


def run(args: argparse.Namespace) -> None:
    name = f"{args.name}-seed{args.seed}"
    run_dir = Path(args.runs) / name
    overrides = [
        *args.set,
        f"train.seed={args.seed}",
        f"train.metrics=[{','.join(args.metrics)}]",
        "train.metrics_every=0",
        f"train.metrics_preset={args.metrics_preset}",
    ]
    torch.set_num_threads(args.threads)
    chunks = round(args.minutes / args.every)
    for k in range(1, chunks + 1):
        if args.steps_per_minute:
            budget = [f"train.steps={round(k * args.every * args.steps_per_minute)}"]
        else:
            budget = [f"train.steps={10**9}", f"train.time_budget_minutes={k * args.every}"]
        config = load_config(args.preset, [*overrides, *budget])
        started = time.perf_counter()
        trainer = Trainer(config, run_dir, resume=True, progress=False)
        if trainer.out_of_time() or trainer.step >= config.train.steps:
            continue
        trainer.train()
        points = curve_points(run_dir, config.train.batch_size, args.steps_per_minute)
        last = points[-1]
        scores = ", ".join(f"{k} {v:.3f}" for k, v in last.items() if k in SHOWN and v is not None)
        wall = time.perf_counter() - started
        print(f"{name}: {last['minutes']:.1f} min, step {last['step']}, {scores} ({wall:.0f} s)", flush=True)
        result = {
            "name": args.name,
            "seed": args.seed,
            "preset": args.preset,
            "overrides": args.set,
            "budget_minutes": args.minutes,
            "steps_per_minute": args.steps_per_minute,
            "metrics_preset": args.metrics_preset,
            "threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
            "machine": platform.processor() or platform.machine(),
            "command": "python " + " ".join(sys.argv),
            "points": points,
        }
        Path(args.results).mkdir(parents=True, exist_ok=True)
        atomic_write_text(Path(args.results) / f"{name}.json", json.dumps(result, indent=1) + "\n")


def token_reliance(run_dir: Path, step: int) -> float | None:
    """The run's logged token reliance at ``step`` (EncDiff-family models only)."""
    path = run_dir / "metrics.jsonl"
    rows = [json.loads(r) for r in path.read_text().splitlines()] if path.exists() else []
    values = [r["eval/token_reliance"] for r in rows if r["step"] == step and "eval/token_reliance" in r]
    return values[-1] if values else None


def table(args: argparse.Namespace) -> None:
    """Markdown: every variant's scores at each of its points, with the token reliance there."""
    print("| variant | seed | CPU-min | step | FactorVAE | DCI D | DCI C | DCI I | MIG | token reliance |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for path in args.files:
        c = json.loads(Path(path).read_text())
        for p in c["points"]:
            reliance = token_reliance(Path(args.runs) / f"{c['name']}-seed{c['seed']}", p["step"])
            cells = [p.get(k) for k in SHOWN]
            cells = [f"{v:.3f}" if v is not None else "-" for v in [cells[0], *cells[1:4], cells[4]]]
            rel = f"{reliance:.0%}" if reliance is not None else "-"
            where = f"| {c['name']} | {c['seed']} | {p['minutes']:.1f} | {p['step']} |"
            print(f"{where} {' | '.join(cells)} | {rel} |")


def plot(args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = [json.loads(Path(p).read_text()) for p in args.files]
    keys = ("factor_vae", "dci_disentanglement", "mig")
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 4), constrained_layout=True)
    names = sorted({c["name"] for c in curves})
    palette = plt.cm.tab10 if len(names) <= 10 else plt.cm.tab20
    colours = {n: palette(i % palette.N) for i, n in enumerate(names)}
    for ax, key in zip(axes, keys, strict=True):
        labelled = set()
        for c in curves:
            pts = [p for p in c["points"] if p.get(key) is not None]
            label = None if c["name"] in labelled else c["name"]
            labelled.add(c["name"])
            x, y = [p["minutes"] for p in pts], [p[key] for p in pts]
            ax.plot(x, y, "o-", color=colours[c["name"]], label=label, alpha=0.8)
        ax.set(title=key.replace("_", " "), xlabel="training CPU-minutes (2 cores)", ylim=(0, 1))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="train one variant for a budget, scoring on a schedule")
    p.add_argument("--preset", default="tiny-cpu")
    p.add_argument("--name", required=True, help="variant name (file and legend)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--minutes", type=float, default=30.0, help="training budget (CPU wall-clock minutes)")
    p.add_argument(
        "--steps-per-minute",
        type=float,
        help="budget in steps: this variant's idle-machine training speed (default: wall-clock budget)",
    )
    p.add_argument("--every", type=float, default=5.0, help="minutes of training between scorings")
    p.add_argument("--metrics", nargs="+", default=["factor_vae", "dci", "mig"])
    p.add_argument("--metrics-preset", default="fast", choices=("fast", "canonical"))
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", default="runs/cpu_budget", help="where the run directories go")
    p.add_argument("--results", default=str(RESULTS))
    p = sub.add_parser("table", help="markdown table of the given result files' points")
    p.add_argument("files", nargs="+")
    p.add_argument("--runs", default="runs/cpu_budget", help="the run directories (for token reliance)")
    p = sub.add_parser("plot", help="metric vs CPU-minutes for the given result files")
    p.add_argument("files", nargs="+")
    p.add_argument("--out", default="docs/cpu_budget.png")
    args = parser.parse_args()
    {"run": run, "table": table, "plot": plot}[args.command](args)


if __name__ == "__main__":
    main()
