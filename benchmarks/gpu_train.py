"""Training speed on one GPU with each fast path switched on in turn, and time to a quality target.

``speed``: images/s through the real training loop (``Trainer``: batches rendered on the GPU,
forward, backward, AdamW, EMA) of a preset, default ``paper`` at 64x64, with the switches added one
at a time:

    fp32           float32, NCHW, foreach AdamW (train.fast_path=false, mixed_precision='no')
    bf16           + bf16 autocast
    channels_last  + channels_last tensors
    fast_path      the default on CUDA: bf16, channels_last, fused AdamW, TF32
    compile        + torch.compile

Each variant runs in a fresh process (TF32 flags, compile caches and peak-memory counters are per
process) for 2 x ``--steps`` steps; the second half is timed (the first holds cuDNN tuning and
compilation, reported as warm-up). Peak memory is ``torch.cuda.max_memory_allocated``; MFU is
counted model FLOPs (``torch.utils.flop_counter`` on one forward + backward) per second over the
GPU's dense bf16 peak (``--peak-tflops``, e.g. a measured matmul rate; else the datasheet's for
H100/H200/A100/L4). ``--time-limit`` bounds the whole command: a variant still running when it is
spent is stopped and recorded as timed out, and the ones after it as skipped. The JSON,
``<out>/gpu_train-<preset>-<cpu|cuda>.json``, is rewritten after every variant, so a killed command
keeps what it measured; the table prints last.

    python benchmarks/gpu_train.py speed                                  # paper preset, batch 128
    python benchmarks/gpu_train.py speed --batch-size 256 --variants fp32,fast_path,compile
    python benchmarks/gpu_train.py speed --device cpu --preset tiny-cpu --batch-size 8 --steps 2 \\
        --variants fp32,bf16,channels_last --out /tmp/bench               # CPU smoke check

``quality``: train a preset (default ``paper`` on synth-shapes3d) until DCI disentanglement reaches
``--target`` (0.9), scoring the EMA model after every ``--every`` minutes of training (the approach
of ``cpu_budget.py``). Training resumes from the run's checkpoint, so a command that must end
within a device's time limit stops before the next chunk would overrun ``--command-minutes`` and
the same command continues it later. Reports training minutes, wall minutes (training plus
scoring, checkpoints and start-up, summed over commands) and the final FactorVAE / DCI scores;
JSON goes to ``<out>/gpu_quality-<name>.json``.

    python benchmarks/gpu_train.py quality --every 5 --command-minutes 9   # repeat until "reached"
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

# The library (seconds to import) is imported inside the functions that train: the speed command's
# parent only starts processes, and gpu_checks.py reads this module's tables.
RESULTS = Path(__file__).parent / "results"
VARIANTS = {  # cumulative: each adds one switch to the one before
    "fp32": ["train.fast_path=false", "train.mixed_precision='no'"],
    "bf16": ["train.fast_path=false", "train.mixed_precision=bf16"],
    "channels_last": ["train.fast_path=false", "train.mixed_precision=bf16", "train.channels_last=true"],
    "fast_path": ["train.fast_path=true", "train.mixed_precision=auto"],
    "compile": ["train.fast_path=true", "train.mixed_precision=auto", "train.compile=true"],
}
PEAK_BF16_TFLOPS = {"H100": 989.4, "H200": 989.4, "A100": 312.0, "L4": 121.0}  # dense, SXM where it differs
QUALITY_KEYS = {  # curve key -> metric result keys (fast protocol first)
    "dci_disentanglement": ("dci_fast.disentanglement", "dci.disentanglement"),
    "dci_completeness": ("dci_fast.completeness", "dci.completeness"),
    "factor_vae": ("factor_vae_fast.eval_accuracy", "factor_vae.eval_accuracy"),
}


def host(device: str) -> dict:
    gpu = torch.cuda.get_device_name() if device != "cpu" and torch.cuda.is_available() else None
    return {
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "gpu": gpu,
    }


# -- speed ---------------------------------------------------------------------------------------


def flops_per_image(trainer) -> float:
    """Model FLOPs of one training image (forward + backward), counted on a 2-image batch."""
    from torch.utils.flop_counter import FlopCounterMode

    from diffdrl.diffusion.draws import StepDraws

    model = copy.deepcopy(trainer.unwrapped)
    x = torch.zeros(
        2, 3, trainer.config.data.resolution, trainer.config.data.resolution, device=trainer.device
    )
    with FlopCounterMode(display=False) as counter, trainer.autocast():
        model(x, draws=StepDraws.seeded(0, len(x), trainer.device))[0].backward()
    return counter.get_total_flops() / 2


def run_variant(spec: dict) -> dict:
    """One variant in this process: train 2 x steps, time the second half."""
    from diffdrl.training.config import load_config
    from diffdrl.training.trainer import Trainer

    steps = spec["steps"]
    overrides = [
        f"train.device={spec['device']}",
        f"train.steps={2 * steps}",
        f"train.log_every={steps}",
        f"train.eval_every={10**9}",
        f"train.checkpoint_every={10**9}",
        *VARIANTS[spec["variant"]],
        *spec["set"],
    ]
    if spec["batch_size"]:
        overrides.append(f"train.batch_size={spec['batch_size']}")
    config = load_config(spec["preset"], overrides)
    cuda = torch.cuda.is_available() and spec["device"] != "cpu"
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(config, Path(tmp) / "run", progress=False)
        flops = flops_per_image(trainer)
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        trainer.train()
        rows = [json.loads(r) for r in (Path(tmp) / "run" / "train_log.jsonl").read_text().splitlines()]
    return {
        "variant": spec["variant"],
        "preset": spec["preset"],
        "resolution": config.data.resolution,
        "batch_size": config.train.batch_size,
        "parameters": sum(p.numel() for p in trainer.unwrapped.parameters()),
        "timed_steps": steps,
        "images_per_s": rows[-1]["images_per_s"],
        "warmup_s": rows[0]["train_seconds"],
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
        "gflops_per_image": flops / 1e9,
        "settings": trainer.settings,
        "overrides": overrides,
    }


def measure_variant(spec: dict, timeout: float | None) -> dict:
    """One variant in a fresh process: its result row, or ``{"variant", "error"}``."""
    variant = spec["variant"]
    try:
        done = subprocess.run(
            [sys.executable, __file__, "_variant", json.dumps(spec)],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        print(f"{variant}: timed out after {timeout:.0f} s (--time-limit)", flush=True)
        return {"variant": variant, "error": f"timed out after {timeout:.0f} s (--time-limit)"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        print(f"{variant}: failed (exit {done.returncode})\n{done.stderr[-3000:]}", flush=True)
        return {"variant": variant, "error": done.stderr[-3000:]}
    return json.loads(lines[-1][len("RESULT ") :])


def write_json(path: Path, record: dict) -> None:
    """Atomically, so a killed command leaves the last whole file; without the library's import
    (seconds), which the speed command's parent does not otherwise need."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, path)


