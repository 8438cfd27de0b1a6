"""First-stage figures: reconstruction quality of trained runs, and the cost of encoding.

    python benchmarks/first_stage.py quality runs/fs-shapes3d runs/fs-dsprites   # PSNR / SSIM, 512 images
    python benchmarks/first_stage.py encode --presets first-stage-vq,tiny-cpu-first-stage
    python benchmarks/first_stage.py --out benchmarks/results/latent cache --preset tiny-cpu-latent --steps 16
    python benchmarks/first_stage.py --out benchmarks/results/latent hits --preset paper-latent --sizes 480000

``quality`` reconstructs 512 images of each run's dataset drawn with a seed the training never
used for its batches' order (the draw is uniform over the factor grid), writes a grid of 16 and
reports MSE, PSNR and SSIM (metrics/reconstruction.py). ``encode`` times the frozen encoder alone
at batch 32 (what every latent EncDiff step adds, and the most that caching latents could save).
``cache`` times the training steps of a latent preset (``Trainer._step``: forward, backward, AdamW,
EMA; the batches rendered beforehand) with ``model.first_stage.cache_latents`` off, on with the
cache cold (every batch has new items, so it is encoded), off again, and on with it warm (the
same batches again, all cached), and the encoder alone on the same batches; it also replays the
preset's batch indices over its ``train.steps`` to count how many steps would find their whole
batch cached (the cache saves only on those: training/latent_cache.py). ``hits`` does that replay
alone, for a preset's batch and steps on datasets of the given sizes (no training). A preset whose
first stage does not exist is timed on an untrained one (``train_throughput.py``'s rule: the cost
does not depend on the weights).
Results: ``benchmarks/results/first_stage-*.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from diffdrl.models import registry
from diffdrl.training.batches import BatchStream, batch_index
from diffdrl.training.checkpoint import latest_checkpoint
from diffdrl.training.config import load_config
from diffdrl.training.runs import load_run
from diffdrl.training.trainer import Trainer
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


def full_hit_steps(size: int, batch: int, steps: int, seed: int) -> int:
    """Steps of a run whose whole batch is already cached when it comes (the trainer's draws)."""
    filled, hits = np.zeros(size, bool), 0
    for step in range(steps):
        index = batch_index(size, batch, seed, step)
        hits += bool(filled[index].all())
        filled[index] = True
    return hits


def hit_rows(preset: str, sizes: list[int]) -> list[dict]:
    """For a preset's batch and steps: how many steps find their batch fully cached, per dataset size."""
    tc = load_config(preset).train
    rows = []
    for size in sizes:
        hits = full_hit_steps(size, tc.batch_size, tc.steps, tc.seed)
        rows.append(
            {"preset": preset, "dataset_items": size, "batch_size": tc.batch_size, "run_steps": tc.steps}
            | {"run_steps_fully_cached": hits, "fraction": hits / tc.steps}
        )
    return rows


def _timed_steps(trainer, batches) -> float:
    start = time.perf_counter()
    for step, images, index in batches:
        trainer._step(step, images, None, index)
    return time.perf_counter() - start


def cache_speed(preset: str, steps: int, extra: list[str]) -> dict:
    """Seconds per training step with the latent cache off, cold and warm (see the module doc)."""
    overrides = [f"train.eval_every={10**9}", f"train.checkpoint_every={10**9}", "train.device=cpu", *extra]
    config = load_config(preset, overrides)
    with tempfile.TemporaryDirectory() as tmp:
        path = config.model.first_stage.path
        if not Path(path).exists():
            from diffdrl.training.first_stage_export import export_untrained

            stand_in = load_config(Path(path).name, [f"data.resolution={config.data.resolution}"])
            path = str(export_untrained(stand_in, Path(tmp) / "first_stage"))
        trainers = {}
        for cached in (False, True):
            more = [f"model.first_stage.path={path}", f"model.first_stage.cache_latents={cached}"]
            run = Path(tmp) / ("cache" if cached else "off")
            trainers[cached] = Trainer(load_config(preset, [*overrides, *more]), run, progress=False)
        off, on = trainers[False], trainers[True]
        tc = off.config.train
        stream = BatchStream(off.images, len(off.dataset), tc.batch_size, tc.seed, 0, steps)
        batches = [(k, stream.batch(k), stream.index(k)) for k in range(steps)]
        for trainer in (off, on):
            trainer.model.train()
            _timed_steps(trainer, batches[:1])  # warm-up (kernel choice, allocations); caches batch 0
        # off, cold, off, warm: the two uncached passes bracket the cached ones against load drift
        seconds = {"off_first": _timed_steps(off, batches[1:]), "cold": _timed_steps(on, batches[1:])}
        seconds |= {"off_second": _timed_steps(off, batches[1:]), "warm": _timed_steps(on, batches[1:])}
        seconds["off"] = (seconds["off_first"] + seconds["off_second"]) / 2
        stage = off.unwrapped.first_stage
        begin = time.perf_counter()
        for _, images, _ in batches[1:]:
            stage.raw_latents(off._to_input(images))
        seconds["encoder_alone"] = time.perf_counter() - begin
        counts = {"encoded": on.latent_cache.encoded, "served": on.latent_cache.hits}
    timed = steps - 1
    size, batch = len(off.dataset), tc.batch_size
    hits = full_hit_steps(size, batch, tc.steps, tc.seed)
    per_step = {k: v / timed for k, v in seconds.items()}
    run_seconds = hits * per_step["warm"] + (tc.steps - hits) * per_step["cold"]
    return {
        "preset": preset,
        "overrides": extra,
        "dataset": off.config.data.name,
        "dataset_items": size,
        "batch_size": batch,
        "timed_steps": timed,
        "cache_batches": counts,  # encoded: warm-up + cold; served from the cache: warm
        "seconds_per_step": per_step,
        "images_per_s": {k: batch / v for k, v in per_step.items()},
        "warm_speedup": per_step["off"] / per_step["warm"],
        "run_steps": tc.steps,
        "run_steps_fully_cached": hits,
        "run_speedup_expected": tc.steps * per_step["off"] / run_seconds,
    }


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
    p = sub.add_parser("cache")
    p.add_argument("--preset", default="tiny-cpu-latent")
    p.add_argument("--steps", type=int, default=3, help="batches per timing (the first is the warm-up)")
    p.add_argument("--extra", nargs="*", default=[], help="more config overrides")
    p = sub.add_parser("hits")
    p.add_argument("--preset", default="paper-latent")
    p.add_argument("--sizes", default="480000", help="comma-separated dataset sizes")
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
    elif args.command == "cache":
        rows = [cache_speed(args.preset, args.steps, args.extra)]
        for r in rows:
            ips = r["images_per_s"]
            print(
                f"{r['preset']} (batch {r['batch_size']}, {r['timed_steps']} timed steps): cache off "
                f"{ips['off']:.1f}, cold {ips['cold']:.1f}, warm {ips['warm']:.1f} images/s (warm "
                f"{r['warm_speedup']:.2f}x off); encoder alone {ips['encoder_alone']:.1f} images/s; over "
                f"its {r['run_steps']} steps on {r['dataset_items']} items {r['run_steps_fully_cached']} "
                f"would be fully cached: {r['run_speedup_expected']:.3f}x expected"
            )
    elif args.command == "hits":
        rows = hit_rows(args.preset, [int(n) for n in args.sizes.split(",")])
        for r in rows:
            print(
                f"{r['preset']} (batch {r['batch_size']}, {r['run_steps']} steps) on {r['dataset_items']} "
                f"items: {r['run_steps_fully_cached']} steps fully cached ({r['fraction']:.1%})"
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
