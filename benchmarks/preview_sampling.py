"""Which sampler and step count the explorer should preview with, measured on a run (the demo's).

Regenerates ``--num`` dataset images under their own units with each sampler x steps, from each
image's DDIM inversion (the explorer's edits: how well the image comes back) and from fresh noise
(what the units alone determine), and reports the mean PSNR against the images ([0, 1] scale, the
10th percentile too) and the time per render: a batch of ``--num`` divided by its size, and one
image alone (the median of ``--repeats``), a slider move's cost; "first" adds the image's inversion,
what a newly picked image costs before its first edit. The first stage's own round trip
decode(encode(x)) is the ceiling of any regeneration of a latent model, so it is reported too.

The pick: the fastest setting whose inversion round trip reaches ``--bar`` dB, fastest meaning the
fewest denoiser evaluations (one per step for DDIM and DPM-Solver++, so equal steps cost the same
and the measured times differ by noise), ties broken by the higher round-trip PSNR; none if no
setting reaches the bar. Timings are wall clock on whatever else the
machine is doing: compare rows of one run, not runs of different machines.

    python benchmarks/preview_sampling.py runs/demo --out benchmarks/results/preview_sampling-demo.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

from diffdrl.api import load_run
from diffdrl.atomic import atomic_write_text
from diffdrl.data.ground_truth import to_model_input
from diffdrl.metrics.reconstruction import psnr
from diffdrl.viz.render import can_sample, inverted_start, render_units

SAMPLERS = ("ddim", "dpm++")
STEPS = (10, 20, 50)
STARTS = ("inversion", "noise")


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def _scores(x0: torch.Tensor, images: torch.Tensor) -> dict:
    """Mean and 10th-percentile PSNR (dB) of images against x0, both (B, C, H, W) in [-1, 1]."""
    db = psnr((x0 + 1) / 2, (images.float().clamp(-1, 1) + 1) / 2)
    return {"psnr": float(db.mean()), "psnr_p10": float(db.quantile(0.1))}


@torch.no_grad()
def measure(model, images, samplers=SAMPLERS, steps=STEPS, repeats: int = 3, seed: int = 0) -> list[dict]:
    """One row per (sampler, steps, start) for uint8 images (B, H, W, C): PSNR and timings (module doc)."""
    x0 = to_model_input(images)
    units = model.encode(images)  # (B, K)
    rows = []
    for n in steps:
        x_T, invert_s = _timed(lambda n=n: inverted_start(model, images, n))
        one_x_T = inverted_start(model, images[:1], n)
        invert_one = statistics.median(
            _timed(lambda n=n: inverted_start(model, images[:1], n))[1] for _ in range(repeats)
        )
        for sampler in samplers:
            options = {"sampler": sampler, "steps": n, "eta": 0.0}
            for start in STARTS:
                start_all = x_T if start == "inversion" else None
                out, batch_s = _timed(
                    lambda s=start_all, o=options: render_units(model, units, x_T=s, seed=seed, **o)
                )
                start_one = one_x_T if start == "inversion" else None
                one = statistics.median(
                    _timed(
                        lambda s=start_one, o=options: render_units(model, units[:1], x_T=s, seed=seed, **o)
                    )[1]
                    for _ in range(repeats)
                )
                inverting = start == "inversion"
                rows.append(
                    {"sampler": sampler, "steps": n, "start": start}
                    | _scores(x0, out)
                    | {
                        "ms_per_image_batched": 1000 * (batch_s + (invert_s if inverting else 0)) / len(x0),
                        "ms_one_image": 1000 * one,
                        "ms_one_image_first": 1000 * (one + (invert_one if inverting else 0)),
                    }
                )
    return rows


def choose(rows: list[dict], bar: float) -> dict | None:
    """The fastest (fewest steps, then the better round trip) setting whose inversion round trip
    reaches ``bar`` dB, or None."""
    good = [r for r in rows if r["start"] == "inversion" and r["psnr"] >= bar]
    return min(good, key=lambda r: (r["steps"], -r["psnr"]), default=None)


@torch.no_grad()
def first_stage_ceiling(model, images) -> float | None:
    """Mean PSNR of the first stage's decode(encode(x)): no latent regeneration can beat it."""
    if getattr(model, "first_stage", None) is None:
        return None
    x0 = to_model_input(images)
    stage = model.first_stage
    return _scores(x0, stage.decode(stage.encode(x0)))["psnr"]


def table(rows: list[dict]) -> str:
    lines = [
        "| sampler | steps | start | PSNR dB (mean) | PSNR dB (p10) | ms/image, batch | ms, one image "
        "| ms, first render |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['sampler']} | {r['steps']} | {r['start']} | {r['psnr']:.2f} | {r['psnr_p10']:.2f} | "
            f"{r['ms_per_image_batched']:.1f} | {r['ms_one_image']:.0f} | {r['ms_one_image_first']:.0f} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run", help="run directory of a diffusion model")
    parser.add_argument("--num", type=int, default=64, help="dataset images (default 64)")
    parser.add_argument("--steps", default=",".join(map(str, STEPS)), help="comma-separated step counts")
    parser.add_argument("--samplers", default=",".join(SAMPLERS), help="comma-separated samplers")
    parser.add_argument("--bar", type=float, default=25.0, help="inversion round-trip PSNR to reach (dB)")
    parser.add_argument("--repeats", type=int, default=3, help="single-image timings, median of")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="JSON file for the results")
    args = parser.parse_args()
    steps = [int(s) for s in args.steps.split(",")]
    samplers = args.samplers.split(",")
    if args.num < 1 or args.repeats < 1 or any(s < 1 for s in steps):
        parser.error("--num, --repeats and every --steps must be positive")
    if bad := [s for s in samplers if s not in ("ddim", "dpm++", "unipc")]:
        parser.error(f"--samplers {bad}: the explorer's samplers are ddim, dpm++, unipc")
    run = load_run(args.run)
    if not can_sample(run.model):
        parser.error(f"{args.run}: model {run.config.model.name!r} is not a diffusion model")
    _, images = run.sample(args.num, args.seed)
    rows = measure(run.model, images, samplers, steps, args.repeats, args.seed)
    pick = choose(rows, args.bar)
    ceiling = first_stage_ceiling(run.model, images)
    print(table(rows))
    if ceiling is not None:
        print(f"first stage alone, decode(encode(x)): PSNR {ceiling:.2f} dB")
    if pick is None:
        print(f"no setting's inversion round trip reaches {args.bar} dB")
    else:
        print(f"pick: {pick['sampler']}, {pick['steps']} steps (round trip {pick['psnr']:.2f} dB)")
    if args.out:
        record = {
            "run": str(args.run),
            "num_images": args.num,
            "seed": args.seed,
            "bar_db": args.bar,
            "torch_threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
            "first_stage_psnr": ceiling,
            "pick": pick,
            "rows": rows,
        }
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out, json.dumps(record, indent=1) + "\n")
        print(f"saved {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
