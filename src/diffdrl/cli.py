"""Command line: parses arguments and calls the library; no maths and no data loops here."""

from __future__ import annotations

import argparse
import os
import sys
import zipfile
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
    if result.loss is None:
        print(f"{result.run_dir} is already at step {result.step} of {config.train.steps}; nothing to train")
        return
    print(
        f"trained {result.run_dir} to step {result.step} (loss {result.loss:.4f}); "
        f"checkpoint {result.checkpoint}"
    )


def _read_images(path: Path) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"images file not found: {path}")
    try:
        data = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
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
        if factors is not None:  # unlabelled datasets (image folders, CelebA) have none
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


def cmd_datasets(args) -> None:
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
    from diffdrl.data.preview import save_preview
    from diffdrl.viz.grid import save_grid

    out = Path(args.out or f"{args.name}.png")
    rng = np.random.default_rng(args.seed)
    if labelled:
        save_preview(data, out, rng)
    else:  # no factors to sweep: a random sample
        _, images = data.sample(32, rng)
        save_grid([images[i : i + 8] for i in range(0, 32, 8)], out, title=f"{args.name}: random images")
    print(f"wrote {out}")


def _out(args, run, default: str) -> Path:
    return Path(args.out) if args.out else Path(run.path) / "samples" / default


def cmd_swap(args) -> None:
    from diffdrl.api import load_run
    from diffdrl.viz.interchange import interchange, save_interchange

    run = load_run(args.run, weights=args.weights)
    if args.source or args.target:
        if not (args.source and args.target):
            raise ValueError("--source and --target go together")
        source, target = _read_images(Path(args.source)), _read_images(Path(args.target))
    else:
        _, images = run.sample(2 * args.pairs, args.seed)
        source, target = images[: args.pairs], images[args.pairs :]
    result = interchange(run.model, source, target, steps=args.steps, seed=args.seed, start=args.start)
    print(f"wrote {save_interchange(result, _out(args, run, 'interchange.png'), unit_labels(run, args))}")


def unit_labels(run, args) -> list[str]:
    """'unit i: factor' labels from a quick DCI fit when the dataset has factors."""
    from diffdrl.viz.interchange import unit_names

    if not getattr(run.data, "factor_sizes", None):
        return unit_names(run.config.model.units)
    from diffdrl.viz.unit_factor import unit_factor_importance

    return unit_names(
        run.config.model.units, unit_factor_importance(run, seed=args.seed), run.data.factor_names
    )


def cmd_traverse(args) -> None:
    import torch

    from diffdrl.api import encode_images, load_run
    from diffdrl.viz.grid import save_grid
    from diffdrl.viz.traversal import traverse, unit_ranges

    run = load_run(args.run, weights=args.weights)
    _, reference = run.sample(args.reference, args.seed + 1)
    values = unit_ranges(torch.from_numpy(encode_images(run.model, reference)), args.values)
    _, image = run.sample(1, args.seed)
    rows = traverse(run.model, image[0], values, steps=args.steps, seed=args.seed)
    out = save_grid(
        list(rows),
        _out(args, run, "traversal.png"),
        row_labels=unit_labels(run, args),
        title="traversal: one unit over its 2%-98% quantiles",
    )
    print(f"wrote {out}")


def cmd_interpolate(args) -> None:
    from diffdrl.api import load_run
    from diffdrl.viz.grid import save_grid
    from diffdrl.viz.traversal import interpolate

    run = load_run(args.run, weights=args.weights)
    _, images = run.sample(2 * args.pairs, args.seed)
    rows = interpolate(
        run.model, images[: args.pairs], images[args.pairs :], args.values, args.steps, args.seed
    )
    out = save_grid(
        list(rows),
        _out(args, run, "interpolation.png"),
        title="interpolation of all units between two images",
    )
    print(f"wrote {out}")


def cmd_attention(args) -> None:
    from diffdrl.api import load_run
    from diffdrl.viz.attention import attention_maps, save_attention

    run = load_run(args.run, weights=args.weights)
    _, images = run.sample(args.num, args.seed)
    timesteps = tuple(int(t) for t in args.timesteps.split(",")) if args.timesteps else None
    maps = attention_maps(run.model, images, timesteps, args.seed)
    print(f"wrote {save_attention(images, maps, _out(args, run, 'attention.png'), unit_labels(run, args))}")


