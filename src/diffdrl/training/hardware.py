"""The run's hardware settings: autocast precision, TF32, and SyncBatchNorm for several processes.

Each function resolves one switch of ``TrainConfig`` for the device the run landed on, and says
what it chose; the trainer logs the results once and stores them with every checkpoint.
"""

from __future__ import annotations

import contextlib
import warnings

import torch
from torch import nn

from diffdrl.training.config import TrainConfig

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def _bf16_supported() -> bool:
    try:  # native bf16 only: newer torch counts emulated bf16 (pre-Ampere GPUs) unless told not to
        return torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:
        return torch.cuda.is_bf16_supported()


def resolve_precision(train: TrainConfig, device: torch.device) -> tuple[str, str]:
    """(autocast precision "no" | "bf16" | "fp16", why) for ``train.mixed_precision`` on ``device``.

    ``"auto"`` picks bf16 on CUDA devices with native bf16 when the fast path is on, else float32,
    and says why; an explicit value is honoured (bf16 on CPU: torch's CPU autocast) or refused with
    a ``ValueError``, never replaced by another.
    """
    cuda = device.type == "cuda"
    if train.mixed_precision == "auto":
        if not cuda:
            return "no", f"auto: float32 on {device.type}"
        if not train.fast_path:
            return "no", "auto: train.fast_path is off"
        if not _bf16_supported():
            return "no", f"auto: {torch.cuda.get_device_name(device)} has no native bf16"
        return "bf16", "auto: bf16 on CUDA"
    if train.mixed_precision == "fp16" and not cuda:
        raise ValueError(
            f"train.mixed_precision='fp16' needs a CUDA device (loss scaling), training is on {device}; "
            "use 'bf16', 'no' or 'auto'"
        )
    if train.mixed_precision == "bf16" and cuda and not _bf16_supported():
        raise ValueError(
            f"train.mixed_precision='bf16' but {torch.cuda.get_device_name(device)} has no native bf16; "
            "use 'fp16', 'no' or 'auto'"
        )
    return train.mixed_precision, "as configured"


def use_tf32(enabled: bool = True) -> None:
    """TF32 tensor cores for float32 matmuls and convolutions (process-wide torch settings), or,
    with ``enabled=False``, full float32 for both (cuDNN's convolutions default to TF32), as
    float32 reference computations need."""
    if hasattr(torch.backends.cuda.matmul, "fp32_precision"):  # torch >= 2.9
        precision = "tf32" if enabled else "ieee"
        torch.backends.cuda.matmul.fp32_precision = precision
        torch.backends.cudnn.conv.fp32_precision = precision
    else:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled


def _has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def sync_batchnorm(model: nn.Module, device: torch.device, world: int) -> tuple[nn.Module, str]:
    """The model with BatchNorm synchronised across ``world`` processes where torch can (CUDA),
    and a note for the log. On CPU torch's SyncBatchNorm refuses to run, so BatchNorm keeps
    per-process statistics and a warning says the run is not equivalent to a single process."""
    if world == 1 or not _has_batchnorm(model):
        return model, "not needed"
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model), "on"
    warnings.warn(
        f"BatchNorm statistics stay per process on {device.type} (torch's SyncBatchNorm needs a GPU): "
        f"this {world}-process run differs from a single process with the same global batch",
        stacklevel=2,
    )
    return model, "impossible on CPU: per-process statistics"


def autocast(precision: str, device: torch.device):
    """Autocast to ``precision`` ("no" | "bf16" | "fp16") on ``device``; a no-op for "no". Wraps
    network calls only: optimizer, EMA and losses stay float32."""
    dtype = AUTOCAST_DTYPES.get(precision)
    return contextlib.nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


def speed_settings(
    train: TrainConfig,
    device: torch.device,
    world: int,
    precision: str,
    precision_reason: str,
    sync_batchnorm: str,
    data: str,
    latent_cache: str,
) -> dict:
    """The run's resolved speed settings, as stored in every checkpoint's ``state.json``."""
    fast = train.fast_path and device.type == "cuda"
    return {
        "device": str(device),
        "processes": world,
        "batch_per_process": train.batch_size // world,
        "mixed_precision": precision,
        "mixed_precision_reason": precision_reason,
        "channels_last": train.channels_last or fast,
        "fused_adamw": fast,
        "tf32": fast,
        "compile": train.compile,
        "sync_batchnorm": sync_batchnorm,
        "data": data,
        "lr": train.effective_lr,
        "lr_scaling": train.lr_scaling,
        "latent_cache": latent_cache,
    }


def describe_settings(settings: dict) -> str:
    """One line of the resolved speed settings (the trainer's ``settings``), as logged at the start."""
    s, on = settings, {True: "on", False: "off"}
    precision = {"no": "float32", "bf16": "bf16 autocast", "fp16": "fp16 autocast"}[s["mixed_precision"]]
    line = (
        f"training on {s['device']} ({s['processes']} process(es), {s['batch_per_process']} images "
        f"each): {precision} ({s['mixed_precision_reason']}), channels_last {on[s['channels_last']]}, "
        f"fused AdamW {on[s['fused_adamw']]}, TF32 {on[s['tf32']]}, compile {on[s['compile']]}, "
        f"SyncBatchNorm {s['sync_batchnorm']}; data {s['data']}; lr {s['lr']:.3g} "
        f"(lr_scaling {s['lr_scaling']})"
    )
    if s["latent_cache"] != "off":
        line += f"; first-stage latents cached ({s['latent_cache']})"
    return line
