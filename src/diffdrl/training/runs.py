"""A run directory read back: its config, its model at a checkpoint, its dataset, its scores.

Lives in the training layer (it reads what the trainer writes) so that the harness, the pictures and
the explorer can load runs without importing the user-facing ``api``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from diffdrl.data import make_dataset
from diffdrl.data.ground_truth import GroundTruthDataset
from diffdrl.metrics.presets import DEFAULT_PRESET
from diffdrl.models import registry
from diffdrl.models.representation import representation
from diffdrl.training.checkpoint import latest_checkpoint, load_checkpoint
from diffdrl.training.config import Config, from_dict, read_yaml
from diffdrl.training.weights import WEIGHTS


def load_run_config(run_dir: str | Path) -> Config:
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise FileNotFoundError(f"{run_dir} is not a diffdrl run directory (no config.yaml)")
    return from_dict(Config, read_yaml(run_dir / "config.yaml"))


def load_model(
    run_dir: str | Path, checkpoint: str | Path | None = None, weights: str = "ema", device: str = "cpu"
) -> torch.nn.Module:
    """The model of a run (any ``model.name``), rebuilt from its config, with EMA (default) or raw
    weights, in eval mode.

    ``checkpoint`` defaults to the run's latest.
    """
    if weights not in WEIGHTS:
        raise ValueError(f"weights must be one of {WEIGHTS}, got {weights!r}")
    config = load_run_config(run_dir)
    path = Path(checkpoint) if checkpoint else latest_checkpoint(Path(run_dir))
    if path is None:
        raise FileNotFoundError(f"{run_dir} has no checkpoint yet")
    tensors, _ = load_checkpoint(path)
    if weights not in tensors:
        raise ValueError(f"checkpoint {path} has no {weights} weights")
    model = registry.build(config.model, config.data.resolution)
    try:
        model.load_state_dict(tensors[weights])
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0]
        raise ValueError(f"checkpoint {path} does not match {run_dir}/config.yaml: {first}") from None
    return model.to(device).eval()


@dataclass
class Run:
    """A trained run ready to use: its directory, config, model and dataset."""

    path: Path
    config: Config
    model: torch.nn.Module  # any registered model (models/registry.py)
    data: GroundTruthDataset

    def sample(self, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(factor codes (n, F), uint8 images (n, H, W, C)) drawn from the run's dataset."""
        return self.data.sample(n, np.random.default_rng(seed))


def load_run(
    run_dir: str | Path, weights: str = "ema", device: str = "cpu", checkpoint: str | Path | None = None
) -> Run:
    """A run at its latest checkpoint, or at ``checkpoint`` (a ``step_<k>`` directory)."""
    config = load_run_config(run_dir)
    model = load_model(run_dir, checkpoint, weights=weights, device=device)
    data = make_dataset(config.data.name, config.data.path, config.data.resolution)
    return Run(Path(run_dir), config, model, data)


def untrained_run(run_dir: str | Path, device: str = "cpu") -> Run:
    """The run's architecture at its random initialisation (``train.seed``): the baseline that
    shows how much of a score the architecture alone gives."""
    config = load_run_config(run_dir)
    model = (
        registry.build(config.model, config.data.resolution, seed=config.train.seed, dataset=config.data.name)
        .to(device)
        .eval()
    )
    data = make_dataset(config.data.name, config.data.path, config.data.resolution)
    return Run(Path(run_dir), config, model, data)


def evaluate_run(
    run: Run,
    metrics: list[str] | None = None,
    preset: str = DEFAULT_PRESET,
    seed: int = 0,
    progress: bool = True,
    kind: str | None = None,
    overrides: dict[str, dict[str, object]] | None = None,
) -> dict[str, float]:
    """Disentanglement metrics of a run's model on its dataset (``diffdrl.metrics.evaluate``), of
    representation ``kind`` (default: the model's own, ``models.representation.scored_representation``);
    ``overrides`` per metric on top of the preset, e.g. ``{"dci": {"importance": "sklearn"}}``."""
    from diffdrl.metrics import evaluate

    represent = representation(run.model, kind, run.data, seed=seed)
    return evaluate(
        run.data, represent, metrics, seed=seed, preset=preset, progress=progress, overrides=overrides
    )
