"""First-stage figures: reconstruction quality of trained runs, and the cost of encoding.

    python benchmarks/first_stage.py quality runs/fs-shapes3d runs/fs-dsprites   # PSNR / SSIM, 512 images
    python benchmarks/first_stage.py encode --presets first-stage-vq,tiny-cpu-first-stage

``quality`` reconstructs 512 images of each run's dataset drawn with a seed the training never
used for its batches' order (the draw is uniform over the factor grid), writes a grid of 16 and
reports MSE, PSNR and SSIM (metrics/reconstruction.py). ``encode`` times the frozen encoder alone
at batch 32 (what every latent EncDiff step adds, and the most that caching latents could save).
Results: ``benchmarks/results/first_stage-*.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from diffdrl.models import registry
from diffdrl.training.checkpoint import latest_checkpoint
from diffdrl.training.config import load_config
from diffdrl.training.runs import load_run
from diffdrl.viz.first_stage_report import reconstruction_quality, reconstructions, save_reconstructions


def quality(run_dir: str, out: Path, num: int = 512, seed: int = 12345) -> dict:
    run = load_run(run_dir)
    _, images = run.sample(num, seed)
    start = time.perf_counter()
    rebuilt = reconstructions(run.model, images)
    scores = reconstruction_quality(images, rebuilt)
    log = [json.loads(r) for r in (Path(run_dir) / "train_log.jsonl").read_text().splitlines()]
    picture = out / f"first_stage-{Path(run_dir).name}.png"
    title = f"{run.config.data.name}: PSNR {scores['reconstruction.psnr']:.1f} dB (step {log[-1]['step']})"
    save_reconstructions(images[:16], rebuilt[:16], picture, title)
    return {
        "run": str(run_dir),
        "dataset": run.config.data.name,
        "model": run.config.model.name,
        "checkpoint": latest_checkpoint(Path(run_dir)).name,
        "images_seen": log[-1]["step"] * run.config.train.batch_size,
        "train_seconds": log[-1]["train_seconds"],
        "images": num,
        "seconds": time.perf_counter() - start,
        "picture": str(picture),
        **scores,
    }


@torch.no_grad()
def encode_speed(preset: str, batch: int = 32, repeats: int = 3) -> dict:
    config = load_config(preset)
    model = registry.build(config.model, config.data.resolution, seed=0).eval()
    x = torch.rand(batch, 3, config.data.resolution, config.data.resolution) * 2 - 1
    model.encode_latents(x)  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        model.encode_latents(x)
    return {"preset": preset, "batch": batch, "images_per_s": repeats * batch / (time.perf_counter() - start)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("quality")
    p.add_argument("runs", nargs="+")
    p.add_argument("--num", type=int, default=512)
    p = sub.add_parser("encode")
    p.add_argument("--presets", default="first-stage-vq,tiny-cpu-first-stage")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.command == "quality":
        rows = [quality(r, out, args.num) for r in args.runs]
        for r in rows:
            print(
                f"{r['dataset']:>16} {r['model']}  {r['images_seen']:>7} images seen  "
                f"PSNR {r['reconstruction.psnr']:6.2f} dB  SSIM {r['reconstruction.ssim']:.3f}  "
                f"-> {r['picture']}"
            )
    else:
        rows = [encode_speed(p) for p in args.presets.split(",")]
        for r in rows:
            print(f"{r['preset']:>22}  encode, batch {r['batch']}: {r['images_per_s']:7.1f} images/s")
    record = {"threads": torch.get_num_threads(), "load_average": os.getloadavg(), "rows": rows}
    path = out / f"first_stage-{args.command}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=2))
    os.replace(tmp, path)
    print(f"saved {path}")


if __name__ == "__main__":
    main()
