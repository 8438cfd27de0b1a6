"""The supervised h-space and prior methods end to end on a model and its ground-truth dataset:
train (or reuse) the classifiers they need, train a DeltaBlock, and make the edited images.

Artifacts live in one folder (the CLI uses ``RUN/hspace/``) as safetensors + JSON, so a second
``diffdrl edit`` reuses the classifiers and blocks instead of retraining them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from diffdrl.atomic import atomic_write_text, temporary_sibling
from diffdrl.diffusion.sampling import STRIP_STEPS
from diffdrl.hspace.asymmetric import edit_sample
from diffdrl.hspace.bottleneck import denoiser_of
from diffdrl.hspace.classifier import (
    ClassifierConfig,
    FactorClassifier,
    load_classifier,
    save_classifier,
    train_classifier,
)
from diffdrl.hspace.delta import DeltaBlock, DeltaInfo, batched, scaled, train_delta
from diffdrl.hspace.directions import Sources, betas_of, space_of
from diffdrl.hspace.guidance import guided_sample

CLASSIFIER_KINDS = {  # name -> (noisy, seed, width): "heldout" only ever evaluates
    "clean": (False, 0, 32),
    "noisy": (True, 1, 32),
    "heldout": (False, 2, 48),
}


def require_factors(data, what: str) -> None:
    """A ``ValueError`` for supervised methods on a dataset without ground-truth factors."""
    if not getattr(data, "factor_sizes", None):
        raise ValueError(f"{what} needs a dataset with ground-truth factors; this run's dataset has none")


def check_factor(data, factor: str, value: int | None = None) -> int:
    """The factor's index; unknown names and out-of-range values are ``ValueError``s."""
    names = list(data.factor_names)
    if factor not in names:
        raise ValueError(f"unknown factor {factor!r} (factors: {', '.join(names)})")
    f = names.index(factor)
    if value is not None and not 0 <= value < data.factor_sizes[f]:
        raise ValueError(f"--value for factor {factor!r} must be in [0, {data.factor_sizes[f]}), got {value}")
    return f


def classifier_for(
    model, data, folder: Path, kind: str, steps: int = 400, images: int = 4096, progress: bool = False
) -> FactorClassifier:
    """The run's ``kind`` classifier (``CLASSIFIER_KINDS``), trained on first use and stored."""
    if kind not in CLASSIFIER_KINDS:
        raise ValueError(f"classifier kind must be one of {tuple(CLASSIFIER_KINDS)}, got {kind!r}")
    require_factors(data, "a factor classifier")
    path = Path(folder) / f"classifier_{kind}"
    if path.with_suffix(".json").is_file():
        return load_classifier(path)[0]
    noisy, seed, width = CLASSIFIER_KINDS[kind]
    config = ClassifierConfig(
        data.factor_names, data.factor_sizes, model.resolution, model.channels, width, noisy,
        model.config.schedule.timesteps,
    )  # fmt: skip
    clf, accuracy = train_classifier(
        data,
        config,
        steps=steps,
        schedule=model.config.schedule if noisy else None,
        seed=seed,
        progress=progress,
    )
    save_classifier(clf, path, {"accuracy": accuracy, "steps": steps, "seed": seed})
    return clf


def delta_for(
    model, src: Sources, classifier: FactorClassifier, folder: Path, factor: str, value: int, t_edit: int,
    steps: int = STRIP_STEPS, progress: bool = False, **training,
) -> tuple[DeltaBlock, dict]:  # fmt: skip
    """The DeltaBlock for ``factor=value`` (trained on ``src`` on first use, then reused)."""
    path = Path(folder) / f"delta_{factor}_{value}"
    if path.with_suffix(".json").is_file():
        info = json.loads(path.with_suffix(".json").read_text())
        h = space_of(model).capture(
            denoiser_of(model, src.tokens[:1]), src.x_T[:1], torch.zeros(1, dtype=torch.long)
        ).h  # fmt: skip
        block = DeltaBlock(h.shape[1], groups=next(g for g in (8, 4, 2, 1) if h.shape[1] % g == 0))
        block.load_state_dict(load_file(str(path.with_suffix(".safetensors"))))
        return block.eval(), info
    block, info = train_delta(
        space_of(model), batched(model, src.tokens), src.x_T, betas_of(model), classifier, factor, value,
        t_edit=t_edit, steps=steps, progress=progress, **training,
    )  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(path.with_suffix(".safetensors"))
    save_file({k: v.contiguous() for k, v in block.state_dict().items()}, str(tmp))
    tmp.replace(path.with_suffix(".safetensors"))
    atomic_write_text(path.with_suffix(".json"), json.dumps(info.to_dict()))
    return block, info.to_dict()


@torch.no_grad()
def delta_edit(
    model, src: Sources, block: DeltaBlock, info: dict | DeltaInfo, coefficient: float, steps: int,
    t_boost: int = -1,
) -> torch.Tensor:  # fmt: skip
    """Sources edited by a trained block at ``coefficient`` (negative reverses), S/S' scaled."""
    info = info.to_dict() if isinstance(info, DeltaInfo) else info
    dh = scaled(block, coefficient, info["steps"], steps)
    return edit_sample(
        space_of(model), denoiser_of(model, src.tokens), src.x_T, betas_of(model), dh,
        steps=steps, t_edit=info["t_edit"], t_boost=min(t_boost, info["t_edit"]),
    )  # fmt: skip


@torch.no_grad()
def guidance_edit(
    model, src: Sources, classifier: FactorClassifier, factor: str, value: int, scale: float, steps: int
) -> torch.Tensor:
    """Sources regenerated from their x_T under their tokens, guided toward ``factor=value``."""
    return guided_sample(
        denoiser_of(model, src.tokens),
        classifier,
        factor,
        value,
        scale,
        src.x_T,
        betas_of(model),
        steps=steps,
    )


def accuracy_of(folder: Path, kind: str) -> dict:
    path = Path(folder) / f"classifier_{kind}.json"
    return json.loads(path.read_text()).get("accuracy", {}) if path.is_file() else {}


def factor_rates(before: np.ndarray, after: np.ndarray, factor: int) -> dict:
    """Edit fidelity from predicted codes (B, F): target changed rate, other factors kept rate."""
    changed = float((before[:, factor] != after[:, factor]).mean())
    others = [i for i in range(before.shape[1]) if i != factor]
    kept = float((before[:, others] == after[:, others]).mean()) if others else 1.0
    return {"target_changed": changed, "others_kept": kept}
