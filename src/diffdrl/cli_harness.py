"""The comparison commands of the CLI (sweep, table): parse, call ``diffdrl.harness``, report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from diffdrl.cli_args import positive_float
from diffdrl.configs import DEFAULT_RUN_PRESET
from diffdrl.metrics.presets import DEFAULT_PRESET, PRESETS

CLUSTER_FLAGS = (
    "partition",
    "time_minutes",
    "gpus_per_job",
    "cpus_per_job",
    "mem_gb",
    "account",
    "constraint",
    "qos",
    "array_limit",
    "max_requeues",
)


def _names(text: str, what: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise ValueError(f"{what} needs a comma-separated list, got {text!r}")
    return names


def _seeds(text: str) -> list[int]:
    """``0,1,2`` or ranges ``0-14`` (inclusive), or both: ``0-4,10``."""
    seeds = []
    try:
        for item in _names(text, "--seeds"):
            low, dash, high = item.partition("-")
            seeds += list(range(int(low), int(high) + 1)) if dash and low else [int(item)]
    except ValueError:
        raise ValueError(f"--seeds must be comma-separated integers or ranges (0-14), got {text!r}") from None
    return seeds


def _data_paths(items: list[str]) -> dict[str, str]:
    paths = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"--data-path {item!r} is not of the form DATASET=PATH")
        paths[name] = path
    return paths


def _cluster(args):
    """``ClusterOptions`` from ``--cluster-config`` and the cluster flags (slurm executors only)."""
    from diffdrl.harness.slurm import cluster_options

    flags = {name: getattr(args, name) for name in CLUSTER_FLAGS}
    flags["sbatch"] = _sbatch(args.sbatch) if args.sbatch else None
    flags["array"] = False if args.no_array else None
    if args.executor == "local":
        if given := [f"--{n.replace('_', '-')}" for n, v in flags.items() if v is not None]:
            raise ValueError(f"{', '.join(given)}: only for --executor slurm or submitit-local")
        if args.cluster_config or args.wait:
            raise ValueError("--cluster-config and --wait: only for --executor slurm or submitit-local")
        return None
    return cluster_options(args.cluster_config, **flags)


def _sbatch(items: list[str]) -> dict[str, str]:
    options = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip("-"):
            raise ValueError(f"--sbatch {item!r} is not of the form OPTION=VALUE (e.g. qos=high)")
        options[name.strip().removeprefix("--")] = value
    return options


def cmd_sweep(args) -> int:
    if args.sweep_command == "status":
        return cmd_sweep_status(args)
    if not args.methods or not args.out:
        missing = [f for f, v in (("--methods", args.methods), ("--out", args.out)) if not v]
        raise ValueError(
            f"the following arguments are required: {', '.join(missing)} (or: diffdrl sweep status SWEEP)"
        )
    from diffdrl.harness.sweep import Sweep, run_sweep
    from diffdrl.harness.table import summary

    options = _cluster(args)  # before anything: a missing extra or a bad flag loses nothing
    if options is not None:
        from diffdrl.harness.slurm import require_submitit

        require_submitit()
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
    if options is not None:
        from diffdrl.harness.submit import submit_sweep

        jobs = submit_sweep(sweep, Path(args.out), options, executor=args.executor, wait=args.wait)
        if not args.wait:
            print(f"{len(jobs)} jobs submitted; follow them with: diffdrl sweep status {args.out}")
            return 0
    else:
        run_sweep(sweep, Path(args.out))
    print()
    print(summary([args.out]), end="")
    from diffdrl.harness.sweep import read_cell

    records = [read_cell(c.directory(args.out)) for c in sweep.cells()]
    failed = [r for r in records if r is None or r["status"] != "done"]
    if failed:
        print(
            f"diffdrl: {len(failed)} of {len(records)} cells failed or did not finish; "
            "rerun the same command to retry them",
            file=sys.stderr,
        )
        return 1
    return 0


def cmd_sweep_status(args) -> int:
    from diffdrl.harness.submit import status, status_text

    print(status_text(status(Path(args.sweep))), end="")
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
goes on; the exit status is 1 if any cell failed.

With --executor slurm each cell is a SLURM job instead (submitit; job arrays;
requeued after its time limit or a preemption, resuming from its checkpoint); the
command submits and returns, 'diffdrl sweep status OUT' shows where each cell
stands, and rerunning it submits only the cells neither done nor queued."""

SWEEP_EXAMPLE = """\
example:
  diffdrl sweep --methods encdiff,dyga --seeds 0,1,2 --budget-minutes 10 \\
      --metrics-preset fast --out sweeps/tiny
  diffdrl table sweeps/tiny --out sweeps/tiny/table
  diffdrl sweep --executor slurm --preset paper --methods encdiff,dyga --seeds 0-14 \\
      --partition gpu --time-minutes 1440 --array-limit 32 --out sweeps/paper
  diffdrl sweep status sweeps/paper"""


