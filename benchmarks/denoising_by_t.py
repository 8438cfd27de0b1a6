"""How well a trained diffusion model denoises at each noise level, under the images' own tokens.

For each timestep t, dataset images x0 are noised to x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps
and the model predicts eps; the table gives the eps MSE, the MSE of the implied x0 estimate, and that
of the trivial estimate x_t / sqrt(abar_t) (what "no denoising at all" scores), images in [-1, 1].
A model that was never trained at low noise shows an eps MSE near 1 there: its samples keep the
residual noise of their last steps, the speckle of a 32x32 picture. Also regenerates images from
fresh noise under their own tokens and reports MSE and PSNR against the inputs ([0, 1] scale), for
each sampler setting, and the speckle itself: the images' high-frequency energy (mean squared
difference from their 3x3 box blur) as a multiple of the inputs' (1 = as smooth as the data).

    python benchmarks/denoising_by_t.py runs/demo --out benchmarks/results/denoising_by_t-demo.json
    python benchmarks/denoising_by_t.py runs/a@200 runs/b@200 --timesteps 5,20,100,500 --no-regeneration
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch
from torch.nn import functional as F

from diffdrl.api import load_run
from diffdrl.data.ground_truth import to_model_input
from diffdrl.diffusion.samplers import sample
from diffdrl.diffusion.schedule import make_betas
from diffdrl.metrics.reconstruction import image_similarity
from diffdrl.training.checkpoint import checkpoints

# (sampler, steps, eta, clean_final_step): reconstructions (eta 1) and grids (eta 0) at the pictures' 50
# steps and the demo report's 25, and DDIM ended as the released code ends it
REGENERATION = (
    ("ddim", 50, 1.0, True),
    ("ddim", 50, 1.0, False),
    ("ddim", 50, 0.0, True),
    ("ddim", 50, 0.0, False),
    ("ddim", 25, 0.0, True),
    ("ddim", 25, 1.0, True),
)


@torch.no_grad()
def denoising_errors(model, x0: torch.Tensor, tokens: torch.Tensor, timesteps, seed: int = 0) -> list[dict]:
    """Per timestep: eps MSE, x0-estimate MSE and the trivial estimate's MSE (images in [-1, 1])."""
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for t in timesteps:
        tt = torch.full((len(x0),), t, dtype=torch.long)
        eps = torch.randn(x0.shape, generator=gen)
        x_t = model.schedule.q_sample(x0, tt, eps)
        eps_hat = model.denoiser(x_t, tt, tokens).float()
        a, s = model.schedule.sqrt_alpha_bar[t], model.schedule.sqrt_one_minus_alpha_bar[t]
        rows.append(
            {
                "t": int(t),
                "eps_mse": float((eps_hat - eps).square().mean()),
                "x0_mse": float(((x_t - s * eps_hat) / a - x0).square().mean()),
                "trivial_x0_mse": float((x_t / a - x0).square().mean()),
            }
        )
    return rows


def high_frequency_energy(x: torch.Tensor) -> float:
    """Mean squared difference of images (B, C, H, W) from their 3x3 box blur (edges replicated)."""
    padded = F.pad(x, (1, 1, 1, 1), mode="replicate")
    return float((x - F.avg_pool2d(padded, 3, stride=1)).square().mean())


@torch.no_grad()
def regeneration(model, x0: torch.Tensor, tokens: torch.Tensor, settings, seed: int = 0) -> list[dict]:
    """MSE / PSNR / SSIM ([0, 1]) of images regenerated from fresh noise under their own tokens."""
    betas = make_betas(model.config.schedule)
    rows = []
    for sampler, steps, eta, clean in settings:
        gen = torch.Generator().manual_seed(seed)
        x_T = torch.randn(x0.shape, generator=gen)
        denoise = lambda x, t: model.denoiser(x, t, tokens)  # noqa: E731
        out = sample(denoise, x_T, betas, sampler, steps, eta, gen, clean_final_step=clean)
        scores = image_similarity((x0 + 1) / 2, (out + 1) / 2)
        speckle = high_frequency_energy(out) / high_frequency_energy(x0)
        rows.append(
            {"sampler": sampler, "steps": steps, "eta": eta, "clean_final_step": clean}
            | {k.split(".")[-1]: v for k, v in scores.items()}
            | {"high_frequency_ratio": speckle}
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run directories of diffusion models (RUN@k: at step k)")
    parser.add_argument("--timesteps", default="0,5,20,50,100,200,500,900")
    parser.add_argument("--num", type=int, default=128, help="dataset images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-regeneration", action="store_true", help="only the per-t table")
    parser.add_argument("--out", help="JSON file for the results")
    args = parser.parse_args()
    timesteps = [int(t) for t in args.timesteps.split(",")]
    results = []
    for path in args.runs:
        path, _, at = path.partition("@")
        checkpoint = Path(path) / "checkpoints" / f"step_{at}" if at else None
        if checkpoint is not None and not checkpoint.is_dir():
            parser.error(f"{path} has no checkpoint at step {at}")
        run = load_run(path, checkpoint=checkpoint)
        if not callable(getattr(run.model, "generate", None)):
            parser.error(f"{path}: model {run.config.model.name!r} is not a diffusion model")
        bad = [t for t in timesteps if not 0 <= t < run.model.schedule.timesteps]
        if bad:
            parser.error(f"--timesteps {bad} outside [0, {run.model.schedule.timesteps})")
        _, images = run.sample(args.num, args.seed)
        x0 = to_model_input(images)
        tokens = run.model.tokens(run.model.encode(x0))
        by_t = denoising_errors(run.model, x0, tokens, timesteps, args.seed)
        step = int(at) if at else _step(Path(path))
        result = {"run": str(path), "step": step, "by_t": by_t}
        print(f"{path} (step {result['step']}):")
        print("      t   eps MSE   x0 MSE   trivial x0 MSE")
        for r in result["by_t"]:
            print(f"  {r['t']:5d}  {r['eps_mse']:8.4f}  {r['x0_mse']:7.4f}  {r['trivial_x0_mse']:10.4f}")
        if not args.no_regeneration:
            result["regeneration"] = regeneration(run.model, x0, tokens, REGENERATION, args.seed)
            for r in result["regeneration"]:
                end = "x0" if r["clean_final_step"] else "alpha_bar_0"
                print(
                    f"  regenerate {r['sampler']} {r['steps']} steps eta {r['eta']:g} (ends at {end}): "
                    f"MSE {r['mse']:.4f}  PSNR {r['psnr']:.2f} dB  SSIM {r['ssim']:.3f}  "
                    f"high-frequency energy {r['high_frequency_ratio']:.2f}x the inputs'"
                )
        results.append(result)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        record = {"num_images": args.num, "seed": args.seed, "runs": results}
        tmp.write_text(json.dumps(record, indent=1) + "\n")
        os.replace(tmp, out)
        print(f"saved {out}")


def _step(run_dir: Path) -> int | None:
    found = checkpoints(run_dir)
    return found[-1][0] if found else None


if __name__ == "__main__":
    main()