def cmd_sample(args) -> None:
    import torch

    from diffdrl.api import load_run
    from diffdrl.metrics.reconstruction import image_similarity
    from diffdrl.viz.grid import save_grid, to_uint8

    run = load_run(args.run, weights=args.weights)
    _, images = run.sample(args.num, args.seed)
    with torch.no_grad():
        tokens = run.model.tokens(run.model.encode(images))
        out = run.model.generate(tokens, args.sampler, args.steps, eta=args.eta, seed=args.seed)
    generated = to_uint8(out)
    scores = image_similarity(
        torch.from_numpy(images).permute(0, 3, 1, 2) / 255.0,
        torch.from_numpy(generated).permute(0, 3, 1, 2) / 255.0,
    )
    if args.inception:
        from diffdrl.metrics.generation import fid, load_feature_network

        scores["fid"] = fid(load_feature_network(args.inception, "Inception"), images, generated)
    if args.lpips:
        from diffdrl.metrics.generation import load_feature_network, lpips

        scores["reconstruction.lpips"] = lpips(load_feature_network(args.lpips, "LPIPS"), images, generated)
    path = save_grid(
        [images[:16], generated[:16]],
        _out(args, run, "reconstruction.png"),
        ["input", "generated"],
        title=f"{args.sampler}, {args.steps} steps, eta {args.eta}",
    )
    print(f"wrote {path}; " + ", ".join(f"{k.split('.')[-1]} {v:.4g}" for k, v in scores.items()))
    if not (args.inception and args.lpips):
        print("FID and LPIPS need feature networks: pass --inception and --lpips (TorchScript/.pt2 files)")


def cmd_report(args) -> None:
    from diffdrl.api import load_run
    from diffdrl.viz.report import build_report

    run = load_run(args.run, weights=args.weights)
    print(f"wrote {build_report(run, args.out, steps=args.steps, seed=args.seed, pairs=args.pairs)}")


def cmd_evaluate(args) -> None:
    import json
    import time

    from diffdrl.api import evaluate_run, load_run, untrained_run
    from diffdrl.metrics import format_table
    from diffdrl.training.checkpoint import atomic_write_text, latest_checkpoint

    run = untrained_run(args.run) if args.untrained else load_run(args.run, weights=args.weights)
    metrics = args.metrics.split(",") if args.metrics else None
    scores = evaluate_run(run, metrics, preset=args.preset, seed=args.seed, kind=args.representation)
    checkpoint = latest_checkpoint(run.path)
    record = {
        "checkpoint": None if args.untrained else checkpoint.name,
        "weights": "untrained" if args.untrained else args.weights,
        "preset": args.preset,
        "representation": args.representation,
        "seed": args.seed,
        "time": time.time(),
        "scores": scores,
    }
    default = "metrics_untrained.json" if args.untrained else "metrics.json"
    out = Path(args.out) if args.out else run.path / default
    atomic_write_text(out, json.dumps(record, indent=2))
    print(format_table(scores))
    print(f"wrote {out}")


def cmd_embeddings(args) -> None:
    from diffdrl.api import load_run
    from diffdrl.viz.unit_embeddings import save_unit_embeddings

    run = load_run(args.run, weights=args.weights)
    units = [int(u) for u in args.units.split(",")] if args.units else None
    path = save_unit_embeddings(
        run, _out(args, run, "unit_embeddings.png"), units, args.num, args.method, args.seed
    )
    print(f"wrote {path}")


