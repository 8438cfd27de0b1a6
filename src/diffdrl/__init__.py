"""diffdrl: unsupervised disentangled representation learning with diffusion models.

The names below are loaded on first use (PEP 562), so ``import diffdrl`` and ``diffdrl --help``
do not wait for torch and diffusers (benchmarks/cli_latency.py measures it).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from diffdrl.version import __version__

# public name -> the module that owns it
_LAZY = {
    "Config": "diffdrl.training.config",
    "load_config": "diffdrl.training.config",
    "load_model": "diffdrl.api",
    "train": "diffdrl.training.trainer",
}

__all__ = ["Config", "load_config", "load_model", "train", "__version__"]

if TYPE_CHECKING:  # for type checkers and editors; at run time __getattr__ imports on demand
    from diffdrl.api import load_model
    from diffdrl.training.config import Config, load_config
    from diffdrl.training.trainer import train


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'diffdrl' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
