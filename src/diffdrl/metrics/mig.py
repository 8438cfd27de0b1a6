"""Mutual Information Gap (Chen et al. 2018, beta-TCVAE), dlib's discrete version.

Codes are discretised into equal-width bins; per factor, the gap between the two codes sharing
the most mutual information with it, over the factor's entropy, averaged over factors.
"""

from __future__ import annotations

import numpy as np

from diffdrl.metrics.discretize import discrete_entropy, histogram_discretize, mutual_info_matrix
from diffdrl.metrics.presets import variant_suffix
from diffdrl.metrics.sampling import ENCODE_BATCH_SIZE, sample_points


def mig(
    data,
    represent,
    rng: np.random.Generator,
    *,
    num_train: int = 10000,
    num_bins: int = 20,
    encode_batch_size: int = ENCODE_BATCH_SIZE,
) -> dict[str, float]:
    """MIG of ``represent`` on ``data``: ``{"mig": ...}``."""
    ns = "mig" + variant_suffix("mig", mig, locals())
    codes, factors = sample_points(data, represent, num_train, rng, encode_batch_size=encode_batch_size)
    return {ns: mig_from_codes(codes, factors, num_bins=num_bins)}


def mig_from_codes(codes: np.ndarray, factors: np.ndarray, *, num_bins: int = 20) -> float:
    """MIG from codes (n, K) and integer factors (n, F); needs K >= 2."""
    if np.ndim(codes) != 2 or np.shape(codes)[1] < 2:
        raise ValueError(f"MIG needs codes of shape (n, K) with K >= 2, got {np.shape(codes)}")
    m = mutual_info_matrix(histogram_discretize(codes, num_bins), np.asarray(factors))  # (K, F)
    top = np.sort(m, axis=0)[::-1]
    return float(np.mean((top[0] - top[1]) / discrete_entropy(np.asarray(factors))))
