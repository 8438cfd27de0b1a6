"""Exact resume, asserted one way for every model: 4 steps straight against 2 steps, a stop, and a
resume to 4. Their last checkpoints must agree bit for bit (weights, EMA, optimizer state) and in
the logged loss, so an interruption never changes a result."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from diffdrl.training.checkpoint import load_checkpoint
from diffdrl.training.config import Config
from diffdrl.training.trainer import train


def assert_resumes_bit_exactly(config_at: Callable[[int], Config], tmp_path: Path) -> Path:
    """``config_at(steps)`` is the run's config for that many steps; returns the resumed run's
    directory (for checks of its logs)."""
    straight = train(config_at(4), tmp_path / "straight", progress=False)
    train(config_at(2), tmp_path / "resumed", progress=False)
    resumed = train(config_at(4), tmp_path / "resumed", resume=True, progress=False)
    assert straight.step == resumed.step == 4
    a, state_a = load_checkpoint(straight.checkpoint)
    b, state_b = load_checkpoint(resumed.checkpoint)
    for part in ("model", "ema", "optimizer"):
        assert a[part].keys() == b[part].keys(), part
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), (part, key)
    assert state_a["loss"] == state_b["loss"]
    return tmp_path / "resumed"
