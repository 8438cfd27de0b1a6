import numpy as np
import pytest

from diffdrl.metrics.unsupervised import (
    gaussian_total_correlation,
    gaussian_wasserstein_correlation,
    mean_pairwise_mutual_info,
    unsupervised,
)
from helpers.metric_fakes import CodeImages, decode, identity


def test_gaussian_formulas_known_answers():
    rho = 0.8
    cov = np.array([[1.0, rho], [rho, 1.0]])
    assert gaussian_total_correlation(cov) == pytest.approx(-0.5 * np.log(1 - rho**2))
    assert gaussian_total_correlation(np.diag([1.0, 4.0])) == pytest.approx(0.0)
    assert gaussian_wasserstein_correlation(np.diag([1.0, 4.0])) == pytest.approx(0.0, abs=1e-12)
    # Unit variances: W2^2 = 2 tr(S) - 2 tr(S^1/2) = 4 - 2 (sqrt(1 + rho) + sqrt(1 - rho))
    expected = 4 - 2 * (np.sqrt(1 + rho) + np.sqrt(1 - rho))
    assert gaussian_wasserstein_correlation(cov) == pytest.approx(expected)


def test_sampled_total_correlation_matches_the_analytic_value():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 20000))
    assert gaussian_total_correlation(np.cov(np.stack([a, b]))) < 0.001
    codes = np.stack([a, 0.8 * a + 0.6 * b], 1)  # correlation 0.8
    assert gaussian_total_correlation(np.cov(codes, rowvar=False)) == pytest.approx(0.511, abs=0.01)
    assert mean_pairwise_mutual_info(codes) > 0.3
    assert mean_pairwise_mutual_info(np.stack([a, b], 1)) < 0.02


def test_independent_factors_vs_correlated_codes():
    data = CodeImages()

    def correlated(images):
        z = decode(images)
        return np.stack([z[:, 0], z[:, 0] + 0.2 * z[:, 1], z[:, 2]], 1).astype(np.float32)

    rng = np.random.default_rng
    independent = unsupervised(data, identity, rng(0), num_train=3000)
    assert independent["unsupervised_custom.gaussian_total_correlation"] < 0.01
    dependent = unsupervised(data, correlated, rng(0), num_train=3000)
    assert dependent["unsupervised_custom.gaussian_total_correlation"] > 0.5
    assert (
        dependent["unsupervised_custom.mutual_info_score"]
        > independent["unsupervised_custom.mutual_info_score"]
    )


def test_runs_on_a_dataset_without_factors():
    class Folder:  # unlabelled images: only __len__ and images_at
        def __len__(self):
            return 1000

        def images_at(self, index):
            return np.stack([index % 256, index // 256], 1).astype(np.uint8)[:, None, :, None]

    def represent(images):
        return images[:, 0, :, 0].astype(np.float32)

    out = unsupervised(Folder(), represent, np.random.default_rng(0), num_train=2000)
    assert set(out) == {
        f"unsupervised_custom.{k}"
        for k in (
            "gaussian_total_correlation",
            "gaussian_wasserstein_correlation",
            "gaussian_wasserstein_correlation_norm",
            "mutual_info_score",
        )
    }
