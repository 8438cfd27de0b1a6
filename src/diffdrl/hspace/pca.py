"""Unsupervised h-space directions by PCA per timestep (Haas et al., FG 2024; semantic-diffusion).

Keep h_t of N samples at every step of the sampling grid, do one PCA per t, and take direction j
as the j-th principal component at every t, with signs aligned along t (each PC_j(t) is flipped to
agree with PC_j(t') at the previous, noisier grid step). An edit adds gamma sigma_j(t) PC_j(t) to
h_t, gamma in units of the standard deviation along that PC (ours: the paper uses raw gamma; the
scaled form makes one gamma mean the same at every t).

With N < dim(h) (the usual case: N ~ 500, dim(h) = C s^2) the PCA goes through the N x N kernel
matrix K = X X^T of the centred data X (N, D): K = V L V^T gives the PCs X^T V L^{-1/2}, unit-norm
and orthogonal, for O(N^2 D) instead of O(N D^2).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


def kernel_pca(x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mean (D,), components (k, D) orthonormal, variances (k,)) of rows x (N, D), in float64."""
    n, dim = x.shape
    if n < 2:
        raise ValueError(f"PCA needs at least 2 samples, got {n}")
    if not 1 <= k <= min(n - 1, dim):
        raise ValueError(f"k must be in [1, {min(n - 1, dim)}] for {n} samples of dimension {dim}, got {k}")
    x = x.double()
    mean = x.mean(0)
    xc = x - mean
    if n < dim:  # kernel trick
        eigval, eigvec = torch.linalg.eigh(xc @ xc.T)  # ascending
        eigval, eigvec = eigval.flip(0)[:k], eigvec.flip(1)[:, :k]
        if not (eigval > 1e-12 * eigval[0].clamp(min=1e-300)).all():
            raise ValueError(f"the data has fewer than k={k} directions of non-zero variance")
        components = (xc.T @ eigvec / eigval.sqrt()).T  # (k, D)
    else:
        eigval, eigvec = torch.linalg.eigh(xc.T @ xc)
        eigval, components = eigval.flip(0)[:k], eigvec.flip(1)[:, :k].T
    return mean, components, eigval / (n - 1)


@dataclass
class TimestepPCA:
    """PC_j(t) for every t of a sampling grid: ``components`` (S, k, D), ``std`` (S, k)."""

    t: np.ndarray  # (S,) grid timesteps, noisiest first
    mean: torch.Tensor  # (S, D)
    components: torch.Tensor  # (S, k, D), orthonormal rows per t, signs aligned along t
    std: torch.Tensor  # (S, k)
    h_shape: tuple[int, ...]  # (C, s, s)

    def index(self, t: int) -> int:
        hits = np.nonzero(self.t == t)[0]
        if not len(hits):
            raise ValueError(f"t={t} is not on this PCA's grid {self.t.tolist()}")
        return int(hits[0])

    def delta(self, j: int, gamma: float):
        """dh(h_t, t) = gamma sigma_j(t) PC_j(t), for ``edit_sample``."""
        if not 0 <= j < self.components.shape[1]:
            raise ValueError(f"direction must be in [0, {self.components.shape[1]}), got {j}")

        def dh(h: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            i = self.index(int(t[0]))
            v = gamma * self.std[i, j] * self.components[i, j]
            return v.to(h).view(1, *self.h_shape)

        return dh

    def project(self, h: torch.Tensor, i: int) -> torch.Tensor:
        """Coordinates (B, k) of h (B, C, s, s) on the PCs at grid index i."""
        flat = h.flatten(1).double() - self.mean[i]
        return (flat @ self.components[i].T).float()


def timestep_pca(t: np.ndarray, hs: torch.Tensor, k: int = 8) -> TimestepPCA:
    """Per-timestep PCA of h_t (S, N, C, s, s) captured along a grid ``t`` (S,), noisiest first."""
    if hs.ndim != 5 or hs.shape[0] != len(t):
        raise ValueError(f"hs must be (S={len(t)}, N, C, s, s), got {tuple(hs.shape)}")
    means, comps, stds = [], [], []
    for i in range(len(t)):
        mean, c, var = kernel_pca(hs[i].flatten(1), k)
        if comps:  # align signs with the previous (noisier) step
            sign = torch.sign((c * comps[-1]).sum(1))
            c = c * torch.where(sign == 0, 1.0, sign).unsqueeze(1)
        means.append(mean)
        comps.append(c)
        stds.append(var.sqrt())
    return TimestepPCA(
        np.asarray(t), torch.stack(means), torch.stack(comps), torch.stack(stds), tuple(hs.shape[2:])
    )
