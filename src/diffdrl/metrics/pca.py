"""PCA-1 per unit: one scalar per token for vector-valued representations (B, N, d) -> (B, N).

EncDiff and DyGA score token-valued representations by fitting ``PCA(n_components=1)`` to each
unit's d-dimensional tokens over the evaluated samples and keeping that projection. This fits
all N units at once (batched eigendecomposition of the N d x d covariances), with
scikit-learn's sign convention (largest-magnitude loading positive) so results are deterministic.

A metric needs a fixed representation function, so fit once on a sample of images and wrap:
``pca = PerUnitPCA().fit(tokens_of(images)); represent = lambda x: pca.transform(tokens_of(x))``.
"""

from __future__ import annotations

import numpy as np


class PerUnitPCA:
    """First principal component of each unit's tokens.

    Attributes after ``fit``: ``mean_`` (N, d), ``components_`` (N, d) unit vectors,
    ``explained_variance_ratio_`` (N,) share of each unit's token variance kept by the scalar.
    """

    def fit(self, tokens: np.ndarray) -> PerUnitPCA:
        x = _check_tokens(tokens).astype(np.float64)
        if len(x) < 2:
            raise ValueError(f"need at least 2 samples to fit PCA, got {len(x)}")
        self.mean_ = x.mean(0)  # (N, d)
        centred = x - self.mean_
        cov = np.einsum("bnd,bne->nde", centred, centred) / (len(x) - 1)  # (N, d, d)
        variances, vectors = np.linalg.eigh(cov)  # ascending eigenvalues
        top = vectors[..., -1]  # (N, d)
        largest = np.take_along_axis(top, np.abs(top).argmax(-1, keepdims=True), -1)
        self.components_ = top * np.sign(largest)
        total = variances.sum(-1)
        self.explained_variance_ratio_ = np.divide(
            variances[..., -1], total, out=np.zeros_like(total), where=total > 0
        )
        return self

    def transform(self, tokens: np.ndarray) -> np.ndarray:
        """Scalars float32 (B, N): each unit's token projected on its first component."""
        if not hasattr(self, "components_"):
            raise RuntimeError("PerUnitPCA.transform called before fit")
        x = _check_tokens(tokens)
        if x.shape[1:] != self.mean_.shape:
            raise ValueError(
                f"tokens must have shape (B, {', '.join(map(str, self.mean_.shape))}), got {x.shape}"
            )
        return np.einsum("bnd,nd->bn", x - self.mean_, self.components_).astype(np.float32)

    def fit_transform(self, tokens: np.ndarray) -> np.ndarray:
        return self.fit(tokens).transform(tokens)


def pca_per_unit(tokens: np.ndarray) -> np.ndarray:
    """PCA-1 scalar (B, N) of each unit's tokens (B, N, d), fitted on these same samples."""
    return PerUnitPCA().fit_transform(tokens)


def _check_tokens(tokens: np.ndarray) -> np.ndarray:
    x = np.asarray(tokens)
    if x.ndim != 3:
        raise ValueError(f"tokens must have shape (B, N, d), got {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"tokens must be floats, got dtype {x.dtype}")
    return x
