"""Sampling speed and reconstruction quality: DDIM-200 (EncDiff's setting, eta 1) against fast
solvers at 10-25 steps, same model, same images, same starting noise.

Reconstruction = encode an image, generate from its tokens starting at fresh noise, compare with
the input (MSE, PSNR, SSIM on [0, 1]). The speed ratio is taken at equal quality: the fewest-step
fast solver whose MSE is within 5% of DDIM-200's (or the best it reached, said so).

    python benchmarks/sampling_speed.py runs/demo            # a trained run (e.g. from `make demo`)
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from diffdrl.api import load_run
from diffdrl.data.ground_truth import to_model_input
from diffdrl.metrics.reconstruction import image_similarity

SETTINGS = [
    ("ddim", 200, 1.0),
    ("ddim", 50, 0.0),
    ("dpm++", 10, 0.0),
    ("dpm++", 15, 0.0),
    ("dpm++", 25, 0.0),
    ("unipc", 10, 0.0),
    ("unipc", 25, 0.0),
]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run")
    parser.add_argument("--num", type=int, default=64, help="images")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()

    run = load_run(args.run, device=args.device)
    _, images = run.sample(args.num, seed=0)
    x0 = to_model_input(images).to(args.device)
    with torch.no_grad():
        tokens = run.model.tokens(run.model.encode(x0))
    rows = []
    for sampler, steps, eta in SETTINGS:
        start = time.perf_counter()
        out = run.model.generate(tokens, sampler, steps, eta=eta, seed=0)
        if args.device == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        scores = image_similarity((x0 + 1) / 2, (out + 1) / 2)
        row = {"sampler": sampler, "steps": steps, "eta": eta, "images_per_s": args.num / seconds, **scores}
        rows.append(row)
        print(
            f"{sampler:>6} {steps:>4} steps eta {eta:.0f}: {row['images_per_s']:8.2f} images/s  "
            f"MSE {scores['reconstruction.mse']:.5f}  SSIM {scores['reconstruction.ssim']:.4f}"
        )
    reference = rows[0]
    good = [r for r in rows[2:] if r["reconstruction.mse"] <= 1.05 * reference["reconstruction.mse"]]
    best = (
        min(good, key=lambda r: r["steps"]) if good else min(rows[2:], key=lambda r: r["reconstruction.mse"])
    )
    summary = {
        "reference": "ddim-200, eta 1",
        "fast": f"{best['sampler']}-{best['steps']}",
        "equal_quality": bool(good),
        "speed_ratio": best["images_per_s"] / reference["images_per_s"],
    }
    print(
        f"{summary['fast']} vs DDIM-200: {summary['speed_ratio']:.1f}x faster"
        + ("" if good else " (never within 5% of DDIM-200's MSE: best MSE shown)")
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"sampling_speed-{args.device}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(
        json.dumps({"run": str(args.run), "num_images": args.num, "rows": rows, "summary": summary}, indent=2)
    )
    os.replace(tmp, path)
    print(f"saved {path}")


if __name__ == "__main__":
    main()
