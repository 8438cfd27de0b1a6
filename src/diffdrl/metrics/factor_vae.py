"""FactorVAE score (Kim & Mnih 2018, "Disentangling by Factorising", Sec. 4), dlib's protocol.

A vote fixes one factor k across a batch of ``batch_size`` factor vectors, encodes them and picks
the active code whose variance, relative to its global variance, is smallest. A majority-vote
classifier maps each code to the factor that voted for it most; the score is its accuracy on
fresh votes (``eval_accuracy``).

Pruning (which codes may vote). dlib drops codes with global std < 0.05, an absolute threshold
made for VAE posterior means, whose active units have std ~1. Units without a fixed scale (an
untrained EncDiff encoder gives std ~0.002) then lose every code and score 0. Canonical
(``pruning="absolute"``) keeps dlib's rule; ``pruning="relative"`` instead keeps codes with
std >= ``prune_threshold`` x the largest code std, which is invariant to a common rescaling of
all codes (a per-code rescaling can still move a code across the threshold, as with any
magnitude rule). Keys of relative runs are named ``factor_vae_relative.*`` (see ``presets``).
Codes with zero variance are never kept (dlib would divide 0 by 0).
``num_active_codes`` counts the kept codes (dlib's ``num_active_dims`` reported len(mask), the
total number of codes).
"""

from __future__ import annotations

import numpy as np

from diffdrl.metrics.presets import FACTOR_VAE_PRUNING as PRUNING
from diffdrl.metrics.presets import variant_suffix
from diffdrl.metrics.sampling import (
    ENCODE_BATCH_SIZE,
    check_count,
    encode_groups,
    fixed_factor_groups,
    sample_points,
)


def factor_vae(
    data,
    represent,
    rng: np.random.Generator,
    *,
    batch_size: int = 64,
    num_train: int = 10000,
    num_eval: int = 5000,
    num_variance_estimate: int = 10000,
    prune_threshold: float = 0.05,
    pruning: str = "absolute",
    encode_batch_size: int = ENCODE_BATCH_SIZE,
) -> dict[str, float]:
    """FactorVAE train/eval accuracy and the number of codes kept by pruning (module doc)."""
    ns = "factor_vae" + variant_suffix("factor_vae", factor_vae, locals())
    if pruning not in PRUNING:
        raise ValueError(f"pruning must be one of {PRUNING}, got {pruning!r}")
    if not prune_threshold >= 0:
        raise ValueError(f"prune_threshold must be >= 0, got {prune_threshold!r}")
    num_train, num_eval = check_count("num_train", num_train), check_count("num_eval", num_eval)
    z, _ = sample_points(
        data,
        represent,
        check_count("num_variance_estimate", num_variance_estimate, 2),
        rng,
        encode_batch_size=encode_batch_size,
    )
    global_var = z.astype(np.float64).var(0, ddof=1)
    active = active_codes(global_var, prune_threshold, pruning)
    if not active.any():
        return {f"{ns}.train_accuracy": 0.0, f"{ns}.eval_accuracy": 0.0, f"{ns}.num_active_codes": 0.0}

    def votes(num: int) -> np.ndarray:
        k, codes = fixed_factor_groups(data, num, batch_size, rng)
        chosen = encode_groups(
            data,
            represent,
            codes,
            lambda g: _least_variance(g, global_var, active),
            encode_batch_size=encode_batch_size,
        )
        return vote_matrix(k, chosen, data.num_factors, z.shape[1])

    train = votes(num_train)
    classifier = train.argmax(0)  # (K,): the factor each code stands for
    eval_ = votes(num_eval)
    return {
        f"{ns}.train_accuracy": majority_accuracy(train, classifier),
        f"{ns}.eval_accuracy": majority_accuracy(eval_, classifier),
        f"{ns}.num_active_codes": float(active.sum()),
    }


def active_codes(global_var: np.ndarray, threshold: float, pruning: str = "absolute") -> np.ndarray:
    """Mask (K,) of codes allowed to vote: std >= threshold (absolute) or >= threshold x max std."""
    std = np.sqrt(global_var)
    cutoff = threshold * std.max() if pruning == "relative" else threshold
    return (std >= cutoff) & (std > 0)


def _least_variance(groups: np.ndarray, global_var: np.ndarray, active: np.ndarray) -> np.ndarray:
    """Index (v,) of the active code with the least normalised variance in each group (v, G, K)."""
    local_var = groups.astype(np.float64).var(1, ddof=1)  # (v, K)
    ratio = np.where(active, local_var / np.where(active, global_var, 1.0), np.inf)
    return ratio.argmin(1)


def vote_matrix(factor: np.ndarray, code: np.ndarray, num_factors: int, num_codes: int) -> np.ndarray:
    """Counts (F, K) of votes (factor k, code j)."""
    return np.bincount(factor * num_codes + code, minlength=num_factors * num_codes).reshape(num_factors, -1)


def majority_accuracy(votes: np.ndarray, classifier: np.ndarray) -> float:
    """Share of votes (F, K) whose code's assigned factor (classifier (K,)) is the voting factor."""
    return float(votes[classifier, np.arange(votes.shape[1])].sum() / votes.sum())
