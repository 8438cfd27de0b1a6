"""The comparison commands of the CLI (sweep, table): parse, call ``diffdrl.harness``, report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from diffdrl.cli_args import positive_float
from diffdrl.configs import DEFAULT_RUN_PRESET
from diffdrl.metrics.presets import DEFAULT_PRESET, PRESETS


def _names(text: str, what: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise ValueError(f"{what} needs a comma-separated list, got {text!r}")
    return names


def _seeds(text: str) -> list[int]:
    try:
        return [int(s) for s in _names(text, "--seeds")]
    except ValueError:
        raise ValueError(f"--seeds must be comma-separated integers, got {text!r}") from None


def _data_paths(items: list[str]) -> dict[str, str]:
    paths = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"--data-path {item!r} is not of the form DATASET=PATH")
        paths[name] = path
    return paths


def cmd_sweep(args) -> int:
    from diffdrl.harness.sweep import Sweep, run_sweep
    from diffdrl.harness.table import summary

    sweep = Sweep(
        methods=_names(args.methods, "--methods"),
        datasets=_names(args.datasets, "--datasets"),
        seeds=_seeds(args.seeds),
        preset=args.preset,
        budget_minutes=args.budget_minutes,
        metrics=_names(args.metrics, "--metrics") if args.metrics else None,
        metrics_preset=args.metrics_preset,
        overrides=args.overrides,
        data_paths=_data_paths(args.data_path),
    )
    records = run_sweep(sweep, Path(args.out))
    print()
    print(summary([args.out]), end="")
    failed = [r for r in records if r["status"] != "done"]
    if failed:
        print(
            f"diffdrl: {len(failed)} of {len(records)} cells failed; rerun the same command to retry them",
            file=sys.stderr,
        )
        return 1
    return 0


def cmd_table(args) -> None:
    from diffdrl.harness.table import write_table

    patterns = _names(args.metrics, "--metrics") if args.metrics else None
    for path in write_table(args.sweeps, args.out, patterns):
        print(f"wrote {path}")


SWEEP_HELP = """\
Train and evaluate every (dataset, method, seed) cell, one after another, into
OUT/<dataset>/<method>/seed<k>/ (a normal run directory plus cell.json with the
status, steps, training seconds and scores). Method encdiff trains --preset
itself; any other method M trains the preset '<preset>-M' (dyga -> tiny-cpu-dyga).
Rerunning the same command skips done cells, resumes unfinished ones from their
last checkpoint and retries failed ones. A failing cell is recorded and the sweep
goes on; the exit status is 1 if any cell failed."""

SWEEP_EXAMPLE = """\
example:
  diffdrl sweep --methods encdiff,dyga --seeds 0,1,2 --budget-minutes 10 \\
      --metrics-preset fast --out sweeps/tiny
  diffdrl table sweeps/tiny --out sweeps/tiny/table"""


def add_metric_protocol_argument(parser: argparse.ArgumentParser, flag: str) -> None:
    """The metric protocol choice, shared by ``evaluate`` and ``sweep`` so both mean the same."""
    parser.add_argument(
        flag,
        choices=tuple(PRESETS),
        default=DEFAULT_PRESET,
        help="canonical = disentanglement_lib's protocol (default); fast = fewer samples, LightGBM DCI",
    )


def add_harness_commands(sub) -> None:
    """Register ``sweep`` and ``table`` on the main parser's subparsers."""
    p = sub.add_parser(
        "sweep",
        help="train and evaluate methods x datasets x seeds (resumable)",
        description=SWEEP_HELP,
        epilog=SWEEP_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--methods", required=True, help="comma-separated: encdiff, or M for the preset '<preset>-M'"
    )
    p.add_argument("--datasets", default="synth-shapes3d", help="comma-separated (default: synth-shapes3d)")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated training seeds (default: 0,1,2)")
    p.add_argument(
        "--preset", default=DEFAULT_RUN_PRESET, help=f"base preset (default: {DEFAULT_RUN_PRESET})"
    )
    p.add_argument("--out", required=True, help="sweep directory")
    p.add_argument(
        "--budget-minutes",
        type=positive_float,
        help="train each cell for this many minutes of training time (checkpoints and evaluations "
        "excluded) instead of the presets' train.steps",
    )
    p.add_argument("--metrics", help="comma-separated metrics (default: all that apply)")
    add_metric_protocol_argument(p, "--metrics-preset")
    p.add_argument(
        "--set",
        dest="overrides",
        nargs="+",
        action="extend",
        default=[],
        metavar="[METHOD:]KEY=VALUE",
        help="config override for every cell, or with METHOD: for that method's cells (repeatable)",
    )
    p.add_argument(
        "--data-path",
        action="append",
        default=[],
        metavar="DATASET=PATH",
        help="data.path for a dataset read from disk (repeatable)",
    )
    p.set_defaults(func=cmd_sweep, interrupt_hint="rerun the same command to resume the unfinished cell")

    p = sub.add_parser("table", help="mean ± std over seeds of sweeps: Markdown, CSV and a bar chart")
    p.add_argument("sweeps", nargs="+", metavar="SWEEP_DIR", help="sweep directories (searched recursively)")
    p.add_argument("--out", required=True, metavar="PATH_STEM", help="writes PATH_STEM.md, .csv and .png")
    p.add_argument(
        "--metrics",
        help="comma-separated scores or metrics, any protocol (default: "
        "factor_vae.eval_accuracy,dci.disentanglement,dci.completeness,dci.informativeness_test,mig)",
    )
    p.set_defaults(func=cmd_table)
