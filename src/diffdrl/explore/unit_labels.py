"""The explorer's unit labels: ``viz.unit_factor``'s DCI fit of units to factors, cached per run and
checkpoint in ``RUN/explore/unit_factor.json`` so that reopening a run does not refit it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from diffdrl.atomic import atomic_write_text
from diffdrl.training.checkpoint import latest_checkpoint
from diffdrl.training.runs import Run
from diffdrl.viz.unit_factor import unit_factor_importance


def cached_unit_factor(run: Run, cache_dir: Path, num: int, seed: int) -> np.ndarray:
    """(N, F) DCI importances, read from ``cache_dir`` when they are for this checkpoint."""
    checkpoint = latest_checkpoint(run.path)
    key = {"checkpoint": checkpoint.name if checkpoint else None, "num": num, "seed": seed}
    path = cache_dir / "unit_factor.json"
    shape = (run.config.model.units, len(run.data.factor_sizes))
    if path.is_file():
        try:
            cached = json.loads(path.read_text())
        except (OSError, ValueError):
            cached = {}
        if {k: cached.get(k) for k in key} == key:
            importance = np.asarray(cached["importance"], dtype=np.float64)
            if importance.shape == shape:
                return importance
    importance = unit_factor_importance(run, num=num, seed=seed)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps({**key, "importance": importance.tolist()}))
    except OSError as err:  # a read-only run still explores; say the fit is not kept
        print(f"diffdrl explore: could not cache the unit-factor fit in {path}: {err}")
    return importance