def speed(args: argparse.Namespace) -> None:
    variants = args.variants.split(",")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variant(s) {unknown} (variants: {', '.join(VARIANTS)})")
    if args.time_limit < 0:
        raise SystemExit(f"--time-limit must be >= 0 seconds (0 = none), got {args.time_limit}")
    started = time.perf_counter()
    info = host(args.device)
    peak = args.peak_tflops or next(
        (v for k, v in PEAK_BF16_TFLOPS.items() if k in (info["gpu"] or "")), None
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = "cpu" if args.device == "cpu" or not info["gpu"] else "cuda"
    path = out / f"gpu_train-{Path(args.preset).stem}-{device}.json"
    results = []
    for variant in variants:
        left = args.time_limit - (time.perf_counter() - started) if args.time_limit else None
        if left is not None and left < 1:
            results.append({"variant": variant, "error": "skipped: --time-limit spent"})
            print(f"{variant}: skipped, --time-limit spent", flush=True)
        else:
            spec = {
                "variant": variant,
                "preset": args.preset,
                "device": args.device,
                "batch_size": args.batch_size,
                "steps": args.steps,
                "set": args.set,
            }
            print(f"{variant}: running {2 * args.steps} steps ...", flush=True)
            results.append(measure_variant(spec, left))
        r = results[-1]
        if "error" not in r:
            r["mfu_bf16_peak"] = r["gflops_per_image"] * r["images_per_s"] / (1e3 * peak) if peak else None
        record = {"host": info, "preset": args.preset, "peak_bf16_tflops": peak, "results": results}
        write_json(path, record)
    print(f"saved {path}\n")
    print(f"{args.preset}, {info['gpu'] or 'CPU'}; images/s of the timed steps (warm-up excluded)")
    print(
        f"{'variant':<14}{'batch':>6}{'precision':>10}{'NHWC':>6}{'fused':>6}{'TF32':>6}{'compile':>8}"
        f"{'images/s':>10}{'warm-up s':>10}{'peak GiB':>9}{'MFU':>7}"
    )
    for r in results:
        if "error" in r:
            why = r["error"].strip().splitlines()
            print(f"{r['variant']:<14}  {why[-1] if why else 'failed'}")
            continue
        s, yes = r["settings"], {True: "yes", False: "no"}
        memory = f"{r['peak_memory_gib']:.1f}" if r["peak_memory_gib"] is not None else "-"
        mfu = f"{100 * r['mfu_bf16_peak']:.1f}%" if r["mfu_bf16_peak"] is not None else "-"
        print(
            f"{r['variant']:<14}{r['batch_size']:>6}{s['mixed_precision']:>10}{yes[s['channels_last']]:>6}"
            f"{yes[s['fused_adamw']]:>6}{yes[s['tf32']]:>6}{yes[s['compile']]:>8}"
            f"{r['images_per_s']:>10.1f}{r['warmup_s']:>10.1f}{memory:>9}{mfu:>7}"
        )


# -- time to quality ---------------------------------------------------------------------------


def quality(args: argparse.Namespace) -> None:
    from diffdrl.atomic import atomic_write_text
    from diffdrl.training.config import load_config
    from diffdrl.training.trainer import Trainer

    started = time.perf_counter()
    run_dir = Path(args.runs) / args.name
    path = Path(args.out) / f"gpu_quality-{args.name}.json"
    record = json.loads(path.read_text()) if path.exists() else {"wall_seconds": 0.0, "points": []}
    overrides = [
        *args.set,
        f"train.device={args.device}",
        f"train.seed={args.seed}",
        f"train.metrics=[{','.join(args.metrics)}]",
        "train.metrics_every=0",
        f"train.metrics_preset={args.metrics_preset}",
        f"train.steps={10**9}",
    ]
    chunk_wall = 0.0
    while not record.get("reached"):
        points = record["points"]
        minutes = (len(points) + 1) * args.every
        if minutes > args.max_minutes:
            print(f"{args.name}: gave up at {args.max_minutes} training minutes below DCI {args.target}")
            break
        elapsed = time.perf_counter() - started
        if elapsed + max(chunk_wall, 60 * args.every) > 60 * args.command_minutes:
            print(f"{args.name}: stopping before the command limit; run the same command to continue")
            break
        chunk_start = time.perf_counter()
        config = load_config(args.preset, [*overrides, f"train.time_budget_minutes={minutes}"])
        trainer = Trainer(config, run_dir, resume=True, progress=args.progress)
        trainer.train()
        rows = [json.loads(r) for r in (run_dir / "metrics.jsonl").read_text().splitlines()]
        scored = [r for r in rows if any(k in r for keys in QUALITY_KEYS.values() for k in keys)]
        row = scored[-1] if scored and scored[-1]["step"] == trainer.step else None
        if row is None:  # the chunk had trained before a kill interrupted its scoring
            row = trainer.evaluate_metrics()
        chunk_wall = time.perf_counter() - chunk_start
        point = {"train_minutes": row["train_seconds"] / 60, "step": row["step"]}
        for name, keys in QUALITY_KEYS.items():
            point[name] = next((row[k] for k in keys if k in row), None)
        record["wall_seconds"] += chunk_wall
        point["wall_minutes"] = record["wall_seconds"] / 60
        points.append(point)
        record.update(
            {
                "name": args.name,
                "preset": args.preset,
                "overrides": args.set,
                "target_dci_disentanglement": args.target,
                "metrics_preset": args.metrics_preset,
                "batch_size": config.train.batch_size,
                "settings": trainer.settings,
                "host": host(args.device),
                "reached": (point["dci_disentanglement"] or 0.0) >= args.target,
            }
        )
        Path(args.out).mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(record, indent=1) + "\n")
        scores = ", ".join(f"{k} {v:.3f}" for k, v in point.items() if k in QUALITY_KEYS and v is not None)
        print(
            f"{args.name}: {point['train_minutes']:.1f} training min, {point['wall_minutes']:.1f} wall min, "
            f"step {point['step']}: {scores}",
            flush=True,
        )
    if record["points"]:
        last = record["points"][-1]
        state = "reached" if record.get("reached") else "not reached yet"
        score = {k: "-" if last[k] is None else f"{last[k]:.3f}" for k in QUALITY_KEYS}
        print(
            f"\n{'target':<10}{'state':>16}{'train min':>11}{'wall min':>10}{'step':>9}{'DCI-D':>8}"
            f"{'FactorVAE':>11}\n"
            f"{args.target:<10}{state:>16}{last['train_minutes']:>11.1f}{last['wall_minutes']:>10.1f}"
            f"{last['step']:>9}{score['dci_disentanglement']:>8}{score['factor_vae']:>11}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--preset", default="paper")
    common.add_argument("--device", default="cuda", choices=("cuda", "cpu", "auto"))
    common.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    common.add_argument("--out", default=str(RESULTS))
    p = sub.add_parser("speed", parents=[common], help="images/s with each switch on in turn")
    p.add_argument("--batch-size", type=int, default=0, help="default: the preset's")
    p.add_argument("--steps", type=int, default=20, help="timed steps (as many again warm up)")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--peak-tflops", type=float, default=0.0, help="dense bf16 peak for MFU")
    p.add_argument("--time-limit", type=float, default=0.0, help="seconds for all variants (0 = none)")
    p = sub.add_parser("quality", parents=[common], help="train until DCI disentanglement >= target")
    p.add_argument("--name", default="paper")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--target", type=float, default=0.9)
    p.add_argument("--every", type=float, default=5.0, help="training minutes between scorings")
    p.add_argument("--max-minutes", type=float, default=600.0, help="training minutes before giving up")
    p.add_argument("--command-minutes", type=float, default=9.0, help="this command's wall-clock limit")
    p.add_argument("--metrics", nargs="+", default=["factor_vae", "dci"])
    p.add_argument("--metrics-preset", default="fast", choices=("fast", "canonical"))
    p.add_argument("--runs", default="runs/gpu_quality")
    p.add_argument("--progress", action="store_true")
    p = sub.add_parser("_variant")  # internal: one speed variant in a fresh process
    p.add_argument("spec")
    args = parser.parse_args()
    if args.command == "_variant":
        print("RESULT " + json.dumps(run_variant(json.loads(args.spec))), flush=True)
    elif args.command == "speed":
        speed(args)
    else:
        quality(args)


if __name__ == "__main__":
    main()
