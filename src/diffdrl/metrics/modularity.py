"""Modularity and explicitness (Ridgeway & Mozer 2018, "Learning Deep Disentangled Embeddings
With the F-Statistic Loss"), dlib's protocol.

Modularity: from the mutual information m (codes x factors, 20-bin discretised codes), each code
scores 1 - (sum_j m_ij^2 - max_j m_ij^2) / (max_j m_ij^2 (F - 1)) (0 if it shares nothing).
Explicitness: codes z-scored with train statistics; per factor a ``LogisticRegression`` on all
codes; macro ROC-AUC of its class probabilities against one-hot labels; mean over factors.

The classifier is pinned to scikit-learn 1.x's ``LogisticRegression()`` defaults (lbfgs,
multinomial, C=1, 100 iterations): dlib called ``LogisticRegression()``, whose default was
liblinear one-vs-rest before scikit-learn 0.22, so scores from that era differ slightly.
Its convergence warnings are silenced: they are part of the protocol. Deviations that only
apply where dlib would crash: a zero-variance code is z-scored with std 1, and classes absent
from the test set (or the training set) are left out of the macro average.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from diffdrl.metrics.discretize import histogram_discretize, mutual_info_matrix
from diffdrl.metrics.presets import variant_suffix
from diffdrl.metrics.sampling import ENCODE_BATCH_SIZE, sample_points


def modularity_explicitness(
    data,
    represent,
    rng: np.random.Generator,
    *,
    num_train: int = 10000,
    num_test: int = 5000,
    num_bins: int = 20,
    encode_batch_size: int = ENCODE_BATCH_SIZE,
) -> dict[str, float]:
    """``modularity``, ``explicitness`` (test) and ``explicitness.train`` of ``represent``."""
    suffix = variant_suffix("modularity", modularity_explicitness, locals())
    x, y = sample_points(data, represent, num_train, rng, encode_batch_size=encode_batch_size)
    x_test, y_test = sample_points(data, represent, num_test, rng, encode_batch_size=encode_batch_size)
    m = mutual_info_matrix(histogram_discretize(x, num_bins), y)
    train, test = explicitness(x, y, x_test, y_test)
    return {
        f"modularity{suffix}": modularity(m),
        f"explicitness{suffix}": test,
        f"explicitness{suffix}.train": train,
    }


def modularity(mutual_information: np.ndarray) -> float:
    """Mean modularity of codes from their mutual information with factors (K, F)."""
    sq = np.square(np.asarray(mutual_information, dtype=np.float64))
    theta = sq.max(1)
    delta = np.divide(
        sq.sum(1) - theta, theta * (sq.shape[1] - 1.0), out=np.ones_like(theta), where=theta > 0
    )
    return float(np.mean(np.where(theta > 0, 1.0 - delta, 0.0)))


def explicitness(codes, factors, test_codes, test_factors) -> tuple[float, float]:
    """(train, test) explicitness: mean over factors of a logistic regression's macro ROC-AUC."""
    codes, test_codes = np.asarray(codes, np.float64), np.asarray(test_codes, np.float64)
    mean, std = codes.mean(0), codes.std(0)
    std = np.where(std > 0, std, 1.0)
    x, x_test = (codes - mean) / std, (test_codes - mean) / std
    scores = [
        _explicitness_per_factor(x, y, x_test, y_test)
        for y, y_test in zip(np.asarray(factors).T, np.asarray(test_factors).T, strict=True)
    ]
    return float(np.mean([s[0] for s in scores])), float(np.mean([s[1] for s in scores]))


def _explicitness_per_factor(x, y, x_test, y_test) -> tuple[float, float]:
    if len(np.unique(y)) < 2:
        return 1.0, 1.0  # a constant factor is trivially explicit
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = LogisticRegression(C=1.0, solver="lbfgs", max_iter=100).fit(x, y)
    return _macro_auc(clf, x, y), _macro_auc(clf, x_test, y_test)


def _macro_auc(clf, x, y) -> float:
    proba = clf.predict_proba(x)  # (n, classes), columns in clf.classes_ order
    onehot = y[:, None] == clf.classes_[None]
    both = onehot.any(0) & ~onehot.all(0)  # classes with positives and negatives here
    return float(roc_auc_score(onehot[:, both], proba[:, both], average="macro"))
