"""TAD, Total AUROC Difference (Yeats et al. 2022, NashAE), for binary attributes such as CelebA's.

For each attribute a and code l, the AUROC of thresholding code l (either direction, the better
one). diff_a = best AUROC - second best. Attributes count when their best AUROC >= 0.75 and no
other attribute removes more than 20% of their entropy (max_b I(a; b) / H(a) <= 0.2, from the
labels). TAD = sum of diff_a over counted attributes; "attributes_captured" = their number.

Two incompatible published variants, both here, on precomputed codes (n, L) and 0/1 labels
(n, A) (no dataset with binary attributes exists in diffdrl yet):
- ``tad_nashae`` (NashAE's ``celeba_eval``): one random batch of 1000 images; AUROC by a
  101-point threshold grid over each code's [min, max] range (right Riemann sum over the sorted
  ROC points); codes whose range is <= 0.2 score 0.5 (NashAE's codes are sigmoids in [0, 1], so
  that rule is not scale-free).
- ``tad_infodiffusion`` (InfoDiffusion's ``eval_disentanglement``, used by EncDiff/DyGA-era
  work): the first 10000 rows, 5-fold ``KFold(shuffle=True, random_state=0)``, exact ROC-AUC on
  each *training* fold (8000 rows) after z-scoring (a no-op for rank-based AUROC, so skipped);
  mean and std (ddof 0) over folds.
Pass rows in the order the protocol needs (NashAE: a random sample; InfoDiffusion: the dataset's
order). Always report the variant, the sample count, the split and the image crop with a number.
"""

from __future__ import annotations

import numpy as np
import scipy.stats
from sklearn.model_selection import KFold

MIN_AUROC = 0.75
MAX_ENTROPY_REDUCTION = 0.2


def tad_nashae(
    codes: np.ndarray,
    attributes: np.ndarray,
    *,
    num_samples: int = 1000,
    num_thresholds: int = 101,
    min_range: float = 0.2,
) -> dict[str, float]:
    """NashAE's TAD on the first ``num_samples`` rows (grid AUROC)."""
    codes, attributes = _check(codes, attributes, num_samples)
    aurocs = auroc_grid(codes, attributes, num_thresholds=num_thresholds, min_range=min_range)
    score, captured = tad_from_aurocs(aurocs, attributes)
    return {
        "tad_nashae.score": score,
        "tad_nashae.attributes_captured": float(captured),
        "tad_nashae.num_samples": float(len(codes)),
    }


def tad_infodiffusion(
    codes: np.ndarray,
    attributes: np.ndarray,
    *,
    num_samples: int = 10000,
    num_folds: int = 5,
    fold_seed: int = 0,
) -> dict[str, float]:
    """InfoDiffusion's TAD: exact AUROC on each training fold of the first ``num_samples`` rows."""
    codes, attributes = _check(codes, attributes, num_samples)
    folds = KFold(n_splits=num_folds, shuffle=True, random_state=fold_seed).split(codes)
    results = np.array(
        [tad_from_aurocs(auroc_exact(codes[i], attributes[i]), attributes[i]) for i, _ in folds]
    )
    return {
        "tad_infodiffusion.score": float(results[:, 0].mean()),
        "tad_infodiffusion.score_std": float(results[:, 0].std()),
        "tad_infodiffusion.attributes_captured": float(results[:, 1].mean()),
        "tad_infodiffusion.attributes_captured_std": float(results[:, 1].std()),
        "tad_infodiffusion.num_samples": float(len(codes)),
    }


def tad_from_aurocs(aurocs: np.ndarray, attributes: np.ndarray) -> tuple[float, int]:
    """(TAD, attributes captured) from AUROCs (A, L) and the labels (n, A) they were measured on."""
    if aurocs.shape[1] < 2:
        raise ValueError(f"TAD needs at least 2 codes, got {aurocs.shape[1]}")
    top = np.sort(aurocs, axis=1)
    diff = top[:, -1] - top[:, -2]
    keep = (top[:, -1] >= MIN_AUROC) & (entropy_reduction(attributes) <= MAX_ENTROPY_REDUCTION)
    return float(diff[keep].sum()), int(keep.sum())


