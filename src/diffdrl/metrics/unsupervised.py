"""Unsupervised scores of the codes alone (dlib's ``unsupervised_metrics``; no factors needed).

- Gaussian total correlation: KL between a Gaussian with the codes' covariance and the product
  of its marginals, 0.5 (sum log diag(S) - log det S); 0 iff the codes are uncorrelated.
- Gaussian Wasserstein correlation: squared 2-Wasserstein distance between the same two
  Gaussians, raw and normalised by the total variance.
- Mutual information score: mean over ordered pairs of distinct codes of their discrete mutual
  information (20-bin histograms), in nats.
Works on datasets without factors too (images drawn by index).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

from diffdrl.metrics.discretize import histogram_discretize, mutual_info_matrix
from diffdrl.metrics.presets import variant_suffix
from diffdrl.metrics.sampling import ENCODE_BATCH_SIZE, sample_images


def unsupervised(
    data,
    represent,
    rng: np.random.Generator,
    *,
    num_train: int = 10000,
    num_bins: int = 20,
    encode_batch_size: int = ENCODE_BATCH_SIZE,
) -> dict[str, float]:
    """Gaussian total/Wasserstein correlation and mean pairwise mutual information of the codes."""
    ns = "unsupervised" + variant_suffix("unsupervised", unsupervised, locals())
    codes = sample_images(data, represent, num_train, rng, encode_batch_size=encode_batch_size)
    return {f"{ns}.{key}": value for key, value in unsupervised_from_codes(codes, num_bins=num_bins).items()}


def unsupervised_from_codes(codes: np.ndarray, *, num_bins: int = 20) -> dict[str, float]:
    codes = np.asarray(codes, dtype=np.float64)
    if codes.ndim != 2 or codes.shape[1] < 2:
        raise ValueError(f"codes must have shape (n, K) with K >= 2, got {codes.shape}")
    cov = np.cov(codes, rowvar=False)
    wasserstein = gaussian_wasserstein_correlation(cov)
    return {
        "gaussian_total_correlation": gaussian_total_correlation(cov),
        "gaussian_wasserstein_correlation": wasserstein,
        "gaussian_wasserstein_correlation_norm": wasserstein / float(np.trace(cov)),
        "mutual_info_score": mean_pairwise_mutual_info(codes, num_bins=num_bins),
    }


def gaussian_total_correlation(cov: np.ndarray) -> float:
    """Total correlation (nats) of a zero-mean Gaussian with covariance ``cov`` (K, K)."""
    return float(0.5 * (np.sum(np.log(np.diag(cov))) - np.linalg.slogdet(cov)[1]))


def gaussian_wasserstein_correlation(cov: np.ndarray) -> float:
    """Squared W2 distance between N(0, cov) and N(0, diag(cov))."""
    root = scipy.linalg.sqrtm(cov * np.diag(cov)[:, None])
    return float(2 * np.trace(cov) - 2 * np.trace(root).real)


def mean_pairwise_mutual_info(codes: np.ndarray, *, num_bins: int = 20) -> float:
    """Mean discrete mutual information (nats) over ordered pairs of distinct codes."""
    discrete = histogram_discretize(np.asarray(codes), num_bins)
    m = mutual_info_matrix(discrete, discrete)
    np.fill_diagonal(m, 0.0)
    k = m.shape[0]
    return float(m.sum() / (k * k - k))
