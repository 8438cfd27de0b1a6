"""A trained first stage as a diffusers model: ``RUN/diffusers/`` (``save_pretrained``) plus
``first_stage.json``, the directory EncDiff's ``model.first_stage.path`` loads.

``train_autoencoder`` is ``diffdrl train-autoencoder``: the ordinary trainer (same run directory,
checkpoints, exact resume, progress bar, TensorBoard) on a first-stage config, then the export.
The export is written to a temporary directory and renamed, and records the checkpoint step it
came from, so a stale export (the run trained on since) is refused when loaded.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from diffdrl.models.latent_space import EXPORT_DIR, INFO_FILE
from diffdrl.models.registry import MODELS
from diffdrl.training.checkpoint import latest_checkpoint
from diffdrl.training.config import Config
from diffdrl.training.runs import load_model, load_run_config
from diffdrl.training.trainer import TrainResult, train

FIRST_STAGES = tuple(name for name, (_, cls) in MODELS.items() if getattr(cls, "is_first_stage", False))


def check_first_stage_config(config: Config) -> None:
    if config.model.name not in FIRST_STAGES:
        raise ValueError(
            f"train-autoencoder trains first stages (model.name one of {FIRST_STAGES}), got "
            f"{config.model.name!r}; use `diffdrl train` for it"
        )


def export_first_stage(run_dir: str | Path, weights: str = "ema") -> Path:
    """Write ``RUN/diffusers`` from the run's latest checkpoint; returns that directory."""
    run_dir = Path(run_dir)
    config = load_run_config(run_dir)
    check_first_stage_config(config)
    checkpoint = latest_checkpoint(run_dir)
    if checkpoint is None:
        raise FileNotFoundError(f"{run_dir} has no checkpoint to export yet")
    model = load_model(run_dir, checkpoint, weights=weights)
    step = int(checkpoint.name.removeprefix("step_"))
    return write_export(model, run_dir / EXPORT_DIR, config, step=step, weights=weights)


def write_export(model, final: Path, config: Config, step: int | None = None, weights: str = "ema") -> Path:
    """``save_pretrained`` of a first-stage model plus its ``first_stage.json``, atomically into
    ``final``. ``step`` None: an untrained network (the throughput benchmark's stand-in)."""
    final = Path(final)
    info = {
        "kind": config.model.name,
        "resolution": config.data.resolution,
        "channels": model.channels,
        "latent_shape": list(model.latent_shape),
        "factor": model.config.factor,
        "step": step,
        "weights": weights if step is not None else "untrained",
        "dataset": config.data.name,
    }
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".tmp-{final.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    model.net.save_pretrained(str(tmp), safe_serialization=True)
    (tmp / INFO_FILE).write_text(json.dumps(info, indent=2))
    if final.exists():
        old = final.parent / f".old-{final.name}-{os.getpid()}"
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old)
    else:
        os.replace(tmp, final)
    return final


def export_untrained(config: Config, final: str | Path, seed: int = 0) -> Path:
    """A first stage at its random initialisation, exported: enough to time latent training."""
    from diffdrl.models import registry

    check_first_stage_config(config)
    return write_export(registry.build(config.model, config.data.resolution, seed=seed), Path(final), config)


def train_autoencoder(
    config: Config,
    run_dir: str | Path,
    resume: bool = False,
    progress: bool = True,
    resume_from: str | int | None = None,
) -> tuple[TrainResult, Path]:
    """Train a first stage into ``run_dir`` (or continue it, from ``resume_from`` if given), then
    export it for diffusion."""
    check_first_stage_config(config)
    result = train(config, Path(run_dir), resume=resume, progress=progress, resume_from=resume_from)
    return result, export_first_stage(run_dir)
