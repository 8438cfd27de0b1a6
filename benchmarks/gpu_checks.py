"""The Python side of ``benchmarks/gpu_check.sh``: environment facts, CUDA-only correctness checks
and the tests that need a GPU (``gpu_summary.py`` prints the table of all stages).

Each subcommand is one stage of the script and writes one JSON file into the output folder:

    python benchmarks/gpu_checks.py env OUT     # OUT/env.json: versions, device, bf16 matmul TFLOP/s
    python benchmarks/gpu_checks.py checks OUT  # OUT/checks.json: each check's values, tolerance, seconds
    python benchmarks/gpu_checks.py tests OUT   # OUT/tests.json: pytest -m gpu (what `make test` skips)
    python benchmarks/gpu_checks.py peak OUT    # the measured bf16 TFLOP/s, for gpu_train.py --peak-tflops

``--smoke`` runs the same code on the CPU at tiny shapes (``SMOKE_SET``), so that CI proves the script
works before GPU time is spent; there each check compares the CPU paths that stand in for the CUDA
ones (its ``note`` says which), and the GPU tests are collected and skipped.

Tolerances (``TOLERANCES``) follow the usual float error of each comparison: float32 against float32
by other kernels (channels_last, compiled) within 1e-4 relative on the loss and the gradient; bf16
autocast against float32 within 5e-3 relative on the loss, 0.1 on the gradient and a gradient cosine
of at least 0.99 (bf16 keeps 8 bits of mantissa, ~4e-3 per operation; on the CPU's bf16 autocast the
paper model gave 1.8e-5, 0.024 and 1.000); renders within 1 of 255 (the shading rounds differently
on another device); the data paths exactly.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ET
from contextlib import nullcontext
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# tiny shapes for --smoke: the tests' tiny model (tests/conftest.py), on the CPU
SMOKE_SET = [
    "train.device=cpu",
    "data.resolution=16",
    "model.units=3",
    "model.token_dim=4",
    "model.encoder.width=8",
    "model.token_bank.hidden=[8]",
    "model.denoiser.channels=[8,16]",
    "model.denoiser.cross_attention=[false,true]",
    "model.denoiser.heads=2",
    "model.denoiser.norm_groups=4",
    "model.schedule.timesteps=50",
    "train.eval_batch_size=4",
]
TOLERANCES = {  # in the order they run: compilation, the slowest, last
    "fp32_vs_bf16": {"loss_rel_diff": 5e-3, "grad_rel_diff": 0.1, "grad_cosine_min": 0.99},
    "channels_last_vs_nchw": {"loss_rel_diff": 1e-4, "grad_rel_diff": 1e-4},
    "render_device_vs_cpu": {"max_abs_diff": 1},
    "resident_vs_host": {"mismatched_pixels": 0},
    "compiled_vs_eager": {"loss_rel_diff": 1e-4, "grad_rel_diff": 1e-4},
}


def write_json(path: Path, record: dict) -> None:
    """Atomic, so a stage killed mid-write leaves the previous file (none is the same as stale)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, path)


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def gpu_train_module():
    """benchmarks/gpu_train.py (its variants and datasheet peaks), imported without the library."""
    spec = importlib.util.spec_from_file_location("gpu_train", Path(__file__).with_name("gpu_train.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- env -------------------------------------------------------------------------------------------


def matmul_tflops(device: str, n: int, repeats: int) -> float:
    """Median rate of an n x n x n bf16 matrix product on random data (never zeros: they run faster)."""
    import torch

    gen = torch.Generator(device).manual_seed(0)
    pairs = [
        (
            torch.randn(n, n, device=device, generator=gen).bfloat16(),
            torch.randn(n, n, device=device, generator=gen).bfloat16(),
        )
        for _ in range(2)
    ]
    for a, b in pairs * 2:  # warm-up: handles, clocks
        a @ b
    seconds = []
    for i in range(repeats):
        a, b = pairs[i % 2]
        if device == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            a @ b
            end.record()
            end.synchronize()
            seconds.append(start.elapsed_time(end) / 1e3)
        else:
            tick = time.perf_counter()
            a @ b
            seconds.append(time.perf_counter() - tick)
    seconds.sort()
    return 2 * n**3 / seconds[len(seconds) // 2] / 1e12


def nvidia_smi() -> str | None:
    try:
        done = subprocess.run(
            [
                "nvidia-smi",
                "--query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit",
                "--format=csv,noheader",
            ],
            capture_output=True,
            text=True,
            timeout=20,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None


def versions() -> dict:
    out = {}
    for name in ("torch", "diffusers", "accelerate", "lightgbm", "scikit-learn", "numpy", "safetensors"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def env(args: argparse.Namespace) -> None:
    import torch

    record = {
        "smoke": args.smoke,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "packages": versions(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "nvidia_smi": nvidia_smi(),
    }
    if args.smoke:
        device, n, repeats = "cpu", 256, 5
        record.update(device="cpu", device_name=platform.processor() or platform.machine())
    else:
        if not torch.cuda.is_available():
            raise SystemExit("no CUDA device is visible to torch: run on a GPU machine, or pass --smoke")
        device, n, repeats = "cuda", 8192, 10
        props = torch.cuda.get_device_properties(0)
        record.update(
            device="cuda",
            device_name=torch.cuda.get_device_name(0),
            capability=".".join(map(str, torch.cuda.get_device_capability(0))),
            multiprocessors=props.multi_processor_count,
            memory_gib=props.total_memory / 2**30,
            cudnn=torch.backends.cudnn.version(),
        )
    datasheet = gpu_train_module().PEAK_BF16_TFLOPS
    name = record["device_name"]
    record["datasheet_bf16_tflops"] = next((v for k, v in datasheet.items() if k in name), None)
    record["matmul"] = {"n": n, "dtype": "bfloat16", "repeats": repeats, "statistic": "median"}
    record["measured_bf16_tflops"] = matmul_tflops(device, n, repeats)
    write_json(Path(args.out) / "env.json", record)
    print(json.dumps(record, indent=2))


# -- checks ----------------------------------------------------------------------------------------


def loss_and_grads(model, x, seed: int, context=None):
    """The training loss of batch ``x`` with draws from ``seed``, and the flat float32 gradient."""
    import torch

    from diffdrl.diffusion.draws import StepDraws

    model.zero_grad(set_to_none=True)
    with context or nullcontext():
        loss, _ = model(x, draws=StepDraws.seeded(seed, len(x), x.device))
    loss.backward()
    grads = torch.cat([p.grad.float().flatten() for p in model.parameters() if p.grad is not None])
    return float(loss.detach()), grads


def compare(a: tuple, b: tuple) -> dict:
    """Loss and gradient differences of run ``a`` against the reference ``b``."""
    import torch

    (loss_a, g_a), (loss_b, g_b) = a, b
    return {
        "loss": loss_a,
        "loss_reference": loss_b,
        "loss_rel_diff": abs(loss_a - loss_b) / abs(loss_b),
        "grad_rel_diff": float((g_a - g_b).norm() / g_b.norm()),
        "grad_cosine": float(torch.nn.functional.cosine_similarity(g_a, g_b, dim=0)),
    }


class Checks:
    """The correctness checks, each a method returning (measured, note); ``run`` times and records."""

    def __init__(self, smoke: bool):
        import torch

        from diffdrl.training.hardware import use_tf32

        self.smoke = smoke
        self.device = torch.device("cpu" if smoke else "cuda")
        use_tf32(False)  # the float32 references: full float32 in cuDNN and cuBLAS
        self.results = []

    def batch(self, preset: str, batch: int, tiny: bool = False):
        """A freshly initialised model of ``preset`` (with ``tiny`` or --smoke: the test suite's tiny
        model) in train mode, and a batch of its dataset."""
        import numpy as np
        import torch

        from diffdrl.data import make_dataset
        from diffdrl.data.ground_truth import to_model_input
        from diffdrl.models import registry
        from diffdrl.training.config import load_config

        tiny = tiny or self.smoke
        config = load_config("tiny-cpu" if tiny else preset, SMOKE_SET if tiny else [])
        data = make_dataset(config.data.name, config.data.path, config.data.resolution)
        _, images = data.sample(batch, np.random.default_rng(1))
        x = to_model_input(torch.from_numpy(images)).to(self.device)
        model = registry.build(config.model, config.data.resolution, seed=config.train.seed)
        return model.to(self.device).train(), x

    def model_name(self, preset: str) -> str:
        where = "tiny test model" if self.smoke or preset == "tiny" else f"{preset} preset"
        return f"{where} on {self.device.type}"

    def fp32_vs_bf16(self):
        from diffdrl.training.hardware import autocast

        model, x = self.batch("paper", 16)
        reference = loss_and_grads(model, x, 0)
        low = loss_and_grads(model, x, 0, autocast("bf16", self.device))
        return compare(low, reference), f"{self.model_name('paper')}, batch 16, bf16 autocast against float32"

    def channels_last_vs_nchw(self):
        import torch

        model, x = self.batch("paper", 8)
        reference = loss_and_grads(model, x, 0)
        nhwc = copy.deepcopy(model).to(memory_format=torch.channels_last)
        x_nhwc = x.contiguous(memory_format=torch.channels_last)
        measured = compare(loss_and_grads(nhwc, x_nhwc, 0), reference)
        return measured, f"{self.model_name('paper')}, batch 8, float32 (no TF32)"

    def compiled_vs_eager(self):
        import torch

        model, x = self.batch("tiny-cpu", 8, tiny=True)  # a small graph: compiles in seconds
        reference = loss_and_grads(model, x, 0)
        # --smoke: dynamo's capture and graph breaks without code generation (inductor takes minutes on a CPU)
        backend = "eager" if self.smoke else "inductor"
        compiled = torch.compile(copy.deepcopy(model), backend=backend)
        torch._dynamo.utils.counters.clear()
        measured = compare(loss_and_grads(compiled, x, 0), reference)
        measured["graph_breaks"] = sum(torch._dynamo.utils.counters["graph_break"].values())
        return measured, f"{self.model_name('tiny')}, batch 8, float32, torch.compile backend {backend!r}"

    def render_device_vs_cpu(self):
        import numpy as np
        import torch

        from diffdrl.data.synth_shapes3d import SynthShapes3D

        data = SynthShapes3D(resolution=16 if self.smoke else 64)
        codes = torch.from_numpy(data.sample_factors(256, np.random.default_rng(2)))
        on_device = data.render(codes, self.device).cpu().int()
        on_cpu = torch.from_numpy(data.images_for(codes.numpy())).int()
        diff = (on_device - on_cpu).abs()
        measured = {
            "images": len(codes),
            "max_abs_diff": int(diff.max()),
            "differing_pixel_fraction": float((diff > 0).float().mean()),
        }
        other = "a second CPU render (smoke: no CUDA)" if self.smoke else "the CPU render"
        return measured, f"synth-shapes3d {data.resolution}x{data.resolution}, {self.device} against {other}"

    def resident_vs_host(self):
        import numpy as np

        from diffdrl.data import make_dataset
        from diffdrl.training.batches import HostImages, ResidentImages

        rng = np.random.default_rng(3)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "arrays.npz"
            np.savez(
                path,
                images=rng.integers(0, 256, (600, 32, 32, 3), dtype=np.uint8),
                factors=np.stack(np.unravel_index(np.arange(600), (20, 30)), -1),
                factor_names=np.array(["a", "b"]),
                factor_sizes=np.array([20, 30]),
            )
            data = make_dataset("labelled-arrays", str(path), 32)
            resident, host = ResidentImages(data, self.device, chunk=256), HostImages(data)
            index = np.concatenate([[0, 599, 599], rng.integers(0, 600, 509)])  # ends, repeats
            got, expected = resident(index).cpu(), host(index)
        same_kind = got.shape == expected.shape and got.dtype == expected.dtype
        measured = {  # another shape or dtype: every value counts as mismatched
            "indices": len(index),
            "mismatched_pixels": int((got != expected).sum()) if same_kind else expected.numel(),
            "dtype": str(got.dtype).removeprefix("torch."),
            "on": str(resident.images.device),
        }
        return measured, f"labelled-arrays 600 x 32x32, chunked copy of 256, held on {self.device}"

    def run(self, name: str) -> None:
        tick = time.perf_counter()
        row = {"name": name, "tolerance": TOLERANCES[name]}
        try:
            measured, row["note"] = getattr(self, name)()
            row["measured"] = measured
            row["passed"] = passes(measured, TOLERANCES[name])
        except Exception:  # recorded, and the next check runs
            row.update(passed=False, error=traceback.format_exc()[-3000:])
        row["seconds"] = time.perf_counter() - tick
        self.results.append(row)
        print(f"{name}: {'pass' if row['passed'] else 'FAIL'} ({row['seconds']:.1f} s) {row.get('measured')}")
        if "error" in row:
            print(row["error"], file=sys.stderr)


def passes(measured: dict, tolerance: dict) -> bool:
    """Every tolerance met; a NaN fails (every comparison with NaN is false)."""
    ok = []
    for key, limit in tolerance.items():
        if key.endswith("_min"):
            ok.append(measured[key.removesuffix("_min")] >= limit)
        else:
            ok.append(measured[key] <= limit)
    return bool(all(ok))


def checks(args: argparse.Namespace) -> None:
    import torch

    if not args.smoke and not torch.cuda.is_available():
        raise SystemExit("no CUDA device is visible to torch: run on a GPU machine, or pass --smoke")
    runner = Checks(args.smoke)
    for name in TOLERANCES:
        runner.run(name)
        write_json(Path(args.out) / "checks.json", {"smoke": args.smoke, "checks": runner.results})
    if not all(r["passed"] for r in runner.results):
        raise SystemExit(1)


# -- tests -----------------------------------------------------------------------------------------


def tests(args: argparse.Namespace) -> None:
    """``pytest -m gpu``: the tests that skip without CUDA. On a GPU every one must run and pass;
    in --smoke (no CUDA) they must be collected, and skip."""
    with tempfile.TemporaryDirectory() as tmp:
        junit = Path(tmp) / "junit.xml"
        files = sorted(
            str(p.relative_to(ROOT))
            for p in (ROOT / "tests").rglob("test_*.py")
            if "mark.gpu" in p.read_text()
        )  # collecting only these saves seconds
        command = [
            sys.executable,
            "-m",
            "pytest",
            "-m",
            "gpu",
            "-q",
            "-p",
            "no:cacheprovider",
            "-rs",
            f"--junitxml={junit}",
            *files,
        ]
        tick = time.perf_counter()
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        seconds = time.perf_counter() - tick
        print(done.stdout[-6000:], done.stderr[-3000:], sep="\n")
        cases = []
        if junit.exists():
            for case in ET.parse(junit).getroot().iter("testcase"):
                outcome = next((c.tag for c in case if c.tag in ("failure", "error", "skipped")), "passed")
                message = next((c.get("message", "") for c in case if c.tag != "system-out"), "")
                cases.append(
                    {
                        "test": f"{case.get('classname')}::{case.get('name')}",
                        "outcome": outcome,
                        "message": message[:500],
                    }
                )
    count = {o: sum(c["outcome"] == o for c in cases) for o in ("passed", "failure", "error", "skipped")}
    if args.smoke:
        passed = bool(cases) and count["failure"] == count["error"] == 0
    else:
        passed = count["passed"] >= 1 and count["passed"] == len(cases)
    record = {
        "smoke": args.smoke,
        "command": " ".join(command[2:]),
        "exit": done.returncode,
        "seconds": seconds,
        "counts": count,
        "passed": passed,
        "tests": cases,
    }
    write_json(Path(args.out) / "tests.json", record)
    if not passed:
        raise SystemExit(1)


def peak(args: argparse.Namespace) -> None:
    value = (read_json(Path(args.out) / "env.json") or {}).get("measured_bf16_tflops")
    if value:
        print(f"{value:.4g}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("env", "checks", "tests", "peak", "smoke-set"))
    parser.add_argument("out", nargs="?", help="the output folder")
    parser.add_argument("--smoke", action="store_true", help="the CPU at tiny shapes")
    args = parser.parse_args()
    if args.command == "smoke-set":
        print(" ".join(SMOKE_SET))
        return
    if not args.out or not Path(args.out).is_dir():
        raise SystemExit(f"{args.command}: the output folder {args.out!r} must exist")
    {"env": env, "checks": checks, "tests": tests, "peak": peak}[args.command](args)


if __name__ == "__main__":
    main()
