"""Command line: parses arguments and calls the library; no maths and no data loops here."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from diffdrl.atomic import atomic_write, atomic_write_text
from diffdrl.cli_args import Parser, at_least, count, output_file, print_error, run_dir, seed
from diffdrl.cli_explore import add_explore_command
from diffdrl.cli_harness import add_harness_commands, add_metric_protocol_argument
from diffdrl.cli_hspace import add_hspace_commands
from diffdrl.cli_pictures import add_picture_commands
from diffdrl.configs import DEFAULT_RUN_PRESET
from diffdrl.metrics.presets import DCI_IMPORTANCE, FACTOR_VAE_PRUNING
from diffdrl.models.representation import REPRESENTATIONS, scored_representation
from diffdrl.training.weights import WEIGHTS

# Building the parser imports no torch (nor anything that does): ``diffdrl --help``, ``datasets
# list`` and usage errors answer in well under a second (benchmarks/cli_latency.py). The commands
# import what they use when they run.


def _config_for_train(args):
    """A resumed run keeps its own config.yaml (plus the overrides), checkpoint or not; a new run
    takes the preset's. ``--resume`` starts a new run only when ``--config`` names it (resume or
    start, as ``make demo`` does): without it, a folder holding no run is an error."""
    from diffdrl.training.checkpoint import latest_checkpoint
    from diffdrl.training.config import Config, apply_overrides, from_dict, preset_mapping, read_yaml

    preset = args.config or DEFAULT_RUN_PRESET
    out = Path(args.out) if args.out else Path("runs") / Path(preset).stem
    resume = args.resume or args.resume_from
    if resume and not args.config and not (out / "config.yaml").is_file():
        flag = "--resume" if args.resume else "--resume-from"
        raise ValueError(
            f"{flag}: {out} holds no run to resume (no config.yaml); to start a new run there, "
            "name its preset or config file with --config"
        )
    if resume and (out / "config.yaml").is_file():
        newest = latest_checkpoint(out)
        where = args.resume_from or (newest.name if newest else "the start (no checkpoint yet)")
        ignored = f"; --config {args.config} applies to new runs only" if args.config else ""
        print(f"resuming {out} from {where} (config: {out}/config.yaml{ignored})")
        mapping = read_yaml(out / "config.yaml")
    else:
        mapping = preset_mapping(preset)
    return from_dict(Config, apply_overrides(mapping, args.overrides)), out


def cmd_train(args) -> None:
    from diffdrl.training.config import dump_config
    from diffdrl.training.trainer import train

    config, out = _config_for_train(args)
    if args.dry_run:
        print(dump_config(config), end="")
        return
    result = train(
        config, out, resume=args.resume, progress=not args.no_progress, resume_from=args.resume_from
    )
    if result.loss is None:
        print(f"{result.run_dir} is already at step {result.step} of {config.train.steps}; nothing to train")
        return
    print(
        f"trained {result.run_dir} to step {result.step} (loss {result.loss:.4f}); "
        f"checkpoint {result.checkpoint}"
    )


def cmd_train_autoencoder(args) -> None:
    from diffdrl.training.config import dump_config
    from diffdrl.training.first_stage_export import check_first_stage_config, train_autoencoder

    config, out = _config_for_train(args)
    check_first_stage_config(config)
    if args.dry_run:
        print(dump_config(config), end="")
        return
    result, export = train_autoencoder(
        config, out, resume=args.resume, progress=not args.no_progress, resume_from=args.resume_from
    )
    done = (
        f"trained {result.run_dir} to step {result.step}"
        if result.loss is not None
        else (f"{result.run_dir} is already at step {result.step}")
    )
    print(f"{done}; exported the first stage to {export} (use model.first_stage.path={result.run_dir})")


def cmd_encode(args) -> None:
    import numpy as np

    from diffdrl.api import encode_images, load_model, load_run_config
    from diffdrl.data import make_dataset
    from diffdrl.data.validation import read_images

    model = load_model(args.run, weights=args.weights)
    arrays = {}
    if args.images:
        images = read_images(args.images, load_run_config(args.run).data.resolution)
    else:
        config = load_run_config(args.run)
        data = make_dataset(config.data.name, config.data.path, config.data.resolution)
        factors, images = data.sample(args.num, np.random.default_rng(args.seed))
        if factors is not None:  # unlabelled datasets (image folders, CelebA) have none
            arrays = {
                "factors": factors,
                "factor_names": np.array(data.factor_names),
                "factor_sizes": np.array(data.factor_sizes),
            }
    arrays["units"] = encode_images(model, images, args.batch_size)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda f: np.savez(f, **arrays))
    print(f"wrote {out}: units {arrays['units'].shape}")


def cmd_datasets(args) -> None:
    import numpy as np

    from diffdrl.data import DATASETS, make_dataset

    if args.action == "list":
        print("\n".join(sorted(DATASETS)))
        return
    if not args.name:
        raise ValueError(
            f"datasets {args.action} needs a dataset NAME (datasets: {', '.join(sorted(DATASETS))})"
        )
    data = make_dataset(args.name, args.path, args.resolution)
    labelled = hasattr(data, "factor_sizes")
    if args.action == "info":
        print(f"{args.name}: {len(data)} images of {args.resolution}x{args.resolution}")
        if not labelled:
            print("  no ground-truth factors (unlabelled images)")
        for name, size in zip(
            getattr(data, "factor_names", ()), getattr(data, "factor_sizes", ()), strict=True
        ):
            print(f"  {name:<16} {size}")
        return
    from diffdrl.viz.dataset_preview import save_preview
    from diffdrl.viz.grid import save_grid

    out = Path(args.out or f"{args.name}.png")
    rng = np.random.default_rng(args.seed)
    if labelled:
        save_preview(data, out, rng)
    else:  # no factors to sweep: a random sample
        _, images = data.sample(32, rng)
        save_grid([images[i : i + 8] for i in range(0, 32, 8)], out, title=f"{args.name}: random images")
    print(f"wrote {out}")


def cmd_evaluate(args) -> None:
    import json
    import time

    from diffdrl.api import evaluate_run, load_run, untrained_run
    from diffdrl.metrics import format_table
    from diffdrl.training.checkpoint import latest_checkpoint

    run = untrained_run(args.run) if args.untrained else load_run(args.run, weights=args.weights)
    metrics = args.metrics.split(",") if args.metrics else None
    overrides = {
        metric: {option: value}
        for metric, option, value in (
            ("dci", "importance", args.dci_importance),
            ("factor_vae", "pruning", args.factor_vae_pruning),
        )
        if value
    } or None
    scores = evaluate_run(
        run, metrics, preset=args.preset, seed=args.seed, kind=args.representation, overrides=overrides
    )
    checkpoint = latest_checkpoint(run.path)
    record = {
        "checkpoint": None if args.untrained else checkpoint.name,
        "weights": "untrained" if args.untrained else args.weights,
        "preset": args.preset,
        "overrides": overrides,
        "representation": args.representation or scored_representation(run.model),
        "seed": args.seed,
        "time": time.time(),
        "scores": scores,
    }
    default = "metrics_untrained.json" if args.untrained else "metrics.json"
    out = Path(args.out) if args.out else run.path / default
    atomic_write_text(out, json.dumps(record, indent=2))
    print(format_table(scores))
    print(f"wrote {out}")


def add_training_run_arguments(p: argparse.ArgumentParser, default: str | None, shown: str) -> None:
    """What every command that trains a run takes (``train``, ``train-autoencoder``): one set of
    options, so resuming, recovery and overrides mean the same everywhere."""
    p.add_argument(
        "--config", default=default, help=f"preset name or YAML path of a new run (default: {shown})"
    )
    p.add_argument("--out", help="run directory (default: runs/<config name>)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out (with its own config.yaml) from its latest checkpoint",
    )
    p.add_argument(
        "--resume-from",
        metavar="step_K",
        help="continue from this checkpoint (when the newest is corrupt); later ones are moved aside",
    )
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value", help="config overrides")


def build_parser() -> argparse.ArgumentParser:
    """The ``diffdrl`` parser: this module's commands here, the others' from their ``cli_*`` modules
    (a few lines over 60: one block per command, in the order ``--help`` lists them)."""
    parser = Parser(
        prog="diffdrl", description="Unsupervised disentangled representation learning with diffusion models."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model from a preset or YAML config")
    add_training_run_arguments(p, None, DEFAULT_RUN_PRESET)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "train-autoencoder", help="train a first-stage VQ/KL autoencoder for latent diffusion, then export it"
    )
    add_training_run_arguments(p, "tiny-cpu-first-stage", "tiny-cpu-first-stage")
    p.set_defaults(func=cmd_train_autoencoder)

    p = sub.add_parser("encode", help="encode images into units with a trained run")
    p.add_argument("run", type=run_dir, help="run directory")
    p.add_argument(
        "--out", type=output_file, required=True, help="output .npz (units, and factors for dataset samples)"
    )
    p.add_argument(
        "--images", help="uint8 (n, H, W, C) .npy, or .npz with 'images'; default: sample the run's dataset"
    )
    p.add_argument("--num", type=count, default=10_000, help="dataset samples to encode (default 10000)")
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--batch-size", type=count, default=512)
    p.add_argument("--weights", choices=WEIGHTS, default=WEIGHTS[0])
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("datasets", help="list datasets, show their factors, or preview them")
    p.add_argument("action", choices=("list", "info", "preview"))
    p.add_argument("name", nargs="?", help="dataset name (see 'diffdrl datasets list')")
    p.add_argument("--path", help="dataset file or folder, for datasets read from disk")
    p.add_argument("--resolution", type=at_least(8), default=64)
    p.add_argument("--out", type=output_file, help="preview PNG (default: NAME.png)")
    p.add_argument("--seed", type=seed, default=0)
    p.set_defaults(func=cmd_datasets)

    p = sub.add_parser("evaluate", help="disentanglement metrics of a run on its dataset")
    p.add_argument("run", type=run_dir, help="run directory")
    p.add_argument("--metrics", help="comma-separated (default: all that apply)")
    add_metric_protocol_argument(p, "--preset")
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--weights", choices=WEIGHTS, default=WEIGHTS[0])
    p.add_argument("--untrained", action="store_true", help="evaluate the architecture at random init")
    p.add_argument(
        "--dci-importance",
        choices=DCI_IMPORTANCE,
        help="DCI's estimator instead of the preset's: sklearn = scikit-learn's own GBT (keys "
        "dci_sklearn.*), for a paper's final numbers; gbt (canonical) is its fast reimplementation",
    )
    p.add_argument(
        "--factor-vae-pruning",
        choices=FACTOR_VAE_PRUNING,
        help="which codes may vote: absolute = dlib's std >= 0.05 (canonical, made for VAE means); "
        "relative = std >= 0.05 x the largest, for codes without a fixed scale (keys factor_vae*_relative.*)",
    )
    p.add_argument(
        "--representation",
        choices=REPRESENTATIONS,
        help="units: encoder scalars (EncDiff); tokens: PCA-1 of each (anchored) token (DyGA); "
        "default: the model's own (units; DisDiff: tokens, each chunk's PCA-1)",
    )
    p.add_argument(
        "--out", type=output_file, help="JSON (default: RUN/metrics.json, or RUN/metrics_untrained.json)"
    )
    p.set_defaults(func=cmd_evaluate)

    add_picture_commands(sub)
    add_harness_commands(sub)
    add_explore_command(sub)
    add_hspace_commands(sub)
    return parser


# The training failures a command ends with exit status 1: (module, exception class name).
TRAINING_FAILURES = (
    ("diffdrl.training.trainer", "NonFiniteLossError"),  # a non-finite loss
    ("diffdrl.training.checkpoint", "CheckpointWriteError"),  # a checkpoint write failed
)


def _training_failures() -> tuple[type[BaseException], ...]:
    """The classes of ``TRAINING_FAILURES`` whose modules a command imported: only those can have
    raised, and looking them up this way keeps torch out of commands that never train."""
    found = (getattr(sys.modules.get(module), name, None) for module, name in TRAINING_FAILURES)
    return tuple(kind for kind in found if isinstance(kind, type))


def main(argv: list[str] | None = None) -> int:
    """Exit status: 0 done; 1 training failed (non-finite loss, a checkpoint write failed); 2 bad
    input or usage (one line on stderr); 75 training stopped by SIGTERM/SIGINT/SIGUSR1 after
    checkpointing (resume with --resume); 130 interrupted at once (a second Ctrl-C)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit:  # usage errors (one line, status 2) and --help (0)
        return exit.code if isinstance(exit.code, int) else 2
    from diffdrl.training.preemption import PREEMPTED_EXIT, TrainingPreempted

    try:
        status = args.func(args)  # None, or a command's own exit status (sweep: 1 if a cell failed)
    except (ValueError, TypeError, OSError) as err:  # OSError: missing, unwritable, busy; ConfigError
        print_error(err)  # is a ValueError
        return 2
    except RuntimeError as err:
        if not isinstance(err, _training_failures()):
            raise
        print_error(err)
        return 1
    except TrainingPreempted as err:
        print(f"diffdrl: {err}", file=sys.stderr)
        return PREEMPTED_EXIT
    except KeyboardInterrupt:
        hint = getattr(args, "interrupt_hint", "continue with --resume from the last checkpoint")
        print(f"diffdrl: interrupted; {hint}", file=sys.stderr)
        return 130
    return status or 0


if __name__ == "__main__":
    sys.exit(main())
