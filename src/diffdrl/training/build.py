"""What a run trains, built from its config: the model on its device, its AdamW optimizer with
the learning-rate schedule, and a latent model's cache of first-stage latents; the model-specific
parts of that setup live here, in one place (a first stage measured once; models that give parts
their own optimiser settings).
"""

from __future__ import annotations

import torch

from diffdrl.data.ground_truth import to_model_input
from diffdrl.models import registry
from diffdrl.training.batches import batch_index
from diffdrl.training.config import Config, TrainConfig
from diffdrl.training.hardware import sync_batchnorm
from diffdrl.training.latent_cache import LatentCache


def lr_at(step: int, config: Config) -> float:
    """Linear warm-up to the learning rate (``train.lr``, scaled by ``train.lr_scaling``), then
    constant (as released)."""
    warmup, lr = config.train.warmup_steps, config.train.effective_lr
    return lr * min(1.0, (step + 1) / warmup) if warmup else lr


def set_lr(optimizer: torch.optim.Optimizer, step: int, config: Config) -> None:
    """Every parameter group follows the schedule, scaled by its own base rate (``param_groups``)."""
    scale = lr_at(step, config) / config.train.effective_lr
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * scale


def build_model(
    config: Config, dataset, device: torch.device, world: int, channels_last: bool, fresh: bool
) -> tuple[torch.nn.Module, str]:
    """The configured model on ``device`` (initial weights from ``train.seed``), and how its
    BatchNorm layers are synchronised across the ``world`` processes (``hardware.sync_batchnorm``).

    A latent model's first stage measures its scale (LDM's scale_by_std) once, on the global batch
    of step 0, when the run is ``fresh`` (a resumed run loads it from its checkpoint).
    """
    train = config.train
    model = registry.build(
        config.model, config.data.resolution, seed=train.seed, dataset=config.data.name
    ).to(device)
    stage = getattr(model, "first_stage", None)
    if stage is not None and fresh:
        first = batch_index(len(dataset), train.batch_size, train.seed, 0)
        stage.calibrate(to_model_input(torch.as_tensor(dataset.images_at(first))).to(device))
    model, batchnorm_note = sync_batchnorm(model, device, world)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model, batchnorm_note


def build_optimizer(model: torch.nn.Module, train: TrainConfig, fused: bool) -> torch.optim.AdamW:
    """AdamW at ``train.effective_lr`` over the model's ``param_groups(lr)`` when it defines them
    (FactorVAE's discriminator, EncDiff's encoder rate, a first stage's betas), else over all its
    parameters; each group remembers its ``base_lr`` for ``set_lr``."""
    lr = train.effective_lr
    groups = model.param_groups(lr) if hasattr(model, "param_groups") else model.parameters()
    optimizer = torch.optim.AdamW(
        groups, lr=lr, weight_decay=train.weight_decay, **({"fused": True} if fused else {})
    )
    for group in optimizer.param_groups:
        group.setdefault("base_lr", group["lr"])
    return optimizer


def build_latent_cache(
    config: Config, model: torch.nn.Module, dataset_size: int, device
) -> LatentCache | None:
    """The cache of first-stage latents when ``model.first_stage.cache_latents`` is on."""
    settings = getattr(config.model, "first_stage", None)
    if settings is None or not settings.cache_latents:
        return None
    if config.train.compile:
        raise ValueError(
            "model.first_stage.cache_latents cannot be combined with train.compile: the compiled "
            "first stage may round differently from the eager one the cache runs; turn one off"
        )
    return LatentCache(model.first_stage, dataset_size, settings.cache_gib, device)
