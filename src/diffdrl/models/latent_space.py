"""EncDiff's latent space: a frozen first stage (a trained VQ/KL autoencoder) and the scale of its
latents, so that the diffusion runs on z = scale * E(x) instead of pixels (LDM; both papers).

``model.first_stage.path`` names a first-stage run (``diffdrl train-autoencoder --out RUN``) or
its export directly: ``RUN/diffusers/``, written by ``save_pretrained`` plus ``first_stage.json``
(kind, resolution, channels, step). Loading goes through diffusers' ``from_pretrained`` alone, so
any local ``VQModel`` / ``AutoencoderKL`` directory with such a JSON works too.

Frozen means: no parameter requires a gradient, the module stays in eval mode whatever
``train()`` is called with, and encoding runs under ``no_grad``. Its weights are part of the
EncDiff checkpoint, so a run keeps the first stage it was trained with even if ``RUN`` is
retrained later (building the model still reads ``RUN`` for the architecture).

The scale is LDM's ``scale_by_std``: 1 / std of the latents of the first training batch, measured
once by ``calibrate`` (the trainer calls it before step 0) and kept as the buffer ``scale`` in
every checkpoint, so a resumed or reloaded run uses the same value. 0 means "not measured yet".
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

EXPORT_DIR = "diffusers"
INFO_FILE = "first_stage.json"
KINDS = ("vq", "kl")
BUILTIN = "builtin:"  # model.first_stage.path=builtin:<name>: a first stage shipped in diffdrl/first_stages/


@dataclass
class FirstStageConfig:
    """``path``: a first-stage run or its diffusers export; None = pixel space (the default).

    ``cache_latents``: keep each dataset item's latent after its first encoding and reuse it
    (``training/latent_cache.py``; training only, results unchanged), in at most ``cache_gib``
    GiB on the training device; a dataset whose latents need more is an error at the start.
    """

    path: str | None = None
    cache_latents: bool = False
    cache_gib: float = 4.0  # 480,000 Shapes3D latents of 3x16x16 float32 take 1.4 GiB

    def __post_init__(self):
        if self.cache_latents and not self.path:
            raise ValueError(
                "model.first_stage.cache_latents needs model.first_stage.path: a pixel-space run has no "
                "latents to cache"
            )
        if not self.cache_gib > 0:
            raise ValueError(f"model.first_stage.cache_gib must be > 0, got {self.cache_gib}")


def builtin_dir(name: str) -> Path:
    """A first stage shipped with the package (``builtin:<name>``): ``diffdrl/first_stages/<name>/``."""
    root = Path(__file__).resolve().parent.parent / "first_stages"
    directory = root / name
    if not (directory / INFO_FILE).is_file():
        shipped = sorted(p.name for p in root.iterdir() if (p / INFO_FILE).is_file()) if root.is_dir() else []
        raise FileNotFoundError(
            f"model.first_stage.path={BUILTIN}{name!r}: no such built-in first stage (built in: "
            f"{', '.join(shipped) or 'none'})"
        )
    return directory


def export_dir(path: str | Path) -> Path:
    """The diffusers directory of a first-stage run (``RUN/diffusers``), of an export itself, or of
    a built-in first stage (``builtin:<name>``)."""
    if str(path).startswith(BUILTIN):
        return builtin_dir(str(path).removeprefix(BUILTIN))
    path = Path(path)
    if (path / INFO_FILE).is_file():
        return path
    if (path / EXPORT_DIR / INFO_FILE).is_file():
        return path / EXPORT_DIR
    if (path / "config.yaml").is_file():
        raise FileNotFoundError(
            f"model.first_stage.path={str(path)!r} is a run without a first-stage export; write it with "
            f"`diffdrl train-autoencoder --out {path} --resume`"
        )
    raise FileNotFoundError(
        f"model.first_stage.path={str(path)!r}: no first-stage run there (train one with `diffdrl "
        f"train-autoencoder --config first-stage-vq --out {path}`, or --config tiny-cpu-first-stage on a CPU)"
    )


def read_info(path: str | Path) -> dict:
    """first_stage.json of a run or export, checked against the run's latest checkpoint."""
    directory = export_dir(path)
    try:
        info = json.loads((directory / INFO_FILE).read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{directory / INFO_FILE} is corrupt: {err}") from None
    missing = [k for k in ("kind", "resolution", "channels", "latent_shape") if k not in info]
    if missing or info["kind"] not in KINDS:
        raise ValueError(
            f"{directory / INFO_FILE}: needs kind in {KINDS}, resolution, channels, latent_shape"
        )
    steps = [
        int(m.group(1))
        for p in (directory.parent / "checkpoints").glob("step_*")
        if (m := re.fullmatch(r"step_(\d+)", p.name))
    ]
    if directory.name == EXPORT_DIR and steps and max(steps) != info.get("step"):
        raise ValueError(
            f"the first-stage export in {directory} is from step {info.get('step')} but the run's latest "
            f"checkpoint is step {max(steps)}; re-export with `diffdrl train-autoencoder --out "
            f"{directory.parent} --resume`"
        )
    return info


def check_compatible(
    info: dict, path: str | Path, resolution: int, channels: int, dataset: str | None = None
) -> None:
    """A first stage built for other images (size, channels, or another dataset when ``dataset`` is
    given and the export records one) is a one-line ``ValueError``: never a silently wrong model."""
    if info["resolution"] != resolution or info["channels"] != channels:
        raise ValueError(
            f"model.first_stage.path={str(path)!r} was trained on {info['resolution']}x{info['resolution']} "
            f"images with {info['channels']} channels, but this run has {resolution}x{resolution} with "
            f"{channels}; train a first stage at data.resolution={resolution}"
        )
    trained_on = info.get("dataset")
    if dataset is not None and trained_on is not None and trained_on != dataset:
        raise ValueError(
            f"model.first_stage.path={str(path)!r} was trained on {trained_on}, but this run trains on "
            f"{dataset}; train one for it: `diffdrl train-autoencoder --config tiny-cpu-first-stage8 "
            f"data.name={dataset} --out RUN`, then model.first_stage.path=RUN"
        )


class FrozenFirstStage(nn.Module):
    """E and D of a trained first stage, frozen; ``encode`` gives scaled latents, ``decode`` pixels."""

    def __init__(self, path: str | Path, resolution: int, channels: int = 3):
        super().__init__()
        from diffusers import AutoencoderKL, VQModel

        info = read_info(path)
        check_compatible(info, path, resolution, channels)
        self.kind, self.latent_shape = info["kind"], tuple(info["latent_shape"])
        cls = VQModel if self.kind == "vq" else AutoencoderKL
        self.net = cls.from_pretrained(str(export_dir(path)), local_files_only=True)
        self.net.requires_grad_(False)
        self.register_buffer("scale", torch.zeros(()))
        self.train(False)

    def train(self, mode: bool = True) -> FrozenFirstStage:
        return super().train(False)  # always eval: a frozen stage has no training behaviour

    @torch.no_grad()
    def raw_latents(self, x: torch.Tensor) -> torch.Tensor:
        """Unscaled latents (B, D, h, w) of images in [-1, 1]."""
        if self.kind == "vq":
            return self.net.encode(x).latents  # pre-quantisation, as LDM diffuses them
        return self.net.encode(x).latent_dist.mean

    @torch.no_grad()
    def calibrate(self, x: torch.Tensor) -> float:
        """Set ``scale`` = 1 / std of the latents of ``x`` (LDM's scale_by_std, on the first batch)."""
        std = float(self.raw_latents(x).float().std())
        if not std > 0:
            raise ValueError(
                f"the first stage's latents of the calibration batch have std {std}; cannot scale"
            )
        self.scale.fill_(1.0 / std)
        return 1.0 / std

    def _scale(self) -> torch.Tensor:
        if not float(self.scale) > 0:
            raise ValueError(
                "the latent scale is not measured yet: call calibrate(first batch) before training (the "
                "trainer does), or load a trained run"
            )
        return self.scale

    def scaled(self, raw: torch.Tensor) -> torch.Tensor:
        """z = scale * raw latents: the one place they are scaled (``encode`` and the trainer's
        latent cache both come here, so cached and fresh latents agree bit for bit)."""
        return raw * self._scale()

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """z = scale * E(x) (B, D, h, w): what the diffusion runs on."""
        return self.scaled(self.raw_latents(x))

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) in [-1, 1] of scaled latents (a VQ quantises them first)."""
        return self.net.decode(z / self._scale()).sample.clamp(-1.0, 1.0)
