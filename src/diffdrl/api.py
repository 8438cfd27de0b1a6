"""Loading trained runs and encoding images: the few calls most users need after training."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from diffdrl.data import make_dataset
from diffdrl.data.ground_truth import GroundTruthDataset
from diffdrl.models import registry
from diffdrl.training.checkpoint import latest_checkpoint, load_checkpoint
from diffdrl.training.config import Config, from_dict, read_yaml

WEIGHTS = ("ema", "model")


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


def unit_width(model: torch.nn.Module) -> int:
    """K, the width of ``model.encode``'s output: the N units, or N d for EncDiff-V's vector tokens
    (each unit then spans d coordinates, ``unit_width(model) // model.config.units``)."""
    bank = getattr(model, "token_bank", None)
    return bank.in_features if bank is not None else model.config.units


def has_tokens(model: torch.nn.Module) -> bool:
    """Whether the model turns its units into tokens (EncDiff and its ablations, EncDec; not the VAEs)."""
    return callable(getattr(model, "tokens", None))


def tokens_unavailable(model: torch.nn.Module, what: str) -> str | None:
    """Why ``what`` cannot be made for a model without tokens (a VAE), or None when it has them."""
    if has_tokens(model):
        return None
    return (
        f"{what}: not available for model {model.config.name!r}, which has no tokens (its decoder reads "
        "the units directly; models with tokens: encdiff, encdec)"
    )


@torch.no_grad()
def encode_images(model: torch.nn.Module, images: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Units (n, K) float32 of uint8 images (n, H, W, C), encoded in batches (K: ``unit_width``)."""
    out = [
        model.encode(images[i : i + batch_size]).float().cpu().numpy()
        for i in range(0, len(images), batch_size)
    ]
    return np.concatenate(out) if out else np.zeros((0, unit_width(model)), np.float32)


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


REPRESENTATIONS = ("units", "tokens")


@torch.no_grad()
def encode_tokens(
    model: torch.nn.Module, images: np.ndarray, batch_size: int = 512, anchored: bool = True
) -> np.ndarray:
    """Tokens (n, N, d) float32 of uint8 images: those the denoiser reads (anchored under DyGA), or
    with ``anchored=False`` those before anchoring (what DyGA's mixtures are fitted on). A model
    without tokens (a VAE) is a ``ValueError``."""
    if reason := tokens_unavailable(model, "tokens"):
        raise ValueError(reason)
    tokens = model.tokens if anchored else model.raw_tokens
    out = [
        tokens(model.encode(images[i : i + batch_size])).float().cpu().numpy()
        for i in range(0, len(images), batch_size)
    ]
    return np.concatenate(out)


def representation(
    model: torch.nn.Module,
    kind: str = "units",
    data: GroundTruthDataset | None = None,
    fit_samples: int = 10_000,
    seed: int = 0,
    batch_size: int = 512,
):
    """The model as a metrics representation function, uint8 images -> float32 (B, K):

    - ``units``: the encoder's scalars (EncDiff's evaluated representation; a VAE's means);
    - ``tokens``: each unit's token projected on its first principal component, fitted on
      ``fit_samples`` images of ``data`` (DyGA's evaluated representation: anchored tokens, PCA-1);
      models with tokens only.
    """
    if kind not in REPRESENTATIONS:
        raise ValueError(f"representation must be one of {REPRESENTATIONS}, got {kind!r}")
    if kind == "tokens" and (reason := tokens_unavailable(model, "the 'tokens' representation")):
        raise ValueError(reason)
    if kind == "units":
        return lambda images: encode_images(model, images, batch_size)
    from diffdrl.metrics.pca import PerUnitPCA

    if data is None:
        raise ValueError("the 'tokens' representation needs a dataset to fit its per-unit PCA on")
    _, images = data.sample(fit_samples, np.random.default_rng(seed))
    pca = PerUnitPCA().fit(encode_tokens(model, images, batch_size))
    return lambda images: pca.transform(encode_tokens(model, images, batch_size))


def evaluate_run(
    run: Run,
    metrics: list[str] | None = None,
    preset: str = "fast",
    seed: int = 0,
    progress: bool = True,
    kind: str = "units",
) -> dict[str, float]:
    """Disentanglement metrics of a run's model on its dataset (``diffdrl.metrics.evaluate``)."""
    from diffdrl.metrics import evaluate

    represent = representation(run.model, kind, run.data, seed=seed)
    return evaluate(run.data, represent, metrics, seed=seed, preset=preset, progress=progress)


def untrained_run(run_dir: str | Path, device: str = "cpu") -> Run:
    """The run's architecture at its random initialisation (``train.seed``): the baseline that
    shows how much of a score the architecture alone gives."""
    from diffdrl.training.trainer import build_model

    config = load_run_config(run_dir)
    model = build_model(config).to(device).eval()
    data = make_dataset(config.data.name, config.data.path, config.data.resolution)
    return Run(Path(run_dir), config, model, data)
