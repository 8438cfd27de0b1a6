"""SAP score (Kumar et al. 2018, "Variational Inference of Disentangled Latent Concepts", Sec. 3).

S_ij = test accuracy of a linear SVM predicting discrete factor j from code i alone; SAP is the
mean over factors of the gap between the two best codes. dlib's settings: ``LinearSVC(C=0.01,
class_weight="balanced")``. We pin the primal solver (``dual=False``): the same objective as
dlib's era default (dual), with deterministic, better converged solutions on one feature.
"""

from __future__ import annotations

import numpy as np
from sklearn.svm import LinearSVC

from diffdrl.metrics.presets import variant_suffix
from diffdrl.metrics.sampling import ENCODE_BATCH_SIZE, sample_points


def sap(
    data,
    represent,
    rng: np.random.Generator,
    *,
    num_train: int = 10000,
    num_test: int = 5000,
    encode_batch_size: int = ENCODE_BATCH_SIZE,
) -> dict[str, float]:
    """SAP of ``represent`` on ``data`` (discrete factors): ``{"sap": ...}``."""
    ns = "sap" + variant_suffix("sap", sap, locals())
    x, y = sample_points(data, represent, num_train, rng, encode_batch_size=encode_batch_size)
    x_test, y_test = sample_points(data, represent, num_test, rng, encode_batch_size=encode_batch_size)
    return {ns: sap_from_codes(x, y, x_test, y_test)}


def sap_from_codes(codes, factors, test_codes, test_factors) -> float:
    """SAP from codes (n, K) and integer factors (n, F), train and test; needs K >= 2."""
    s = sap_matrix(codes, factors, test_codes, test_factors)
    if s.shape[0] < 2:
        raise ValueError(f"SAP needs at least 2 codes, got {s.shape[0]}")
    top = np.sort(s, axis=0)
    return float(np.mean(top[-1] - top[-2]))


def sap_matrix(codes, factors, test_codes, test_factors) -> np.ndarray:
    """S (K, F): test accuracy of a one-code linear SVM for each code and factor."""
    codes, test_codes = np.asarray(codes), np.asarray(test_codes)
    factors, test_factors = np.asarray(factors), np.asarray(test_factors)
    s = np.zeros((codes.shape[1], factors.shape[1]))
    for i in range(codes.shape[1]):
        for j in range(factors.shape[1]):
            if len(np.unique(factors[:, j])) < 2:
                continue  # a constant factor is predicted by nothing
            svm = LinearSVC(C=0.01, class_weight="balanced", dual=False).fit(
                codes[:, i : i + 1], factors[:, j]
            )
            s[i, j] = np.mean(svm.predict(test_codes[:, i : i + 1]) == test_factors[:, j])
    return s