def cmd_schedules(args) -> None:
    from diffdrl.viz.schedules import save_schedule_plot

    print(f"wrote {save_schedule_plot(args.out)}")


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

    p = sub.add_parser("datasets", help="list datasets, show their factors, or preview them")
    p.add_argument("action", choices=("list", "info", "preview"))
    p.add_argument("name", nargs="?", help="dataset name (see 'diffdrl datasets list')")
    p.add_argument("--path", help="dataset file or folder, for datasets read from disk")
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--out", help="preview PNG (default: NAME.png)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_datasets)

    def viz_parser(name: str, help: str, func) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help)
        p.add_argument("run", help="run directory")
        p.add_argument("--out", help="output PNG (default: RUN/samples/<name>.png)")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--steps", type=int, default=50, help="DDIM steps")
        p.add_argument("--weights", choices=("ema", "model"), default="ema")
        p.set_defaults(func=func)
        return p

    p = viz_parser("swap", "latent interchange grid: each unit of a source swapped for a target's", cmd_swap)
    p.add_argument("--pairs", type=int, default=6, help="random (source, target) pairs from the dataset")
    p.add_argument("--source", help="uint8 images .npy/.npz (instead of dataset pairs)")
    p.add_argument("--target", help="uint8 images .npy/.npz, as many as --source")
    p.add_argument(
        "--start",
        choices=("noise", "inversion"),
        default="noise",
        help="x_T shared by a column: fresh noise, or DDIM inversion of the source",
    )
    p = viz_parser("traverse", "traverse every unit of one image over its observed range", cmd_traverse)
    p.add_argument("--values", type=int, default=8)
    p.add_argument("--reference", type=int, default=1000, help="images whose units give the ranges")
    p = viz_parser("interpolate", "interpolate all units between image pairs", cmd_interpolate)
    p.add_argument("--pairs", type=int, default=4)
    p.add_argument("--values", type=int, default=8)
    p = viz_parser("attention", "cross-attention map of every token", cmd_attention)
    p.add_argument("--num", type=int, default=4, help="images")
    p.add_argument("--timesteps", help="comma-separated t (default: 10/30/50/70%% of T)")
    p = viz_parser("sample", "encode dataset images and generate them back from their tokens", cmd_sample)
    p.add_argument("--num", type=int, default=8)
    p.add_argument("--sampler", choices=("ddpm", "ddim", "dpm++", "unipc"), default="ddim")
    p.add_argument("--eta", type=float, default=1.0, help="DDIM stochasticity (EncDiff samples with 1)")
    p.add_argument(
        "--inception", help="TorchScript/.pt2 Inception feature network: adds FID (use --num >= 2000)"
    )
    p.add_argument("--lpips", help="TorchScript/.pt2 LPIPS network: adds LPIPS of each reconstruction")

    p = sub.add_parser("evaluate", help="disentanglement metrics of a run on its dataset")
    p.add_argument("run", help="run directory")
    p.add_argument("--metrics", help="comma-separated (default: all that apply)")
    p.add_argument(
        "--preset",
        choices=("canonical", "fast"),
        default="canonical",
        help="canonical = disentanglement_lib's protocol; fast = fewer samples, LightGBM DCI",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--weights", choices=("ema", "model"), default="ema")
    p.add_argument("--untrained", action="store_true", help="evaluate the architecture at random init")
    p.add_argument(
        "--representation",
        choices=("units", "tokens"),
        default="units",
        help="units: encoder scalars (EncDiff); tokens: PCA-1 of each (anchored) token (DyGA)",
    )
    p.add_argument("--out", help="JSON (default: RUN/metrics.json, or RUN/metrics_untrained.json)")
    p.set_defaults(func=cmd_evaluate)

    p = viz_parser(
        "embeddings",
        "each unit's tokens in 2-D, coloured by its factor, with DyGA's mixtures",
        cmd_embeddings,
    )
    p.add_argument("--units", help="comma-separated units (default: the 8 most informative)")
    p.add_argument("--num", type=int, default=2000, help="images")
    p.add_argument("--method", choices=("pca", "pacmap", "umap"), default="pca")

    p = viz_parser("report", "one HTML page with every picture of a run (default: RUN/report/)", cmd_report)
    p.add_argument("--pairs", type=int, default=6)

    p = sub.add_parser(
        "schedules", help="plot alpha-bar and the information-bottleneck curve of each schedule"
    )
    p.add_argument("--out", default="schedules.png")
    p.set_defaults(func=cmd_schedules)
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
