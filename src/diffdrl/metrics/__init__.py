"""Disentanglement metrics: disentanglement_lib's protocol, one file per metric, run by ``evaluate``.

Every metric is ``metric(data, represent, rng, *, <sample sizes and settings>) -> dict[str, float]``
with ``represent(uint8 images (B, H, W, C)) -> float32 (B, K)``; metrics never import models.

Presets and key names (details in ``presets``):
- ``"canonical"`` = each function's keyword defaults = dlib's published settings (FactorVAE
  64/10000/5000/10000 with absolute 0.05 pruning, DCI with scikit-learn GBT at 10000/5000, ...).
  Keys: ``factor_vae.eval_accuracy``, ``dci.disentanglement``, ``mig``, ``sap``, ``modularity``,
  ``explicitness``, ``beta_vae.eval_accuracy``, ``unsupervised.gaussian_total_correlation``, ...
- ``"fast"`` = fewer samples and LightGBM importances for DCI (``presets.FAST``). Keys carry
  ``_fast`` (``dci_fast.disentanglement``, ``mig_fast``), so a report can never show a fast
  number as a canonical one; any other setting gives ``_custom`` and/or the option's value
  (``factor_vae_relative.eval_accuracy`` for FactorVAE with scale-free pruning).

``evaluate`` gives each metric its own ``np.random.default_rng(seed)`` (as dlib reseeds each
metric) and shares one cache of codes between them (``sampling.CachedRepresentation``): on a
finite grid that fits ``code_cache_bytes`` each state is rendered and encoded once per
evaluation, whichever metric draws it first, so the values are those of the uncached path and
the canonical suite costs about one encoding of the grid; otherwise (reported, never silent)
sets that several metrics draw identically are encoded once. TAD works on precomputed codes and
binary attributes (``tad.tad_nashae``, ``tad.tad_infodiffusion``); PCA-1 per unit for token
representations is in ``pca``.

``evaluation`` holds ``evaluate`` and the registry ``METRICS``. The names below are imported on
first use (PEP 562), so reading ``metrics.presets`` (the command line's parser does) costs no
torch or scikit-learn.
"""

from __future__ import annotations

import importlib

# public name -> the module that owns it
_LAZY = {
    "METRICS": "evaluation",
    "NEEDS_FACTORS": "evaluation",
    "evaluate": "evaluation",
    "format_table": "evaluation",
    "PRESETS": "presets",
    "DEFAULT_PRESET": "presets",
    "PerUnitPCA": "pca",
    "pca_per_unit": "pca",
    "beta_vae": "beta_vae",
    "dci": "dci",
    "dci_from_codes": "dci",
    "factor_vae": "factor_vae",
    "mig": "mig",
    "modularity_explicitness": "modularity",
    "sap": "sap",
    "tad_infodiffusion": "tad",
    "tad_nashae": "tad",
    "unsupervised": "unsupervised",
}

__all__ = [
    "METRICS",
    "PRESETS",
    "PerUnitPCA",
    "beta_vae",
    "dci",
    "dci_from_codes",
    "evaluate",
    "factor_vae",
    "format_table",
    "mig",
    "modularity_explicitness",
    "pca_per_unit",
    "sap",
    "tad_infodiffusion",
    "tad_nashae",
    "unsupervised",
]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
