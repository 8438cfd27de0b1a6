"""The "canonical" and "fast" presets, and the key names that keep their results apart.

Canonical settings are the metric functions' own keyword defaults (disentanglement_lib's
published protocol), written once in their signatures; ``FAST`` lists only what the fast preset
changes. A result's keys say which protocol produced it, decided from the arguments actually
used, so a fast or custom number can never be read as a canonical one:

- numeric settings (sample counts, thresholds, bins) all canonical -> no suffix;
  all equal to the fast preset's -> ``_fast``; anything else -> ``_custom``;
- then each option (a string setting such as DCI's ``importance`` or FactorVAE's ``pruning``)
  that differs from that baseline (the fast preset's when the numbers are fast, else the
  canonical one) is appended by value.

So ``dci.disentanglement`` is canonical (GBT, 10000/5000; ``dci_sklearn.*`` the same protocol fitted
by scikit-learn itself), ``dci_fast.disentanglement`` is the
fast preset (LightGBM, 5000/2500), ``dci_lightgbm.disentanglement`` is LightGBM at canonical
sizes, and ``factor_vae_fast_relative.eval_accuracy`` is the fast FactorVAE with relative pruning.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping

# Options the CLI offers, here so that it can offer them cheaply: DCI's estimators (``dci.dci``'s
# ``importance``) and FactorVAE's pruning rules (``factor_vae.factor_vae``'s ``pruning``).
DCI_IMPORTANCE = ("gbt", "sklearn", "lightgbm")
FACTOR_VAE_PRUNING = ("absolute", "relative")

# Arguments that change speed or memory but never a result.
NOT_PROTOCOL = frozenset({"encode_batch_size", "n_jobs", "device"})

FAST: dict[str, dict[str, object]] = {
    "factor_vae": {"num_train": 2000, "num_eval": 1000, "num_variance_estimate": 5000},
    "dci": {"num_train": 5000, "num_test": 2500, "importance": "lightgbm"},
    "mig": {"num_train": 5000},
    "sap": {"num_train": 5000, "num_test": 2500},
    "modularity": {"num_train": 5000, "num_test": 2500},
    "beta_vae": {"num_train": 1000, "num_eval": 500},
    "unsupervised": {"num_train": 5000},
}

PRESETS: dict[str, dict[str, dict[str, object]]] = {"canonical": {}, "fast": FAST}
DEFAULT_PRESET = "canonical"  # what a score means when nobody names a protocol: the papers'


def protocol_defaults(metric: Callable) -> dict[str, object]:
    """The canonical settings of a metric: its keyword-only defaults that can change a result."""
    return {
        p.name: p.default
        for p in inspect.signature(metric).parameters.values()
        if p.kind is p.KEYWORD_ONLY and p.name not in NOT_PROTOCOL
    }


def preset_arguments(name: str, metric: Callable, preset: str) -> dict[str, object]:
    """Keyword arguments that run ``metric`` (registered as ``name``) under ``preset``."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r} (presets: {', '.join(PRESETS)})")
    overrides = dict(PRESETS[preset].get(name, {}))
    unknown = set(overrides) - set(protocol_defaults(metric))
    assert not unknown, f"preset {preset!r} sets unknown arguments {unknown} of {name}"
    return overrides


def variant_suffix(name: str, metric: Callable, arguments: Mapping[str, object]) -> str:
    """ "" for the canonical protocol, else "_fast", "_custom" and/or option values (see module doc)."""
    canonical = protocol_defaults(metric)
    fast = {**canonical, **FAST.get(name, {})}
    used = {**canonical, **{k: v for k, v in arguments.items() if k in canonical}}
    numeric = [k for k, v in canonical.items() if not isinstance(v, str)]
    if all(used[k] == canonical[k] for k in numeric):
        suffix, baseline = "", canonical
    elif all(used[k] == fast[k] for k in numeric):
        suffix, baseline = "_fast", fast
    else:
        suffix, baseline = "_custom", canonical
    options = [str(used[k]) for k, v in canonical.items() if isinstance(v, str) and used[k] != baseline[k]]
    return suffix + "".join(f"_{option}" for option in options)
