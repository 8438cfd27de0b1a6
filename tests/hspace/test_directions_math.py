import numpy as np
import pytest
import torch

from diffdrl.hspace.jacobian import full_jacobian_directions, power_iteration
from diffdrl.hspace.pca import kernel_pca, timestep_pca


def _known_map(m=12, n=9, seed=0):
    """A linear map with distinct singular values 9, 8, ..., 1 and known right-singular vectors."""
    gen = torch.Generator().manual_seed(seed)
    u, _ = torch.linalg.qr(torch.randn(m, n, generator=gen, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    s = torch.arange(n, 0, -1, dtype=torch.float64)
    return (u * s) @ v.T, s, v


@pytest.mark.parametrize("fit", ["power", "full"])
def test_jacobian_directions_recover_the_top_singular_vectors_of_a_known_linear_map(fit):
    a, s, v = _known_map()
    f = lambda x: x @ a.T  # noqa: E731  rows independent, J = A
    x = torch.zeros(1, 9, dtype=torch.float64)
    if fit == "power":
        d = power_iteration(f, x, rank=3, iters=200, tol=1e-10)
    else:
        d = full_jacobian_directions(f, x, rank=3)
    torch.testing.assert_close(d.singular, s[:3])
    overlap = (d.inputs @ v[:, :3]).abs()  # |<v_est_i, v_j>| = identity
    torch.testing.assert_close(overlap, torch.eye(3, dtype=torch.float64), atol=1e-6, rtol=0)


def test_power_iteration_on_a_batch_finds_the_summed_gram_eigenvectors():
    a, _, _ = _known_map(seed=1)
    b, _, _ = _known_map(seed=2)
    x = torch.zeros(2, 9, dtype=torch.float64)
    mats = torch.stack([a, b])
    f = lambda x: torch.einsum("bmn,bn->bm", mats.repeat(len(x) // 2, 1, 1), x)  # noqa: E731
    d = power_iteration(f, x, rank=2, iters=300, tol=1e-12)
    eigval, eigvec = torch.linalg.eigh(a.T @ a + b.T @ b)
    torch.testing.assert_close(
        (d.inputs @ eigvec[:, -2:].flip(1)).abs(), torch.eye(2, dtype=torch.float64), atol=1e-6, rtol=0
    )
    torch.testing.assert_close(d.singular**2, eigval[-2:].flip(0))


def test_power_iteration_rejects_bad_rank():
    with pytest.raises(ValueError, match="rank must be in"):
        power_iteration(lambda x: x, torch.zeros(1, 4), rank=5)


@pytest.mark.parametrize("n", [6, 40])  # N < D (kernel trick) and N > D
def test_kernel_pca_matches_the_covariance_eigenvectors(n):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, 10, generator=gen, dtype=torch.float64) * torch.linspace(
        3, 0.5, 10, dtype=torch.float64
    )
    mean, comps, var = kernel_pca(x, 4)
    torch.testing.assert_close(comps @ comps.T, torch.eye(4, dtype=torch.float64))
    cov = torch.cov(x.T)
    eigval, eigvec = torch.linalg.eigh(cov)
    torch.testing.assert_close(var, eigval.flip(0)[:4])
    torch.testing.assert_close(
        (comps @ eigvec.flip(1)[:, :4]).abs(), torch.eye(4, dtype=torch.float64), atol=1e-8, rtol=0
    )


def test_timestep_pca_is_orthonormal_per_timestep_with_signs_aligned():
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(20, 2, 3, 3, generator=gen) * torch.linspace(2, 0.2, 18).view(1, 2, 3, 3)
    hs = torch.stack([base + 0.01 * s * torch.randn(base.shape, generator=gen) for s in range(5)])
    pca = timestep_pca(np.array([40, 30, 20, 10, 0]), hs, k=3)
    for i in range(5):
        c = pca.components[i]
        torch.testing.assert_close(c @ c.T, torch.eye(3, dtype=torch.float64), atol=1e-10, rtol=0)
    for i in range(1, 5):  # neighbouring steps point the same way
        assert ((pca.components[i] * pca.components[i - 1]).sum(1) > 0.9).all()
    with pytest.raises(ValueError, match="not on this PCA's grid"):
        pca.delta(0, 1.0)(torch.zeros(1, 2, 3, 3), torch.tensor([5]))
    with pytest.raises(ValueError, match="k must be in"):
        kernel_pca(torch.randn(3, 5), 3)
