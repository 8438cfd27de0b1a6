"""Command line: parses arguments and calls the library; no maths and no data loops here."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from diffdrl.training.config import ConfigError, apply_overrides, from_dict, preset_mapping, read_yaml


def _config_for_train(args):
    from diffdrl.training.checkpoint import latest_checkpoint
    from diffdrl.training.config import Config

    out = Path(args.out) if args.out else Path("runs") / Path(args.config).stem
    if args.resume and latest_checkpoint(out) is not None:
        print(f"resuming {out} from {latest_checkpoint(out).name} (config: {out}/config.yaml)")
        mapping = read_yaml(out / "config.yaml")
    else:
        mapping = preset_mapping(args.config)
    return from_dict(Config, apply_overrides(mapping, args.overrides)), out


def cmd_train(args) -> None:
    from diffdrl.training.config import dump_config
    from diffdrl.training.trainer import train

    config, out = _config_for_train(args)
    if args.dry_run:
        print(dump_config(config), end="")
        return
    result = train(config, out, resume=args.resume, progress=not args.no_progress)
    print(
        f"trained {result.run_dir} to step {result.step} (loss {result.loss:.4f}); "
        f"checkpoint {result.checkpoint}"
    )


def _read_images(path: Path) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"images file not found: {path}")
    try:
        data = np.load(path, allow_pickle=False)
    except ValueError as err:
        raise ValueError(f"{path}: not a readable .npy/.npz array file ({err})") from None
    if isinstance(data, np.lib.npyio.NpzFile):
        if "images" not in data:
            raise ValueError(f"{path}: no 'images' array (keys: {', '.join(data.files)})")
        data = data["images"]
    if data.dtype != np.uint8 or data.ndim != 4:
        raise ValueError(f"{path}: images must be uint8 (n, H, W, C), got {data.dtype} {data.shape}")
    return data


def cmd_encode(args) -> None:
    from diffdrl.api import encode_images, load_model, load_run_config
    from diffdrl.data import make_dataset

    model = load_model(args.run, weights=args.weights)
    arrays = {}
    if args.images:
        images = _read_images(Path(args.images))
    else:
        config = load_run_config(args.run)
        data = make_dataset(config.data.name, config.data.path, config.data.resolution)
        factors, images = data.sample(args.num, np.random.default_rng(args.seed))
        arrays = {
            "factors": factors,
            "factor_names": np.array(data.factor_names),
            "factor_sizes": np.array(data.factor_sizes),
        }
    arrays["units"] = encode_images(model, images, args.batch_size)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    with tmp.open("wb") as f:
        np.savez(f, **arrays)
    os.replace(tmp, out)
    print(f"wrote {out}: units {arrays['units'].shape}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="diffdrl", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model from a preset or YAML config")
    p.add_argument("--config", default="tiny-cpu", help="preset name or YAML path (default: tiny-cpu)")
    p.add_argument("--out", help="run directory (default: runs/<config name>)")
    p.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its latest checkpoint"
    )
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value", help="config overrides")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("encode", help="encode images into units with a trained run")
    p.add_argument("run", help="run directory")
    p.add_argument("--out", required=True, help="output .npz (units, and factors for dataset samples)")
    p.add_argument(
        "--images", help="uint8 (n, H, W, C) .npy, or .npz with 'images'; default: sample the run's dataset"
    )
    p.add_argument("--num", type=int, default=10_000, help="dataset samples to encode (default 10000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--weights", choices=("ema", "model"), default="ema")
    p.set_defaults(func=cmd_encode)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from diffdrl.training.trainer import NonFiniteLossError

    try:
        args.func(args)
    except (ConfigError, ValueError, TypeError, FileNotFoundError, FileExistsError) as err:
        print(f"diffdrl: error: {err}", file=sys.stderr)
        return 2
    except NonFiniteLossError as err:
        print(f"diffdrl: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("diffdrl: interrupted; continue with --resume from the last checkpoint", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
