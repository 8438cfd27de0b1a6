"""The split rules both backends of ``gbt`` share: which nodes may split, how the best feature is
chosen (ties split the importance), and how importances add up. Written once, so the torch and
numba backends grow the same trees (module ``gbt``, "Ties")."""

from __future__ import annotations

import numpy as np
import torch

EPSILON = float(np.finfo(np.float64).eps)  # scikit-learn's "pure node" variance
FEATURE_THRESHOLD = np.float32(1e-7)  # values closer than this (float32) are not split apart


def variance(count, total, square):
    safe = count.clamp_min(1)
    return square / safe - (total / safe) ** 2


def may_split(alive, count, total, square):
    """The nodes (m, T) that may split: still alive and with residual variance above EPSILON."""
    return alive & (variance(count, total, square) > EPSILON)


def choose(per_feature):
    """Best score per column of ``per_feature`` (D, C), each feature's share (bit-equal ties split
    it equally), and the lowest-indexed best feature (C,): the rule for both backends."""
    best = per_feature.amax(0)
    tied = (per_feature == best) & torch.isfinite(best)
    share = tied / tied.sum(0).clamp_min(1)
    feature = torch.argmax(tied.to(torch.int8), 0)  # lowest-indexed best feature
    return best, share, feature


def add_gain(gain, best, share, ok, count, n: int):
    """Add one level's importance decreases to ``gain`` (D, T); the (m, T) mask of split nodes."""
    m, t = count.shape
    split = (ok & torch.isfinite(best)).reshape(m, t)
    decrease = torch.where(split.reshape(-1), best / count.reshape(-1).clamp_min(1), 0.0) / n
    gain += (share * decrease).reshape(-1, m, t).sum(1)
    return split
