"""The picture commands of the CLI (swap, traverse, interpolate, attention, sample, embeddings,
report, schedules): parse, call the library, say where the file went.

They work for every model (``diffdrl.viz.render``). The diffusion options (``--steps``,
``--start``, ``--sampler``, ``--eta``, ``--timesteps``) default to unset: a diffusion model then
uses the usual values, and giving one for a model that decodes deterministically (a VAE, EncDec)
is an error, not silently ignored."""

from __future__ import annotations

import argparse

from diffdrl.cli_args import comma_ints, count, output_file, run_dir, seed
from diffdrl.diffusion.sampling import DEFAULT_SAMPLING, RECONSTRUCTION_ETA, SAMPLER_NAMES, STARTS
from diffdrl.training.weights import WEIGHTS


def cmd_swap(args) -> None:
    from diffdrl.api import load_run
    from diffdrl.data.validation import read_images
    from diffdrl.viz.run_pictures import save_swaps

    run = load_run(args.run, weights=args.weights)
    if bool(args.source) != bool(args.target):
        raise ValueError("--source and --target go together")
    resolution = run.config.data.resolution
    source = read_images(args.source, resolution) if args.source else None
    target = read_images(args.target, resolution) if args.target else None
    path = save_swaps(
        run, args.out, pairs=args.pairs, source=source, target=target, steps=args.steps, seed=args.seed,
        start=args.start,
    )  # fmt: skip
    print(f"wrote {path}")


def cmd_traverse(args) -> None:
    from diffdrl.api import load_run
    from diffdrl.viz.run_pictures import save_traversal

    run = load_run(args.run, weights=args.weights)
    path = save_traversal(
        run, args.out, values=args.values, reference=args.reference, steps=args.steps, seed=args.seed,
        start=args.start,
    )  # fmt: skip
    print(f"wrote {path}")


def cmd_interpolate(args) -> None:
    from diffdrl.api import load_run
    from diffdrl.viz.run_pictures import save_interpolation

    run = load_run(args.run, weights=args.weights)
    path = save_interpolation(
        run, args.out, pairs=args.pairs, values=args.values, steps=args.steps, seed=args.seed
    )
    print(f"wrote {path}")


def cmd_attention(args) -> None:
    from diffdrl.api import load_run
    from diffdrl.viz.run_pictures import save_attention_maps

    run = load_run(args.run, weights=args.weights)
    path = save_attention_maps(run, args.out, num=args.num, timesteps=args.timesteps, seed=args.seed)
    print(f"wrote {path}")


def cmd_sample(args) -> None:
    from diffdrl.api import load_run
    from diffdrl.viz.reconstruction import sample_reconstructions
    from diffdrl.viz.run_pictures import picture_path

    run = load_run(args.run, weights=args.weights)
    path, scores = sample_reconstructions(
        run, picture_path(run, args.out, "reconstruction.png"), num=args.num, seed=args.seed,
        sampler=args.sampler, steps=args.steps, eta=args.eta, start=args.start,
        inception=args.inception, lpips=args.lpips,
    )  # fmt: skip
    print(f"wrote {path}; " + ", ".join(f"{k.split('.')[-1]} {v:.4g}" for k, v in scores.items()))
    if not (args.inception and args.lpips):
        print("FID and LPIPS need feature networks: pass --inception and --lpips (TorchScript/.pt2 files)")


def cmd_report(args) -> None:
    from diffdrl.api import load_run
    from diffdrl.viz.report import build_report

    run = load_run(args.run, weights=args.weights)
    print(f"wrote {build_report(run, args.out, steps=args.steps, seed=args.seed, pairs=args.pairs)}")


def cmd_embeddings(args) -> None:
    from diffdrl.api import load_run
    from diffdrl.viz.run_pictures import picture_path
    from diffdrl.viz.unit_embeddings import save_unit_embeddings

    run = load_run(args.run, weights=args.weights)
    units = list(args.units) if args.units else None
    path = save_unit_embeddings(
        run, picture_path(run, args.out, "unit_embeddings.png"), units, args.num, args.method, args.seed
    )
    print(f"wrote {path}")


def cmd_schedules(args) -> None:
    from diffdrl.viz.schedules import save_schedule_plot

    print(f"wrote {save_schedule_plot(args.out)}")


