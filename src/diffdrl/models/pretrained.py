"""DisDiff's frozen, pre-trained unconditional denoiser, read from the run that trained it
(``diffdrl train --config tiny-cpu-ddpm --out RUN``; ``model.pretrained.path=RUN``).

Checked as ``model.first_stage.path`` is (models/latent_space.py): a missing path, a directory that
is not a run, a run of another model, or one trained on images of another size or channel count is
a one-line ``ValueError`` / ``FileNotFoundError`` (exit 2 at the command line), never a silently
wrong model. The run is read directly (``config.yaml`` and the newest checkpoint's safetensors), as
this layer sits below the trainer that wrote it.

Frozen means: no parameter requires a gradient, the U-Net stays in eval mode whatever ``train()``
is called with, and it runs under ``no_grad``. Its weights are also in the DisDiff run's own
checkpoints (they are part of its state dict), so a DisDiff run keeps the denoiser it was trained
with even if RUN trains on; building the model reads RUN for the architecture (as a first stage).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file
from torch import nn

from diffdrl.diffusion.schedule import ScheduleConfig
from diffdrl.models.ddpm import DDPMConfig, UnconditionalUNetConfig, unconditional_unet

WEIGHTS = ("ema", "model")  # as training.weights.WEIGHTS: the EMA weights unless asked otherwise
HOW_TO_TRAIN = "train one with `diffdrl train --config tiny-cpu-ddpm --out RUN`"


@dataclass
class PretrainedConfig:
    """``path``: the run of an unconditional denoiser (``model.name: ddpm``); required by DisDiff,
    None only so that a config can be written before the run exists. ``weights``: which of its
    weights to freeze (EMA, as LDM samples with)."""

    path: str | None = None
    weights: str = "ema"

    def __post_init__(self):
        if self.weights not in WEIGHTS:
            raise ValueError(f"model.pretrained.weights must be one of {WEIGHTS}, got {self.weights!r}")


def _newest_checkpoint(run: Path) -> Path | None:
    found = [
        (int(m.group(1)), p)
        for p in (run / "checkpoints").glob("step_*")
        if (m := re.fullmatch(r"step_(\d+)", p.name)) and p.is_dir()
    ]
    return max(found)[1] if found else None


def _ddpm_config(model: dict, where: str) -> DDPMConfig:
    """The run's model section as a ``DDPMConfig`` (its keys were checked when the run started)."""
    try:
        denoiser = dict(model.get("denoiser") or {})
        for key in ("channels", "cross_attention"):
            if key in denoiser:
                denoiser[key] = tuple(denoiser[key])
        return DDPMConfig(
            loss=model.get("loss", "l1"),
            denoiser=UnconditionalUNetConfig(**denoiser),
            schedule=ScheduleConfig(**(model.get("schedule") or {})),
        )
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: its model section does not describe a ddpm model ({err})") from None


def read_pretrained(
    config: PretrainedConfig, resolution: int, channels: int
) -> tuple[DDPMConfig, dict[str, torch.Tensor]]:
    """(the denoiser's config, its U-Net weights) of the run ``config.path``, checked against this
    run's ``resolution`` and ``channels``."""
    if not config.path:
        raise ValueError(
            "model.name=disdiff needs model.pretrained.path, the run of a pre-trained unconditional "
            f"denoiser; {HOW_TO_TRAIN} (at data.resolution={resolution})"
        )
    run = Path(config.path)
    where = f"model.pretrained.path={config.path!r}"
    if not (run / "config.yaml").is_file():
        raise FileNotFoundError(f"{where}: no run there (no config.yaml); {HOW_TO_TRAIN}")
    saved = yaml.safe_load((run / "config.yaml").read_text()) or {}
    model = saved.get("model") or {}
    if model.get("name") != "ddpm":
        raise ValueError(
            f"{where} is a run of model {model.get('name')!r}, not an unconditional denoiser "
            f"(model.name=ddpm); {HOW_TO_TRAIN}"
        )
    trained_at = (saved.get("data") or {}).get("resolution")
    if trained_at != resolution:
        raise ValueError(
            f"{where} was trained on {trained_at}x{trained_at} images, but this run has "
            f"{resolution}x{resolution}; pre-train one at data.resolution={resolution}"
        )
    checkpoint = _newest_checkpoint(run)
    if checkpoint is None:
        raise FileNotFoundError(f"{where}: the run has no checkpoint yet")
    file = checkpoint / f"{config.weights}.safetensors"
    if not file.is_file():
        raise FileNotFoundError(f"{where}: checkpoint {checkpoint.name} has no {config.weights} weights")
    prefix = "unet."
    weights = {k.removeprefix(prefix): v for k, v in load_file(str(file)).items() if k.startswith(prefix)}
    trained_channels = weights["conv_in.weight"].shape[1] if "conv_in.weight" in weights else None
    if trained_channels != channels:
        raise ValueError(
            f"{where} was trained on images with {trained_channels} channels, but this run has "
            f"{channels}; pre-train one on this dataset"
        )
    return _ddpm_config(model, where), weights


class FrozenDenoiser(nn.Module):
    """The pre-trained U-Net, frozen (module docstring), and the schedule it was trained with."""

    def __init__(self, config: PretrainedConfig, resolution: int, channels: int = 3):
        super().__init__()
        self.config, weights = read_pretrained(config, resolution, channels)
        self.unet = unconditional_unet(self.config.denoiser, resolution, channels)
        self.unet.load_state_dict(weights)
        self.unet.requires_grad_(False)
        self.train(False)

    def train(self, mode: bool = True) -> FrozenDenoiser:
        return super().train(False)  # always eval: dropout off, as the frozen model it is
