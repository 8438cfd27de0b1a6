"""Histogram discretisation and discrete mutual information, shared by MIG, modularity and the
unsupervised scores (disentanglement_lib's ``utils``: 20 equal-width bins over each code's range).
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import mutual_info_score


def histogram_discretize(codes: np.ndarray, num_bins: int = 20) -> np.ndarray:
    """Bin indices int (n, K): ``np.digitize(x, np.histogram(x, num_bins)[1][:-1])`` per code."""
    codes = np.asarray(codes)
    if codes.ndim != 2:
        raise ValueError(f"codes must have shape (n, K), got {codes.shape}")
    if isinstance(num_bins, bool) or not isinstance(num_bins, (int, np.integer)) or num_bins < 1:
        raise ValueError(f"num_bins must be a positive integer, got {num_bins!r}")
    out = np.empty(codes.shape, dtype=np.int64)
    for i, x in enumerate(codes.T):
        out[:, i] = np.digitize(x, np.histogram(x, num_bins)[1][:-1])
    return out


def mutual_info_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """m[i, j] = I(a_i; b_j) in nats between discrete columns of a (n, A) and b (n, B)."""
    if a.ndim != 2 or b.ndim != 2 or len(a) != len(b):
        raise ValueError(f"need two (n, .) label arrays with the same n, got {a.shape} and {b.shape}")
    return np.array([[mutual_info_score(y, x) for y in b.T] for x in a.T]).reshape(a.shape[1], b.shape[1])


def discrete_entropy(labels: np.ndarray) -> np.ndarray:
    """H(y_j) in nats per column of labels (n, F), as I(y; y) (dlib's definition)."""
    return np.array([mutual_info_score(y, y) for y in labels.T])