def viz_parser(sub, name: str, help: str, func, samples: bool = True) -> argparse.ArgumentParser:
    """A picture command's parser with the options every picture takes."""
    p = sub.add_parser(name, help=help)
    p.add_argument("run", type=run_dir, help="run directory")
    if name != "report":
        p.add_argument("--out", type=output_file, help="output PNG (default: RUN/samples/<name>.png)")
    p.add_argument("--seed", type=seed, default=0)
    if samples:  # commands that render images through a sampler
        p.add_argument(
            "--steps",
            type=count,
            help=f"sampler steps of a diffusion model (default {DEFAULT_SAMPLING.steps})",
        )
    p.add_argument("--weights", choices=WEIGHTS, default=WEIGHTS[0])
    p.set_defaults(func=func)
    return p


def add_grid_commands(sub) -> None:
    """swap, traverse, interpolate, attention: the grids of units and their maps."""
    p = viz_parser(
        sub, "swap", "latent interchange grid: each unit of a source swapped for a target's", cmd_swap
    )
    p.add_argument("--pairs", type=count, default=6, help="random (source, target) pairs from the dataset")
    p.add_argument("--source", help="uint8 images .npy/.npz (instead of dataset pairs)")
    p.add_argument("--target", help="uint8 images .npy/.npz, as many as --source")
    p.add_argument(
        "--start",
        choices=STARTS,
        help="diffusion models: x_T shared by a column, fresh noise (default) or DDIM inversion of a source",
    )
    p = viz_parser(sub, "traverse", "traverse every unit of one image over its observed range", cmd_traverse)
    p.add_argument("--values", type=count, default=8)
    p.add_argument("--reference", type=count, default=1000, help="images whose units give the ranges")
    p.add_argument(
        "--start",
        choices=STARTS,
        help="diffusion models: the x_T of every cell, fresh noise (default) or DDIM inversion of the image",
    )
    p = viz_parser(sub, "interpolate", "interpolate all units between image pairs", cmd_interpolate)
    p.add_argument("--pairs", type=count, default=4)
    p.add_argument("--values", type=count, default=8)
    p = viz_parser(sub, "attention", "cross-attention map of every token", cmd_attention, samples=False)
    p.add_argument("--num", type=count, default=4, help="images")
    p.add_argument(
        "--timesteps",
        type=comma_ints(0),
        help="diffusion models: comma-separated t (default: 10/30/50/70%% of T)",
    )


def add_picture_commands(sub) -> None:
    """Register the picture commands on the main parser's subparsers."""
    add_grid_commands(sub)
    p = viz_parser(sub, "sample", "encode dataset images and render them back from their units", cmd_sample)
    p.add_argument("--num", type=count, default=8)
    p.add_argument(
        "--sampler", choices=SAMPLER_NAMES, help=f"diffusion models (default {DEFAULT_SAMPLING.sampler})"
    )
    p.add_argument(
        "--eta",
        type=float,
        help=f"DDIM stochasticity of a diffusion model (default {RECONSTRUCTION_ETA:g}, as EncDiff samples; "
        "0 with --start inversion)",
    )
    p.add_argument(
        "--start",
        choices=STARTS,
        help="diffusion models: regenerate from fresh noise (default) or from each image's DDIM inversion",
    )
    p.add_argument(
        "--inception", help="TorchScript/.pt2 Inception feature network: adds FID (use --num >= 2000)"
    )
    p.add_argument("--lpips", help="TorchScript/.pt2 LPIPS network: adds LPIPS of each reconstruction")

    p = viz_parser(
        sub,
        "embeddings",
        "each unit's tokens in 2-D, coloured by its factor, with DyGA's mixtures",
        cmd_embeddings,
        samples=False,
    )
    p.add_argument(
        "--units", type=comma_ints(0), help="comma-separated units (default: the 8 most informative)"
    )
    p.add_argument("--num", type=count, default=2000, help="images")
    p.add_argument("--method", choices=("pca", "pacmap", "umap"), default="pca")

    p = viz_parser(
        sub, "report", "one HTML page with every picture of a run (default: RUN/report/)", cmd_report
    )
    p.add_argument("--out", help="report folder (default: RUN/report/)")
    p.add_argument("--pairs", type=count, default=6)

    p = sub.add_parser(
        "schedules", help="plot alpha-bar and the information-bottleneck curve of each schedule"
    )
    p.add_argument("--out", type=output_file, default="schedules.png")
    p.set_defaults(func=cmd_schedules)
