"""Training throughput (images/s) of the presets through the real training loop.

Runs ``Trainer`` for 2 x ``--steps`` steps with one log row per ``--steps``; the second row times
steady-state steps (batch rendering, forward, backward, AdamW, EMA), excluding start-up.
Also times the procedural renderer alone, to show data generation is off the critical path.

    python benchmarks/train_throughput.py                     # tiny-cpu and paper on this machine
    python benchmarks/train_throughput.py --presets paper,paper-latent   # pixel vs latent, one run

A latent preset whose ``model.first_stage.path`` does not exist is timed on an untrained first
stage of the preset that path is named after (``runs/first-stage-vq`` -> ``first-stage-vq``):
the cost per image does not depend on the weights. Its encoding is part of every training step.
    python benchmarks/train_throughput.py --presets paper --device cuda --batch-size 128 \
        --extra train.mixed_precision=bf16 train.channels_last=true
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from diffdrl.data import make_dataset
from diffdrl.training.config import load_config
from diffdrl.training.trainer import Trainer


def time_training(preset: str, steps: int, batch_size: int | None, device: str, extra: list[str]) -> dict:
    overrides = [
        f"train.steps={2 * steps}",
        f"train.log_every={steps}",
        f"train.eval_every={10**9}",
        f"train.checkpoint_every={10**9}",
        f"train.device={device}",
        *extra,
    ]
    if batch_size:
        overrides.append(f"train.batch_size={batch_size}")
    config = load_config(preset, overrides)
    with tempfile.TemporaryDirectory() as tmp:
        stage = getattr(config.model, "first_stage", None)
        if stage is not None and stage.path and not Path(stage.path).exists():
            from diffdrl.training.first_stage_export import export_untrained

            stand_in = load_config(Path(stage.path).name, [f"data.resolution={config.data.resolution}"])
            stage.path = str(export_untrained(stand_in, Path(tmp) / "first_stage"))
        trainer = Trainer(config, Path(tmp) / "run", progress=False)
        params = sum(p.numel() for p in trainer.unwrapped.parameters())
        trainer.train()
        rows = [json.loads(r) for r in (Path(tmp) / "run" / "train_log.jsonl").read_text().splitlines()]
    return {
        "preset": preset,
        "resolution": config.data.resolution,
        "batch_size": config.train.batch_size,
        "parameters": params,
        "timed_steps": steps,
        "images_per_s": rows[-1]["images_per_s"],
        "overrides": extra,
        "device": str(trainer.device),
    }


def time_rendering(resolution: int, batch_size: int = 256, repeats: int = 5) -> float:
    data = make_dataset("synth-shapes3d", None, resolution)
    rng = np.random.default_rng(0)
    data.images_at(rng.integers(0, len(data), batch_size))  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        data.images_at(rng.integers(0, len(data), batch_size))
    return repeats * batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--presets", default="tiny-cpu,paper")
    parser.add_argument("--steps", type=int, default=0, help="timed steps (default: 10 tiny, 2 paper on CPU)")
    parser.add_argument(
        "--batch-size", type=int, default=0, help="override (default: preset's; paper on CPU: 32)"
    )
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--extra", nargs="*", default=[], help="more config overrides")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()

    on_gpu = args.device != "cpu" and torch.cuda.is_available()
    results = []
    for preset in args.presets.split(","):
        steps = args.steps or (10 if preset.startswith("tiny") or on_gpu else 2)
        batch = args.batch_size or (None if on_gpu or preset.startswith("tiny") else 32)
        r = time_training(preset, steps, batch, args.device, args.extra)
        results.append(r)
        print(
            f"{r['preset']:>10}  {r['resolution']}x{r['resolution']}  batch {r['batch_size']:>4}  "
            f"{r['parameters'] / 1e6:6.2f}M params  {r['images_per_s']:8.1f} images/s  ({r['device']})"
        )
    render = {res: time_rendering(res) for res in (32, 64)}
    for res, ips in render.items():
        print(f"  synth-shapes3d render {res}x{res}: {ips:8.0f} images/s")
    host = {
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name() if on_gpu else None,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"train_throughput-{'cuda' if on_gpu else 'cpu'}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"host": host, "training": results, "render_images_per_s": render}, indent=2))
    os.replace(tmp, path)
    print(f"saved {path}")


if __name__ == "__main__":
    main()
