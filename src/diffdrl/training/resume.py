"""What a checkpoint holds of a training run (``snapshot`` writes it, ``restore`` reads it back),
and the resume policy: which checkpoint a run continues from.

A run continues from its newest checkpoint, which must load: a corrupt one is an error that names
the newest valid checkpoint, to be chosen explicitly (``resume_from``, ``"step_<k>"`` or ``k``);
checkpoints after a chosen one are moved to ``checkpoints/abandoned/`` (kept, not deleted) when
training starts. Never silently an older checkpoint. A run that holds checkpoints is continued
only when asked (``resume``), never overwritten.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from diffdrl.training.checkpoint import (
    checkpoints,
    latest_checkpoint,
    load_checkpoint,
    newest_valid_checkpoint,
    optimizer_from_tensors,
    optimizer_to_tensors,
)
from diffdrl.training.run_dir import note
from diffdrl.training.run_lock import RunBusyError
from diffdrl.version import __version__

Loaded = tuple[dict, dict]  # (tensors by file name, state.json) of a checkpoint


def checkpoint_name(resume_from: str | int) -> str:
    return str(resume_from) if str(resume_from).startswith("step_") else f"step_{resume_from}"


def checkpoint_to_resume(
    run_dir: Path, resume: bool, resume_from: str | int | None
) -> tuple[Path, Loaded] | None:
    """The checkpoint a trainer continues from, loaded, or None for a fresh start (see the module
    docstring); ``FileExistsError``, ``FileNotFoundError`` or ``ValueError`` naming what to do."""
    newest = latest_checkpoint(run_dir)
    if newest is not None and not (resume or resume_from is not None):
        raise FileExistsError(
            f"{run_dir} already holds checkpoints (latest {newest.name}); "
            "pass --resume to continue it or choose another --out"
        )
    if resume_from is not None:
        path = run_dir / "checkpoints" / checkpoint_name(resume_from)
        if not path.is_dir():
            have = ", ".join(p.name for _, p in checkpoints(run_dir)) or "none"
            raise FileNotFoundError(
                f"--resume-from {resume_from}: no checkpoint {path} (checkpoints: {have})"
            )
        return path, load_checkpoint(path)
    if newest is None or not resume:
        return None
    try:
        return newest, load_checkpoint(newest)
    except ValueError as err:
        valid, _ = newest_valid_checkpoint(run_dir)
        if valid is None:
            raise ValueError(
                f"cannot resume {run_dir}: {err}; no checkpoint of the run loads, so start a new one "
                "(another --out)"
            ) from None
        raise ValueError(
            f"cannot resume {run_dir}: {err}; the newest valid checkpoint is {valid.name}: continue from "
            f"it with --resume-from {valid.name} (later checkpoints are then moved to checkpoints/abandoned/)"
        ) from None


def set_aside_after(run_dir: Path, step: int, progress: bool = False) -> None:
    """Move the checkpoints after ``step`` to ``checkpoints/abandoned/`` (kept, not deleted)."""
    later = [p for s, p in checkpoints(run_dir) if s > step]
    for path in later:
        target = path.parent / "abandoned" / path.name
        target.parent.mkdir(exist_ok=True)
        if target.exists():
            target = target.with_name(f"{path.name}-{int(time.time())}")
        path.rename(target)
    if later and progress:
        note(f"moved {', '.join(p.name for p in later)} to {run_dir}/checkpoints/abandoned/", progress)


def claim(
    run_dir: Path, step: int, resume_from: str | int | None, loaded: Path | None, progress: bool = False
) -> None:
    """Before the first step, as the run's writer: set aside the checkpoints after a chosen one
    (``resume_from``), and make sure the run still ends at the checkpoint the trainer loaded
    (``RunBusyError`` when another writer changed it since)."""
    if resume_from is not None:
        set_aside_after(run_dir, step, progress)
    newest = latest_checkpoint(run_dir)
    if newest != loaded:
        raise RunBusyError(
            f"{run_dir} changed after this trainer loaded it (newest checkpoint "
            f"{newest.name if newest else 'none'}, loaded {loaded.name if loaded else 'none'}): "
            "build the trainer again"
        )


def snapshot(
    model: torch.nn.Module,
    ema,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    *,
    step: int,
    seed: int,
    loss: float | None,
    train_seconds: float,
    log_windows: list[list[float]],
    settings: dict,
) -> tuple[dict, dict]:
    """(tensors by file name, state) of a checkpoint at ``step``: what ``restore`` reads back.
    ``log_windows``: every process's losses since the last log row, so that the first log row
    after a resume averages the same steps."""
    opt_tensors, opt_meta = optimizer_to_tensors(optimizer.state_dict())
    state = {
        "step": step,
        "seed": seed,
        "loss": loss,
        "train_seconds": train_seconds,
        "log_window": log_windows,
        "rng": "counter-based: every draw of step k is seeded by (train.seed, k)",
        "optimizer": opt_meta,
        "grad_scaler": scaler.state_dict() if scaler is not None else None,
        "settings": settings,
        "diffdrl_version": __version__,
        "time": time.time(),
    }
    return {"model": model.state_dict(), "ema": ema.state_dict(), "optimizer": opt_tensors}, state


@dataclass
class Restored:
    """What a checkpoint gives back besides the tensors: where the run stands."""

    step: int
    train_seconds: float
    log_window: list[float]  # this process's losses since the last log row


def restore(
    path: Path,
    loaded: Loaded,
    model: torch.nn.Module,
    ema,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    rank: int = 0,
    world: int = 1,
) -> Restored:
    """Load a checkpoint's tensors into the model, its EMA, the optimizer and the gradient scaler;
    a model of another shape is a ``ValueError`` naming the checkpoint."""
    tensors, state = loaded
    try:
        model.load_state_dict(tensors["model"])
        ema.load_state_dict(tensors["ema"])
    except (RuntimeError, KeyError) as err:
        first = str(err).strip().splitlines()[0]
        raise ValueError(f"checkpoint {path} does not match the configured model: {first}") from None
    optimizer.load_state_dict(optimizer_from_tensors(tensors["optimizer"], state["optimizer"]))
    if scaler is not None and state.get("grad_scaler"):
        scaler.load_state_dict(state["grad_scaler"])
    windows = state.get("log_window")
    window = list(windows[rank]) if windows and len(windows) == world else []
    return Restored(int(state["step"]), float(state.get("train_seconds", 0.0)), window)
