"""Run the metrics under a preset (``evaluate``) and show their scores (``format_table``); the
registry of metrics by name. The protocol is described in the package docstring (``metrics``)."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from diffdrl.metrics.beta_vae import beta_vae
from diffdrl.metrics.dci import dci
from diffdrl.metrics.factor_vae import factor_vae
from diffdrl.metrics.mig import mig
from diffdrl.metrics.modularity import modularity_explicitness
from diffdrl.metrics.presets import DEFAULT_PRESET, PRESETS, preset_arguments
from diffdrl.metrics.sampling import CODE_CACHE_BYTES, ENCODE_BATCH_SIZE, CachedRepresentation
from diffdrl.metrics.sap import sap
from diffdrl.metrics.unsupervised import unsupervised

METRICS: dict[str, Callable[..., dict[str, float]]] = {
    "factor_vae": factor_vae,
    "dci": dci,
    "mig": mig,
    "sap": sap,
    "modularity": modularity_explicitness,
    "beta_vae": beta_vae,
    "unsupervised": unsupervised,
}
# Metrics that need ground-truth factors; the rest also run on unlabelled image datasets.
NEEDS_FACTORS = frozenset(METRICS) - {"unsupervised"}

COUNTS = ("num_active_codes", "attributes_captured", "num_samples")


def evaluate(
    data,
    represent: Callable[[np.ndarray], np.ndarray],
    metrics: list[str] | tuple[str, ...] | None = None,
    seed: int = 0,
    preset: str = DEFAULT_PRESET,
    progress: bool = True,
    *,
    overrides: dict[str, dict[str, object]] | None = None,
    encode_batch_size: int = ENCODE_BATCH_SIZE,
    code_cache_bytes: int = CODE_CACHE_BYTES,
) -> dict[str, float]:
    """Run metrics (default: all that apply to ``data``) under a preset; one flat dict of scores.

    ``code_cache_bytes`` bounds the grid's table of codes (0: no table, sets are cached by hash).

    ``overrides`` changes settings per metric on top of the preset, e.g.
    ``{"factor_vae": {"pruning": "relative"}}``; the keys then name the variant
    (``factor_vae_relative.eval_accuracy``).
    """
    has_factors = hasattr(data, "factor_sizes")
    if metrics is None:
        metrics = [name for name in METRICS if has_factors or name not in NEEDS_FACTORS]
    unknown = [name for name in metrics if name not in METRICS]
    if unknown:
        raise ValueError(f"unknown metrics {unknown} (metrics: {', '.join(METRICS)})")
    if not has_factors and (needs := [name for name in metrics if name in NEEDS_FACTORS]):
        raise ValueError(f"metrics {needs} need a dataset with ground-truth factors")
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r} (presets: {', '.join(PRESETS)})")
    overrides = overrides or {}
    if unknown := sorted(set(overrides) - set(metrics)):
        raise ValueError(f"overrides for metrics not being run: {unknown} (running: {', '.join(metrics)})")
    cached = CachedRepresentation(represent, code_cache_bytes)
    results: dict[str, float] = {}
    for name in metrics:
        start = time.perf_counter()
        kwargs = {**preset_arguments(name, METRICS[name], preset), **overrides.get(name, {})}
        rng = np.random.default_rng(seed)
        results.update(METRICS[name](data, cached, rng, encode_batch_size=encode_batch_size, **kwargs))
        if progress:
            print(f"[metrics] {name} ({preset}): {time.perf_counter() - start:.1f} s", flush=True)
    if progress:
        if cached.note is not None:
            table = cached.note
        elif cached.states_encoded:
            table = f"{cached.states_encoded} grid states encoded once each"
        else:
            table = "no grid table (a dataset without factors, or code_cache_bytes=0): sets cached by hash"
        print(f"[metrics] codes: {table}", flush=True)
    return results


def format_table(results: dict[str, float]) -> str:
    """Aligned two-column text table of a results dict (counts as integers, scores to 4 places)."""
    if not results:
        return "(no results)"
    width = max(len(key) for key in results)
    lines = []
    for key, value in results.items():
        is_count = key.endswith(COUNTS) and float(value).is_integer()
        shown = f"{int(value)}" if is_count else f"{value:.4f}"
        lines.append(f"{key:<{width}}  {shown:>8}")
    return "\n".join(lines)