def add_metric_protocol_argument(parser: argparse.ArgumentParser, flag: str) -> None:
    """The metric protocol choice, shared by ``evaluate`` and ``sweep`` so both mean the same."""
    parser.add_argument(
        flag,
        choices=tuple(PRESETS),
        default=DEFAULT_PRESET,
        help="canonical = disentanglement_lib's protocol (default); fast = fewer samples, LightGBM DCI",
    )


def add_cluster_arguments(p: argparse.ArgumentParser) -> None:
    """``--executor`` and what a SLURM job asks for (``harness.slurm.ClusterOptions``)."""
    g = p.add_argument_group(
        "cluster",
        "--executor slurm submits each cell as a SLURM job through submitit\n"
        "(pip install 'diffdrl[cluster]'); options from --cluster-config YAML, then flags",
    )
    g.add_argument(
        "--executor",
        choices=("local", "slurm", "submitit-local"),
        default="local",
        help="local: cells one after another in this process (default); slurm: one SLURM job per "
        "cell; submitit-local: the same jobs through submitit on this machine, without sbatch",
    )
    g.add_argument("--cluster-config", metavar="YAML", help="a YAML of the options below (flags win)")
    g.add_argument("--partition")
    g.add_argument("--time-minutes", type=int, help="time limit per job (default 240); longer cells requeue")
    g.add_argument(
        "--gpus-per-job",
        type=int,
        help="GPUs per cell (default 1); above 1 the cell runs under torchrun, one process "
        "per GPU, train.batch_size staying the global batch",
    )
    g.add_argument("--cpus-per-job", type=int)
    g.add_argument("--mem-gb", type=float)
    g.add_argument("--account")
    g.add_argument("--constraint")
    g.add_argument("--qos")
    g.add_argument(
        "--sbatch", action="append", default=[], metavar="OPTION=VALUE", help="any other sbatch option"
    )
    g.add_argument("--array-limit", type=int, help="at most this many cells run at once (default 64)")
    g.add_argument(
        "--no-array", action="store_true", help="one submission per cell, for clusters without arrays"
    )
    g.add_argument("--max-requeues", type=int, help="requeues after a time limit per cell (default 20)")
    g.add_argument("--wait", action="store_true", help="wait for the jobs, then print the table")


def add_harness_commands(sub) -> None:
    """Register ``sweep`` and ``table`` on the main parser's subparsers."""
    p = sub.add_parser(
        "sweep",
        help="train and evaluate methods x datasets x seeds (resumable)",
        description=SWEEP_HELP,
        epilog=SWEEP_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--methods", help="comma-separated: encdiff, or M for the preset '<preset>-M' (required)")
    p.add_argument("--datasets", default="synth-shapes3d", help="comma-separated (default: synth-shapes3d)")
    p.add_argument(
        "--seeds",
        default="0,1,2",
        help="training seeds: comma-separated, ranges allowed (0-14) (default: 0,1,2)",
    )
    p.add_argument(
        "--preset", default=DEFAULT_RUN_PRESET, help=f"base preset (default: {DEFAULT_RUN_PRESET})"
    )
    p.add_argument("--out", help="sweep directory (required)")
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
    add_cluster_arguments(p)
    p.set_defaults(func=cmd_sweep, interrupt_hint="rerun the same command to resume the unfinished cell")
    actions = p.add_subparsers(dest="sweep_command", metavar="{status}")
    status = actions.add_parser(
        "status",
        help="where each cell of a sweep stands: state, steps, last score, job id",
        description="One line per cell: pending, running, requeued, done, failed, stopped (checkpointed "
        "after a signal, resubmitted by rerunning the sweep), lost (its job ended without a verdict) or "
        "missing; the steps its checkpoints reached, its first headline score, its job id and requeues.",
    )
    status.add_argument("sweep", metavar="SWEEP", help="sweep directory")

    p = sub.add_parser("table", help="mean ± std over seeds of sweeps: Markdown, CSV and a bar chart")
    p.add_argument("sweeps", nargs="+", metavar="SWEEP_DIR", help="sweep directories (searched recursively)")
    p.add_argument("--out", required=True, metavar="PATH_STEM", help="writes PATH_STEM.md, .csv and .png")
    p.add_argument(
        "--metrics",
        help="comma-separated scores or metrics, any protocol (default: "
        "factor_vae.eval_accuracy,dci.disentanglement,dci.completeness,dci.informativeness_test,mig)",
    )
    p.set_defaults(func=cmd_table)
