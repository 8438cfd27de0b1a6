"""Which factors a trained run's units capture: held-out accuracy per factor, and how much of each
factor sits in its single most important unit.

DCI informativeness is one mean over factors; this script splits it, to say *what* a small budget
has and has not learnt (colours before geometry, say). Each run is scored at its latest checkpoint,
or at step k when given as ``RUN@k`` (EMA weights), with the fast estimator (LightGBM, two thirds
of ``--num`` images to fit, one third held out); ``--untrained`` adds the first run's architecture
at its random initialisation.

    python benchmarks/factor_capture.py runs/cpu_budget/tiny-cpu-seed0 runs/cpu_budget/betavae-seed0 \
        --labels "EncDiff (tiny-cpu)" beta-VAE --untrained \
        --out benchmarks/results/factor_capture.json --plot docs/factor_capture.png

"captured" = (accuracy - chance) / (1 - chance), chance = 1 / the factor's number of values:
0 means the units say nothing about the factor, 1 that they predict it perfectly.
"top unit" = the largest share of the factor's importance held by one unit (1: one unit codes it),
and which unit that is: two factors led by the same unit are mixed in it, which caps the FactorVAE
score however well each factor is captured.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from diffdrl.api import Run, load_run, untrained_run
from diffdrl.atomic import atomic_write_text
from diffdrl.training.checkpoint import checkpoints
from diffdrl.viz.unit_factor import per_unit, unit_factor_dci


def factor_capture(run: Run, num: int, seed: int) -> dict:
    """Per-factor held-out accuracy, chance-corrected capture and top-unit share of one run."""
    result = unit_factor_dci(run, num, seed)
    chance = 1.0 / np.asarray(run.data.factor_sizes, dtype=np.float64)
    captured = (result.accuracy_test - chance) / (1.0 - chance)
    # (N, F), per unit not per coordinate (EncDiff-V's units have several); columns sum to 1 where fitted
    importance = per_unit(result.importance_matrix, run.config.model.units)
    top_share = importance.max(0) / np.maximum(importance.sum(0), 1e-12)
    return {
        "factors": list(run.data.factor_names),
        "accuracy": result.accuracy_test.round(4).tolist(),
        "chance": chance.round(4).tolist(),
        "captured": captured.round(4).tolist(),
        "top_unit_share": top_share.round(4).tolist(),
        "top_unit": importance.argmax(0).tolist(),
        "dci_disentanglement": round(result.disentanglement, 4),
        "dci_informativeness": round(result.informativeness_test, 4),
    }


def parse_run(spec: str) -> tuple[Path, int | None]:
    """``RUN`` (its latest checkpoint) or ``RUN@k`` (its checkpoint at step k) -> (dir, step)."""
    path, _, step = spec.rpartition("@")
    if path and step.isdigit():
        return Path(path), int(step)
    return Path(spec), None


def checkpoint_at(run_dir: Path, step: int | None) -> tuple[int | None, Path | None]:
    """(step, checkpoint directory) of the latest checkpoint, or of step ``step``."""
    found = dict(checkpoints(run_dir))
    if step is None:
        return (max(found), found[max(found)]) if found else (None, None)
    if step not in found:
        raise FileNotFoundError(f"{run_dir} has no checkpoint at step {step} (it has {sorted(found)})")
    return step, found[step]


def print_table(rows: list[dict]) -> None:
    names = rows[0]["factors"]
    print("| run | step | " + " | ".join(names) + " | DCI D | DCI I |")
    print("|---|---|" + "---|" * len(names) + "---|---|")
    for r in rows:
        tops = zip(r["captured"], r["top_unit_share"], r["top_unit"], strict=True)
        cells = [f"{c:.2f} ({s:.2f} u{u})" for c, s, u in tops]
        step = "-" if r["step"] is None else r["step"]
        print(
            f"| {r['label']} | {step} | {' | '.join(cells)} | {r['dci_disentanglement']:.3f} | "
            f"{r['dci_informativeness']:.3f} |"
        )
    print("cells: captured (top-unit share, top unit's index)")


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = rows[0]["factors"]
    x = np.arange(len(names))
    width = 0.8 / len(rows)
    fig, ax = plt.subplots(figsize=(1.4 * len(names) + 2, 3.6), constrained_layout=True)
    for i, r in enumerate(rows):
        ax.bar(x + (i - (len(rows) - 1) / 2) * width, r["captured"], width, label=r["label"])
    ax.set_xticks(x, names, rotation=20)
    ax.set_ylabel("captured: (acc - chance) / (1 - chance)")
    ax.set_ylim(min(0.0, min(min(r["captured"]) for r in rows)), 1.0)
    ax.axhline(0, color="black", lw=0.6)
    ax.legend(fontsize=8)
    ax.set_title("what the units encode, per factor (held-out, LightGBM)", fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="run directories, RUN@k for the checkpoint at step k")
    parser.add_argument("--labels", nargs="+", help="legend names, one per run (default: directory names)")
    parser.add_argument("--untrained", action="store_true", help="add the first run at random init")
    parser.add_argument("--num", type=int, default=6000, help="images (2/3 fit, 1/3 held out)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="JSON results")
    parser.add_argument("--plot", help="bar chart (PNG)")
    args = parser.parse_args()
    if args.num < 30:
        parser.error(f"--num must be >= 30, got {args.num}")
    specs = [parse_run(r) for r in args.runs]
    labels = args.labels or [r.replace("/", " ").split()[-1] for r in args.runs]
    if len(labels) != len(args.runs):
        parser.error(f"--labels needs one name per run ({len(args.runs)}), got {len(labels)}")

    jobs = [(label, run_dir, step) for label, (run_dir, step) in zip(labels, specs, strict=True)]
    if args.untrained:
        jobs.insert(0, (f"untrained ({specs[0][0].name})", specs[0][0], 0))
    rows = []
    for label, run_dir, step in jobs:
        try:
            if step == 0:
                run = untrained_run(run_dir)
            else:
                step, checkpoint = checkpoint_at(run_dir, step)
                run = load_run(run_dir, checkpoint=checkpoint)
            row = {"label": label, "run": str(run_dir), "step": step}
            row.update(factor_capture(run, args.num, args.seed))
        except (FileNotFoundError, ValueError) as err:
            raise SystemExit(f"error: {label}: {err}") from None
        rows.append(row)
        print(f"{label}: captured {row['captured']}", flush=True)
    if len({tuple(r["factors"]) for r in rows}) > 1:
        raise SystemExit("error: the runs are on datasets with different factors; compare like with like")
    print_table(rows)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        record = {"num": args.num, "seed": args.seed, "rows": rows}
        atomic_write_text(Path(args.out), json.dumps(record, indent=1) + "\n")
        print(f"wrote {args.out}")
    if args.plot:
        plot(rows, Path(args.plot))


if __name__ == "__main__":
    main()