def entropy_reduction(attributes: np.ndarray) -> np.ndarray:
    """Per attribute a (A,): max over b != a of I(a; b) / H(a); inf for a constant attribute."""
    y = np.asarray(attributes, dtype=np.float64)
    n = len(y)
    p = y.mean(0)  # P(a = 1)
    joint = {  # (A, A) joint probabilities of (a, b) values
        (1, 1): y.T @ y / n,
        (1, 0): y.T @ (1 - y) / n,
        (0, 1): (1 - y).T @ y / n,
        (0, 0): (1 - y).T @ (1 - y) / n,
    }
    mi = np.zeros((y.shape[1], y.shape[1]))
    for (u, v), pj in joint.items():
        pa = p if u else 1 - p
        pb = p if v else 1 - p
        outer = pa[:, None] * pb[None, :]
        ok = (pj > 0) & (outer > 0)
        mi += np.where(ok, pj * np.log(np.where(ok, pj, 1.0) / np.where(ok, outer, 1.0)), 0.0)
    entropy = np.diag(mi).copy()  # I(a; a) = H(a)
    np.fill_diagonal(mi, 0.0)
    return np.divide(mi.max(1), entropy, out=np.full_like(entropy, np.inf), where=entropy > 0)


def auroc_exact(codes: np.ndarray, attributes: np.ndarray) -> np.ndarray:
    """AUROC (A, L) of each code for each attribute, better direction; ties count half (= roc_auc_score)."""
    ranks = scipy.stats.rankdata(codes, axis=0)  # average ranks for ties
    y = attributes.astype(np.float64)
    pos = y.sum(0)
    neg = len(y) - pos
    u = y.T @ ranks - (pos * (pos + 1) / 2)[:, None]  # Mann-Whitney U of positives
    auc = np.divide(u, (pos * neg)[:, None], out=np.full(u.shape, 0.5), where=(pos * neg)[:, None] > 0)
    return np.maximum(auc, 1.0 - auc)


def auroc_grid(
    codes: np.ndarray, attributes: np.ndarray, *, num_thresholds: int = 101, min_range: float = 0.2
):
    """NashAE's AUROC (A, L): thresholds on a grid over each code's range, both directions."""
    low, high = codes.min(0), codes.max(0)
    t = np.arange(num_thresholds) / (num_thresholds - 1)
    threshold = low + t[:, None] * (high - low)  # (T, L)
    above = (codes[:, None, :] >= threshold[None]).astype(np.float32)  # (n, T, L): predicted positive
    y = attributes.astype(np.float32)
    pos = y.sum(0).astype(np.float64)  # (A,)
    neg = len(y) - pos
    tp = (y.T @ above.reshape(len(y), -1)).reshape(len(pos), *threshold.shape).astype(np.float64)  # (A, T, L)
    fp = above.sum(0)[None].astype(np.float64) - tp
    pos, neg = pos[:, None, None], neg[:, None, None]
    with np.errstate(divide="ignore", invalid="ignore"):  # a constant attribute gets 0.5 below
        up = _grid_area(fp / neg, tp / pos)  # predict 1 where code >= threshold
        down = _grid_area((neg - fp) / neg, (pos - tp) / pos)  # predict 1 where code < threshold
    auc = np.maximum(up, down)
    return np.where(((high - low) > min_range)[None] & np.isfinite(auc), auc, 0.5)


def _grid_area(fpr: np.ndarray, tpr: np.ndarray) -> np.ndarray:
    """Area under ROC points (A, T, L), each rate sorted along T: sum of tpr[i] (fpr[i] - fpr[i-1])."""
    fpr, tpr = np.sort(fpr, axis=1), np.sort(tpr, axis=1)
    return (tpr[:, 1:] * np.diff(fpr, axis=1)).sum(1)


def _check(codes, attributes, num_samples: int) -> tuple[np.ndarray, np.ndarray]:
    codes, attributes = np.asarray(codes), np.asarray(attributes)
    if codes.ndim != 2 or attributes.ndim != 2 or len(codes) != len(attributes):
        raise ValueError(
            f"need codes (n, L) and attributes (n, A) with the same n, got {codes.shape}, {attributes.shape}"
        )
    if not np.isin(attributes, (0, 1)).all():
        raise ValueError("attributes must be 0/1 labels (map CelebA's -1/1 with (a + 1) // 2)")
    if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) or num_samples < 2:
        raise ValueError(f"num_samples must be an integer >= 2, got {num_samples!r}")
    if len(codes) < num_samples:
        raise ValueError(f"the protocol uses {num_samples} rows, got only {len(codes)}")
    return codes[:num_samples].astype(np.float64), attributes[:num_samples].astype(np.int64)
