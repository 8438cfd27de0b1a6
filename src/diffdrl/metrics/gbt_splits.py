"""The split rules both backends of ``gbt`` share: which nodes may split, how the best feature is
chosen (ties go to a random one of the tied features, as in scikit-learn), and how importances add
up. Written once, so the torch and numba backends grow the same trees (module ``gbt``, "Ties")."""

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


def tie_keys(generator: torch.Generator, d: int, trees: int, depth: int) -> torch.Tensor:
    """One round's tie-breaking keys (D, 2^depth - 1, T): uniform draws per (feature, heap node,
    tree), heap node ``2^l - 1 + c`` being node c of level l. Drawn once per round for all trees on
    the CPU, so every backend, batch of trees and device reads the same keys."""
    return torch.rand((d, 2**depth - 1, trees), generator=generator, dtype=torch.float64)


def level_keys(keys: torch.Tensor, level: int, trees=slice(None)) -> torch.Tensor:
    """The keys (D, m T) of one level's columns (node-major, ``c T + t``) for trees ``trees``."""
    m = 2**level
    return keys[:, m - 1 : 2 * m - 1, trees].reshape(keys.shape[0], -1)


def choose(per_feature, keys):
    """Best score per column of ``per_feature`` (D, C), each feature's share of its importance (1
    for the chosen one) and the chosen feature (C,): of the features whose scores are bit-equal to
    the best, the one with the largest key (D, C), so each tied feature is equally likely to be
    taken, as in scikit-learn (its random feature order keeps the first strictly better one)."""
    best = per_feature.amax(0)
    tied = (per_feature == best) & torch.isfinite(best)
    feature = torch.where(tied, keys, -1.0).argmax(0)
    share = torch.zeros_like(per_feature)
    share.scatter_(0, feature[None], tied.any(0, keepdim=True).to(share.dtype))
    return best, share, feature


def add_gain(gain, best, share, ok, count, n: int):
    """Add one level's importance decreases to ``gain`` (D, T); the (m, T) mask of split nodes."""
    m, t = count.shape
    split = (ok & torch.isfinite(best)).reshape(m, t)
    decrease = torch.where(split.reshape(-1), best / count.reshape(-1).clamp_min(1), 0.0) / n
    gain += (share * decrease).reshape(-1, m, t).sum(1)
    return split
