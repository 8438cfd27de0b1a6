"""The public Python surface: loading trained runs, encoding images, scoring runs.

Everything here is re-exported from the layer that owns it (``training.runs`` for run directories,
``models.representation`` for codes), so library code below ``api`` never has to import it.
"""

from __future__ import annotations

from diffdrl.models.representation import (
    REPRESENTATIONS,
    encode_images,
    encode_tokens,
    has_tokens,
    representation,
    tokens_unavailable,
    unit_width,
)
from diffdrl.training.runs import (
    WEIGHTS,
    Run,
    evaluate_run,
    load_model,
    load_run,
    load_run_config,
    untrained_run,
)

__all__ = [
    "REPRESENTATIONS",
    "WEIGHTS",
    "Run",
    "encode_images",
    "encode_tokens",
    "evaluate_run",
    "has_tokens",
    "load_model",
    "load_run",
    "load_run_config",
    "representation",
    "tokens_unavailable",
    "unit_width",
    "untrained_run",
]
