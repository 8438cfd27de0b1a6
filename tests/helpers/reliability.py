"""Shared by the reliability tests: a tiny run's arguments, a comparison of two runs (weights
bit for bit, logs row for row apart from wall-clock fields), and a training subprocess whose
checkpoint writes announce themselves and pause (``DIFFDRL_CHECKPOINT_PAUSE``) so that a kill or
a signal can be aimed inside one."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from diffdrl.cli import main
from diffdrl.training.checkpoint import latest_checkpoint, load_checkpoint
from helpers.tiny import TINY

# The default run keeps one case of each kind; the rest (more subprocesses, more variants) run with
# DIFFDRL_SLOW_TESTS=1, e.g. `DIFFDRL_SLOW_TESTS=1 pytest tests/reliability`.
slow = pytest.mark.skipif(
    not os.environ.get("DIFFDRL_SLOW_TESTS"), reason="slow reliability case: set DIFFDRL_SLOW_TESTS=1"
)
SRC = Path(__file__).resolve().parents[2] / "src"
# 8 steps, a log row every 3 (so a resume at an even step falls inside a log window), a checkpoint
# every 2, the held-out evaluation every 4
RUN_ARGS = [*TINY, "train.steps=8", "train.log_every=3", "train.checkpoint_every=2", "train.eval_every=4"]
TIMING = {"train_seconds", "images_per_s", "anchoring/fit_seconds"}


def train_cli(out: Path, *extra: str) -> int:
    """``diffdrl train --out OUT --no-progress [extra...]`` in-process; its exit status."""
    return main(["train", "--out", str(out), "--no-progress", *extra])


def log_rows(run: Path, name: str = "train_log.jsonl") -> list[dict]:
    path = Path(run) / name
    rows = [json.loads(r) for r in path.read_text().splitlines()] if path.exists() else []
    return [{k: v for k, v in row.items() if k not in TIMING} for row in rows]


def assert_same_run(a: Path, b: Path) -> None:
    """Final weights (model, EMA, optimizer) bit-identical; logs identical except wall-clock fields."""
    ta, sa = load_checkpoint(latest_checkpoint(a))
    tb, sb = load_checkpoint(latest_checkpoint(b))
    assert sa["step"] == sb["step"]
    for part in ("model", "ema", "optimizer"):
        assert ta[part].keys() == tb[part].keys(), part
        for key in ta[part]:
            assert torch.equal(ta[part][key], tb[part][key]), (part, key)
    assert log_rows(a) == log_rows(b)
    assert log_rows(a, "metrics.jsonl") == log_rows(b, "metrics.jsonl")


def leftovers(run: Path) -> list[str]:
    """What interrupted writers left: every hidden entry (a run holds none of its own) and the lock."""
    found = [p for p in Path(run).rglob(".*")] + [p for p in [Path(run) / "train.lock"] if p.exists()]
    return sorted(str(p.relative_to(run)) for p in found)


class TrainProcess:
    """``python -m diffdrl train ...`` in a subprocess, with its stderr read line by line."""

    def __init__(self, out: Path, *args: str, pause: float = 0.0):
        # the same thread count as this process: float reductions, hence weights, depend on it
        env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": str(torch.get_num_threads())}
        if pause:
            env["DIFFDRL_CHECKPOINT_PAUSE"] = str(pause)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "diffdrl", "train", "--out", str(out), "--no-progress", *args],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, text: str, timeout: float = 120.0) -> str:
        """Block until a stderr line contains ``text``; that line."""
        while True:
            line = self.lines.get(timeout=timeout)
            if line is None:
                raise AssertionError(f"process ended before {text!r}; stderr: {self.seen}")
            self.seen.append(line)
            if text in line:
                return line

    def finish(self, timeout: float = 120.0) -> tuple[int, list[str]]:
        code = self.proc.wait(timeout=timeout)
        while (line := self.lines.get(timeout=timeout)) is not None:
            self.seen.append(line)
        return code, self.seen
