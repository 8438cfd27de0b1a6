"""Kill a training run with SIGKILL at seeded random moments, many inside checkpoint writes, resume
it each time, and check that it ends exactly where an uninterrupted run does.

Every process is ``python -m diffdrl train --out RUN --resume`` on CPU (one thread, so float
reductions are the same in every process). The first is given the run's overrides; every later
one, once the run has written its ``config.yaml``, is given none, so the run must take everything
from that file (also when it was killed before its first checkpoint). With
``DIFFDRL_CHECKPOINT_PAUSE`` set, checkpoint writes announce each stage (each tensor file,
state.json, the rename) and pause briefly; an in-write kill waits for a randomly chosen stage of a
randomly chosen write and strikes within that pause; the other kills wait for the start of the
first or second write of the process and strike a random time later, up to a few steps' worth
(inside the write, a step, an evaluation or a log append: the record says whether a partial
checkpoint was left). Aiming from the writes, not from the start, keeps each process's progress
small, so 20 kills fit in a short run whatever the machine's load. After every kill the newest
checkpoint must load; after the final, unkilled run: no temporary folder, no lock, and weights
(model, EMA, optimizer) and logs (train_log.jsonl, metrics.jsonl, apart from wall-clock fields)
bit-identical to the uninterrupted run's.

    python benchmarks/kill_resume.py                      # 20 kills, >= 8 in checkpoint writes
    python benchmarks/kill_resume.py --kills 5 --in-write 2 --steps 80
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

from diffdrl.training.checkpoint import latest_checkpoint, load_checkpoint

SRC = Path(__file__).resolve().parents[1] / "src"
STAGES = ("model.safetensors", "ema.safetensors", "optimizer.safetensors", "state.json", "rename")
TIMING = {"train_seconds", "images_per_s", "anchoring/fit_seconds"}
TINY = [
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
    "train.batch_size=4",
    "train.eval_batch_size=4",
    "train.warmup_steps=2",
    "train.device=cpu",
]


class Training:
    """One ``diffdrl train`` process, its stderr read line by line in a thread."""

    def __init__(self, run: Path, args: list[str], pause: float):
        env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        env.pop("DIFFDRL_CHECKPOINT_PAUSE", None)
        if pause:
            env["DIFFDRL_CHECKPOINT_PAUSE"] = str(pause)
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "diffdrl", "train", "--out", str(run), "--resume", "--no-progress", *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.lines: queue.Queue = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, text: str, nth: int, timeout: float = 600.0) -> bool:
        """Block until the ``nth`` stderr line containing ``text``; False if the process ended first."""
        seen = 0
        deadline = time.perf_counter() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.1, deadline - time.perf_counter()))
            except queue.Empty:
                return False
            if line is None:
                return False
            self.stderr.append(line)
            if text in line:
                seen += 1
                if seen == nth:
                    return True

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def finish(self) -> int:
        code = self.proc.wait()
        while (line := self.lines.get()) is not None:
            self.stderr.append(line)
        return code


def leftovers(run: Path) -> list[str]:
    """Hidden temporary entries (checkpoint folders, half-written files) and the lock."""
    found = list(run.rglob(".*")) + [p for p in [run / "train.lock"] if p.exists()]
    return sorted(str(p.relative_to(run)) for p in found)


def log_rows(run: Path, name: str) -> list[dict]:
    path = run / name
    rows = [json.loads(r) for r in path.read_text().splitlines()] if path.exists() else []
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


def compare(reference: Path, run: Path) -> dict:
    a, state_a = load_checkpoint(latest_checkpoint(reference))
    b, state_b = load_checkpoint(latest_checkpoint(run))
    differing = [
        f"{part}/{key}"
        for part in ("model", "ema", "optimizer")
        for key in sorted(set(a[part]) | set(b[part]))
        if key not in a[part] or key not in b[part] or not torch.equal(a[part][key], b[part][key])
    ]
    return {
        "final_step": [state_a["step"], state_b["step"]],
        "tensors_compared": sum(len(a[p]) for p in ("model", "ema", "optimizer")),
        "tensors_differing": differing,
        "weights_bit_identical": not differing and state_a["step"] == state_b["step"],
        "train_log_identical": log_rows(reference, "train_log.jsonl") == log_rows(run, "train_log.jsonl"),
        "train_log_rows": len(log_rows(run, "train_log.jsonl")),
        "metrics_log_identical": log_rows(reference, "metrics.jsonl") == log_rows(run, "metrics.jsonl"),
    }


def newest_step(run: Path) -> int | None:
    path = latest_checkpoint(run)
    return None if path is None else int(path.name.split("_")[1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument(
        "--in-write", type=int, default=10, help="how many of the kills land in checkpoint writes"
    )
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--checkpoint-every", type=int, default=5)
    parser.add_argument("--pause", type=float, default=0.05, help="seconds each write stage pauses")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", help="folder for the two runs (default: a temporary one)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "kill_resume-cpu.json"))
    args = parser.parse_args()
    if not 0 <= args.in_write <= args.kills:
        parser.error("--in-write must be between 0 and --kills")

    rng = np.random.default_rng(args.seed)
    work = Path(args.work or tempfile.mkdtemp(prefix="kill_resume-"))
    reference, run = work / "reference", work / "run"
    overrides = [
        *TINY,
        f"train.steps={args.steps}",
        "train.log_every=3",  # resumes fall inside log windows
        f"train.checkpoint_every={args.checkpoint_every}",
        "train.keep_checkpoints=2",
        f"train.eval_every={args.checkpoint_every * 4}",
    ]

    start = time.perf_counter()
    uninterrupted = Training(reference, overrides, pause=0)
    if uninterrupted.finish() != 0:
        sys.exit("the uninterrupted run failed:\n" + "\n".join(uninterrupted.stderr))
    reference_seconds = time.perf_counter() - start
    train_seconds = json.loads((latest_checkpoint(reference) / "state.json").read_text())["train_seconds"]
    step_seconds, startup = train_seconds / args.steps, max(1.0, reference_seconds - train_seconds)
    print(
        f"uninterrupted run: {args.steps} steps in {reference_seconds:.1f} s "
        f"({1000 * step_seconds:.0f} ms a step, about {startup:.1f} s of start-up and side jobs)"
    )

    modes = ["write"] * args.in_write + ["random"] * (args.kills - args.in_write)
    rng.shuffle(modes)
    kills, failures = [], []
    for i, mode in enumerate(modes):
        before = newest_step(run)
        # the overrides until the run has its config.yaml (a kill during start-up may precede it), then none
        proc = Training(run, [] if (run / "config.yaml").exists() else overrides, pause=args.pause)
        if mode == "write":
            nth, stage = int(rng.integers(1, 3)), str(rng.choice(STAGES))
            reached = proc.wait_for(f" {stage}", nth=nth)
            time.sleep(float(rng.uniform(0, args.pause)))
            where = f"write #{nth} of this process, stage {stage}"
        else:
            nth = int(rng.integers(1, 3))
            delay = float(rng.uniform(0, len(STAGES) * args.pause + args.checkpoint_every * step_seconds))
            reached = proc.wait_for(" model.safetensors", nth=nth)
            time.sleep(delay)
            where = f"{delay:.2f} s after write #{nth} of this process began"
        if not reached or proc.proc.poll() is not None:
            if proc.proc.poll() is None:
                proc.kill()
            code = proc.finish()
            failures.append({"kill": i, "mode": mode, "exit": code, "stderr": proc.stderr[-5:]})
            print(f"kill {i + 1}: the process ended by itself (exit {code}) before the kill; stopping")
            break
        proc.kill()
        after = newest_step(run)
        loads = True
        if after is not None:
            try:
                load_checkpoint(latest_checkpoint(run))
            except ValueError as err:
                loads = False
                failures.append({"kill": i, "mode": mode, "error": str(err)})
        left = leftovers(run)
        in_write = any(".tmp-step_" in p and p.endswith(f"-{proc.proc.pid}") for p in left)
        kills.append(
            {
                "kill": i + 1,
                "mode": mode,
                "where": where,
                "newest_checkpoint_before": before,
                "newest_checkpoint_after": after,
                "newest_checkpoint_loads": loads,
                "left_a_partial_checkpoint": in_write,  # this process's temporary folder
                "leftovers": left,
            }
        )
        partial = {"kills": kills, "failures": failures, "settings": vars(args)}
        Path(args.out).with_suffix(".partial.json").write_text(json.dumps(partial, indent=2))
        print(
            f"kill {i + 1:2d} ({mode:6s}, {where}): newest checkpoint {before} -> {after}"
            f"{'' if loads else ' (DOES NOT LOAD)'}; left {len(left)} entries"
            f"{' incl. a partial checkpoint' if in_write else ''}"
        )

    final = Training(run, [], pause=0)
    final_code = final.finish()
    final_left = leftovers(run)
    result = compare(reference, run) if final_code == 0 else {}
    stale_notes = sum("recovered the stale lock" in line for line in final.stderr)
    total = time.perf_counter() - start
    summary = {
        "kills": len(kills),
        "kills_aimed_in_checkpoint_writes": sum(k["mode"] == "write" for k in kills),
        "kills_leaving_a_partial_checkpoint": sum(k["left_a_partial_checkpoint"] for k in kills),
        "kills_survived": sum(k["newest_checkpoint_loads"] for k in kills) if final_code == 0 else 0,
        "final_exit": final_code,
        "leftovers_after_final_run": final_left,
        "stale_lock_recovered_by_final_run": bool(stale_notes),
        **result,
        "failures": failures,
    }
    record = {
        "command": "python benchmarks/kill_resume.py " + " ".join(sys.argv[1:]),
        "settings": vars(args) | {"overrides": overrides},
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__},
        "uninterrupted_seconds": reference_seconds,
        "step_seconds": step_seconds,
        "total_seconds": total,
        "summary": summary,
        "kills": kills,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=2))
    Path(args.out).with_suffix(".partial.json").unlink(missing_ok=True)
    print(
        f"\n{summary['kills_survived']}/{args.kills} kills survived "
        f"({summary['kills_aimed_in_checkpoint_writes']} aimed inside checkpoint writes, "
        f"{summary['kills_leaving_a_partial_checkpoint']} left a partial checkpoint folder); "
        f"final run exit {final_code}; {len(final_left)} leftover temporary entries; "
        f"weights bit-identical: {result.get('weights_bit_identical')} "
        f"({result.get('tensors_compared')} tensors); "
        f"train_log identical: {result.get('train_log_identical')} ({result.get('train_log_rows')} rows); "
        f"metrics.jsonl identical: {result.get('metrics_log_identical')}; "
        f"{total:.0f} s in all"
    )
    print(f"wrote {args.out}")
    ok = (
        len(kills) == args.kills
        and summary["kills_survived"] == args.kills
        and not final_left
        and result.get("weights_bit_identical")
        and result.get("train_log_identical")
        and result.get("metrics_log_identical")
    )
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
