import numpy as np
import pytest

from diffdrl.metrics.pca import PerUnitPCA, pca_per_unit


def tokens_on_lines(rng, b=500, n=5, d=8, noise=1e-3):
    s = rng.normal(size=(b, n))
    direction = rng.normal(size=(n, d))
    offset = rng.normal(size=(n, d))
    x = s[..., None] * direction + offset + noise * rng.normal(size=(b, n, d))
    return s, x.astype(np.float32)


def test_recovers_the_scalar_on_a_line_up_to_sign_and_scale():
    s, x = tokens_on_lines(np.random.default_rng(0))
    z = pca_per_unit(x)
    assert z.shape == (500, 5) and z.dtype == np.float32
    for i in range(5):
        assert abs(np.corrcoef(z[:, i], s[:, i])[0, 1]) > 0.9999
    assert PerUnitPCA().fit(x).explained_variance_ratio_ == pytest.approx(np.ones(5), abs=1e-4)


def test_matches_scikit_learn_per_unit():
    from sklearn.decomposition import PCA

    _, x = tokens_on_lines(np.random.default_rng(1), noise=0.3)
    z = pca_per_unit(x)
    for i in range(x.shape[1]):
        ref = PCA(n_components=1).fit_transform(x[:, i].astype(np.float64))[:, 0]
        assert abs(np.corrcoef(z[:, i], ref)[0, 1]) > 0.9999
        assert np.std(z[:, i]) == pytest.approx(np.std(ref), rel=1e-4)


def test_fitted_projection_applies_to_new_tokens_and_validates_shape():
    s, x = tokens_on_lines(np.random.default_rng(2))
    pca = PerUnitPCA().fit(x[:400])
    held_out = pca.transform(x[400:])
    for i in range(5):
        assert abs(np.corrcoef(held_out[:, i], s[400:, i])[0, 1]) > 0.9999
    # Sign convention: the largest-magnitude loading of each component is positive.
    loadings = pca.components_[np.arange(5), np.abs(pca.components_).argmax(1)]
    assert (loadings > 0).all()
    with pytest.raises(ValueError, match="shape"):
        pca.transform(x[:, :3])
    with pytest.raises(ValueError, match=r"\(B, N, d\)"):
        pca_per_unit(x[:, 0])
