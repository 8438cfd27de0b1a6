"""Latency of the small commands: the median wall time of ``diffdrl --help`` over fresh processes.

The command line builds its parser without torch, diffusers or matplotlib (``diffdrl.cli``), so
``--help``, ``datasets list`` and usage errors should answer in under a second on a laptop's two
cores; this measures it and also reports ``import diffdrl``. Prints a table and writes JSON.

    python benchmarks/cli_latency.py                     # benchmarks/results/cli_latency.json
    python benchmarks/cli_latency.py --runs 9 --out /tmp/latency.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

COMMANDS = {
    "diffdrl --help": ["-m", "diffdrl", "--help"],
    "diffdrl datasets list": ["-m", "diffdrl", "datasets", "list"],
    "diffdrl evaluate (usage error)": ["-m", "diffdrl", "evaluate"],
    "import diffdrl": ["-c", "import diffdrl"],
}
HEADLINE = "diffdrl --help"
HEAVY = ("diffusers", "torch._dynamo", "matplotlib")


def wall_times(args: list[str], runs: int) -> tuple[list[float], list[float]]:
    """Wall and CPU (user + system) seconds of ``runs`` fresh processes running ``python args``;
    the CPU time is the cost on busy cores, where the wall time also counts the wait for them."""
    times, cpu = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run([sys.executable, *args], capture_output=True, check=False)
        times.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return times, cpu


def heavy_imports() -> list[str]:
    """The modules of ``HEAVY`` that ``import diffdrl`` loads (``python -X importtime``)."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import diffdrl"], capture_output=True, text=True
    ).stderr
    loaded = {line.rsplit("|", 1)[-1].strip() for line in out.splitlines() if "|" in line}
    return sorted(m for m in loaded if m.startswith(HEAVY))


def measure(runs: int) -> dict:
    results = {}
    for name, args in COMMANDS.items():
        times, cpu = wall_times(args, runs)
        results[name] = {
            "median_s": statistics.median(times),
            "min_s": min(times),
            "median_cpu_s": statistics.median(cpu),
            "runs_s": times,
        }
    return {
        "headline": HEADLINE,
        "median_s": results[HEADLINE]["median_s"],
        "runs": runs,
        "commands": results,
        "heavy_imports_of_import_diffdrl": heavy_imports(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "time": time.time(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="fresh processes per command (default 5)")
    parser.add_argument("--out", default="benchmarks/results/cli_latency.json")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error(f"--runs must be >= 1, got {args.runs}")
    result = measure(args.runs)
    for name, r in result["commands"].items():
        print(
            f"{name:<32} median {r['median_s']:.3f} s   min {r['min_s']:.3f} s   "
            f"cpu {r['median_cpu_s']:.3f} s   ({args.runs} runs)"
        )
    heavy = result["heavy_imports_of_import_diffdrl"]
    print(f"import diffdrl loads: {', '.join(heavy) if heavy else 'none of ' + ', '.join(HEAVY)}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
