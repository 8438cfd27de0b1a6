"""Training throughput (images/s) of the presets through the real training loop.

Runs ``Trainer`` for 2 x ``--steps`` steps with one log row per ``--steps``; the second row times
steady-state steps (batch rendering, forward, backward, AdamW, EMA), excluding start-up.
Also times the procedural renderer alone, to show data generation is off the critical path.

MFU (model FLOPs utilisation) = images/s x training FLOPs per image / the machine's peak. FLOPs per
image are counted by ``torch.utils.flop_counter.FlopCounterMode`` over one forward and backward of
the preset's model (matmuls, convolutions and attention; elementwise work is not counted), and the
peak is measured here with a 2048x2048 matmul in float32 and bfloat16, so the MFU is against what
this machine does, not a datasheet. A run under bf16 autocast is compared with the bf16 peak.

    python benchmarks/train_throughput.py                     # tiny-cpu and paper on this machine
    python benchmarks/train_throughput.py --presets paper,paper-latent   # pixel vs latent, one run

A latent preset whose ``model.first_stage.path`` does not exist is timed on an untrained first
stage of the preset that path is named after (``runs/first-stage-vq`` -> ``first-stage-vq``):
the cost per image does not depend on the weights. Its encoding is part of every training step.
Likewise a DisDiff preset without ``model.pretrained.path`` (``tiny-cpu-disdiff``) is timed on a
denoiser of ``tiny-cpu-ddpm`` (at the preset's resolution) trained for one step:
    python benchmarks/train_throughput.py --presets tiny-cpu,tiny-cpu-ddpm,tiny-cpu-disdiff
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
from torch.utils.flop_counter import FlopCounterMode

from diffdrl.data import make_dataset
from diffdrl.diffusion.draws import StepDraws
from diffdrl.training.config import load_config
from diffdrl.training.trainer import Trainer


def matmul_peak(dtype: torch.dtype, device: str, n: int = 2048, seconds: float = 1.0) -> float:
    """Measured FLOP/s of an n x n matmul in ``dtype`` on ``device`` (best of repeated timings)."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    a @ b  # warm-up
    sync()
    best, spent, repeats = 0.0, 0.0, 1
    while spent < seconds:
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        sync()
        elapsed = time.perf_counter() - start
        best, spent = max(best, 2 * n**3 * repeats / elapsed), spent + elapsed
        repeats = min(2 * repeats, 64)
    return best


def training_flops_per_image(trainer: Trainer) -> float:
    """FLOPs of one training step's forward and backward per image, as the trainer runs it
    (its precision and memory format), counted on one batch; no optimiser step is taken."""
    model, tc = trainer.unwrapped, trainer.config.train
    res, channels = trainer.config.data.resolution, getattr(trainer.unwrapped, "channels", 3)
    x = trainer._to_input(torch.randint(0, 256, (tc.batch_size, res, res, channels), dtype=torch.uint8))
    with FlopCounterMode(display=False) as counter:
        with trainer.autocast():
            loss, _ = model(x, draws=StepDraws.seeded(0, len(x), trainer.device))
        loss.backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / tc.batch_size


def has_export(path: str) -> bool:
    from diffdrl.models.latent_space import export_dir

    try:
        return export_dir(path).is_dir()
    except FileNotFoundError:
        return False


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
        if stage is not None and stage.path and not has_export(stage.path):
            from diffdrl.training.first_stage_export import export_untrained

            stand_in = load_config(
                Path(stage.path.removeprefix("builtin:")).name, [f"data.resolution={config.data.resolution}"]
            )
            stage.path = str(export_untrained(stand_in, Path(tmp) / "first_stage"))
        pretrained = getattr(config.model, "pretrained", None)
        if pretrained is not None and not pretrained.path:
            stand_in = load_config(
                "tiny-cpu-ddpm",
                [
                    f"data.resolution={config.data.resolution}",
                    "train.steps=1",
                    "train.batch_size=2",
                    "train.eval_batch_size=2",
                ],
            )
            pretrained.path = str(Path(tmp) / "pretrained")
            Trainer(stand_in, Path(pretrained.path), progress=False).train()
        trainer = Trainer(config, Path(tmp) / "run", progress=False)
        params = sum(p.numel() for p in trainer.unwrapped.parameters())
        flops = training_flops_per_image(trainer)
        trainer.train()
        rows = [json.loads(r) for r in (Path(tmp) / "run" / "train_log.jsonl").read_text().splitlines()]
    return {
        "preset": preset,
        "resolution": config.data.resolution,
        "batch_size": config.train.batch_size,
        "parameters": params,
        "timed_steps": steps,
        "images_per_s": rows[-1]["images_per_s"],
        "train_flops_per_image": flops,
        "precision": trainer.precision,
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
    where = "cuda" if on_gpu else "cpu"
    peak = {"no": matmul_peak(torch.float32, where), "bf16": matmul_peak(torch.bfloat16, where)}
    fp32, bf16 = peak["no"] / 1e9, peak["bf16"] / 1e9
    print(f"measured 2048x2048 matmul peak: fp32 {fp32:.0f}, bf16 {bf16:.0f} GFLOP/s")
    results = []
    for preset in args.presets.split(","):
        steps = args.steps or (10 if preset.startswith("tiny") or on_gpu else 2)
        batch = args.batch_size or (None if on_gpu or preset.startswith("tiny") else 32)
        r = time_training(preset, steps, batch, args.device, args.extra)
        achieved = r["images_per_s"] * r["train_flops_per_image"]
        # fp16 runs are compared with the bf16 peak: both are the 16-bit matmul units
        r["peak_flops"] = peak["no" if r["precision"] == "no" else "bf16"]
        r["achieved_flops"], r["mfu"] = achieved, achieved / r["peak_flops"]
        results.append(r)
        print(
            f"{r['preset']:>10}  {r['resolution']}x{r['resolution']}  batch {r['batch_size']:>4}  "
            f"{r['parameters'] / 1e6:6.2f}M params  {r['images_per_s']:8.1f} images/s  "
            f"{r['train_flops_per_image'] / 1e9:.2f} GFLOP/image  {achieved / 1e9:6.1f} GFLOP/s  "
            f"MFU {r['mfu']:.0%} of the {'fp32' if r['precision'] == 'no' else 'bf16'} peak  ({r['device']})"
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
        "matmul_peak_flops": {"float32": peak["no"], "bfloat16": peak["bf16"]},
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"train_throughput-{where}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"host": host, "training": results, "render_images_per_s": render}, indent=2))
    os.replace(tmp, path)
    print(f"saved {path}")


if __name__ == "__main__":
    main()
