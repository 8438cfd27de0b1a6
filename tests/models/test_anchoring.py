import warnings

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from sklearn.mixture import GaussianMixture

from diffdrl.models.anchoring import AnchoringConfig, GaussianAnchors
from diffdrl.models.mixture import Mixture, drop_small, em, fit_mixtures, initial_mixture, split


def blobs(centers: torch.Tensor, m: int, std: float, seed: int = 0) -> torch.Tensor:
    """x (N, m, d): token j of unit n drawn around centers[n, j % K] (so tokens 0..K-1 hit every blob)."""
    n, k, d = centers.shape
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(m) % k
    return centers[:, labels] + std * torch.randn(n, m, d, generator=g)


def first_tokens(n: int, k: int) -> torch.Tensor:
    return torch.arange(k).expand(n, k)


THREE = torch.tensor([[-0.9, -0.1, -0.5], [-0.1, -0.9, -0.5], [-0.5, -0.5, -0.9]])
CORNERS = torch.tensor([[-0.95, -0.7], [-0.05, -0.7], [-0.95, -0.3], [-0.05, -0.3]])  # wider than tall


def test_config_is_validated():
    with pytest.raises(ValueError, match="anchoring.covariance"):
        AnchoringConfig(covariance="spherical")
    with pytest.raises(ValueError, match="anchoring.init_components"):
        AnchoringConfig(init_components=40)
    with pytest.raises(ValueError, match="anchoring.reg_covar"):
        AnchoringConfig(reg_covar=0.0)
    with pytest.raises(ValueError, match="anchoring.lambda_mode"):
        AnchoringConfig(lambda_mode="adaptive")


@pytest.mark.parametrize("covariance", ["full", "diag"])
def test_em_recovers_well_separated_clusters(covariance):
    centers = torch.stack([THREE, THREE.flip(0), THREE.roll(1, 0)])  # (N=3, K=3, d=3)
    x = blobs(centers, 600, std=0.05)
    mix = em(x, initial_mixture(x, first_tokens(3, 3), covariance == "full"), 30, 1e-6)
    # identity covariances at the start blur the clusters, so components may trade places: match them
    order = torch.cdist(centers, mix.means).argmin(-1)  # (N, K) fitted component of each true cluster
    assert all(sorted(row) == [0, 1, 2] for row in order.tolist())
    mix = mix.take(order)
    torch.testing.assert_close(mix.means, centers, atol=0.02, rtol=0)
    torch.testing.assert_close(mix.weights, torch.full((3, 3), 1 / 3), atol=1e-4, rtol=0)
    variances = (
        mix.scales.square() if covariance == "diag" else (mix.scales @ mix.scales.mT).diagonal(0, -2, -1)
    )
    torch.testing.assert_close(variances, torch.full((3, 3, 3), 0.05**2), atol=1e-3, rtol=0)


@pytest.mark.parametrize("covariance", ["full", "diag"])
def test_em_equals_scikit_learn_from_the_same_start(covariance):
    centers = torch.stack([THREE, THREE.flip(0)])
    x = blobs(centers, 300, std=0.25)  # overlapping clusters: EM has work to do
    mix = em(x, initial_mixture(x, first_tokens(2, 3), covariance == "full"), 7, 1e-6)
    for i in range(2):
        eye = np.eye(3) if covariance == "full" else np.ones(3)
        reference = GaussianMixture(
            3, covariance_type=covariance, max_iter=7, tol=0, reg_covar=1e-6, init_params="random_from_data",
            weights_init=np.full(3, 1 / 3), means_init=x[i, :3].double().numpy(),
            precisions_init=np.stack([eye] * 3),
        )  # fmt: skip
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ConvergenceWarning: we stop after 7 steps on purpose
            reference.fit(x[i].double().numpy())
        torch.testing.assert_close(
            mix.means[i].double(), torch.from_numpy(reference.means_), atol=1e-4, rtol=0
        )
        torch.testing.assert_close(
            mix.weights[i].double(), torch.from_numpy(reference.weights_), atol=1e-4, rtol=0
        )


def test_batched_fit_equals_fitting_each_unit_alone():
    centers = torch.stack([CORNERS, CORNERS[[0, 1, 0, 1]], CORNERS[[2, 2, 2, 2]]])  # 4, 2 and 1 blobs
    x = blobs(centers, 400, std=0.02)
    config = AnchoringConfig(init_components=2, split_threshold=0.15)
    together, info = fit_mixtures(x, config.fit_settings(), first_tokens(3, 2))
    assert together.active.sum(1).tolist() == [4, 2, 2] and info["splits"] == 2  # the 1-blob unit keeps 2
    for i in range(3):
        alone, _ = fit_mixtures(x[i : i + 1], config.fit_settings(), first_tokens(1, 2))
        assert torch.equal(alone.active[0], together.active[i])
        keep = alone.active[0]
        torch.testing.assert_close(alone.means[0, keep], together.means[i, keep], atol=1e-5, rtol=0)
        torch.testing.assert_close(alone.scales[0, keep], together.scales[i, keep], atol=1e-5, rtol=0)
        torch.testing.assert_close(alone.weights[0], together.weights[i], atol=1e-5, rtol=0)


def one_cluster_over_two_blobs():
    x = blobs(CORNERS[None, :2], 400, std=0.03)  # blobs 0.9 apart: members lie ~0.45 from the mean
    return x, em(x, initial_mixture(x, first_tokens(1, 1), True), 10, 1e-6)


def test_a_spread_cluster_splits_into_its_two_blobs_with_half_the_weight_each():
    x, mix = one_cluster_over_two_blobs()
    grown, done = split(x, mix, AnchoringConfig(split_threshold=0.4, em_iterations=10))
    assert done == 1 and grown.active.tolist() == [[True, True]]
    assert grown.weights.tolist() == [[0.5, 0.5]]
    torch.testing.assert_close(grown.means[0].sort(0).values, CORNERS[:2].sort(0).values, atol=0.01, rtol=0)


def test_no_split_below_the_threshold_or_at_max_components():
    x, mix = one_cluster_over_two_blobs()
    assert split(x, mix, AnchoringConfig(split_threshold=0.5))[1] == 0
    assert split(x, mix, AnchoringConfig(split_threshold=0.4, init_components=1, max_components=1))[1] == 0


@pytest.mark.parametrize(
    ("max_splits", "max_components", "expected"), [(1, 32, 2), (2, 32, 4), (3, 32, 4), (3, 3, 3)]
)
def test_split_rounds_are_capped(max_splits, max_components, expected):
    x = blobs(CORNERS[None], 400, std=0.02)
    config = AnchoringConfig(
        init_components=1, max_components=max_components, max_splits=max_splits, split_threshold=0.15,
        min_cluster_size=0, em_iterations=10,
    )  # fmt: skip
    mix, info = fit_mixtures(x, config.fit_settings(), first_tokens(1, 1))
    assert int(mix.active.sum()) == expected and info["splits"] == expected - 1


def test_random_split_splits_about_half_of_the_clusters():
    x = blobs(CORNERS[None, :2].expand(60, -1, -1), 100, std=0.05)
    mix = em(x, initial_mixture(x, first_tokens(60, 2), True), 5, 1e-6)
    config = AnchoringConfig(random_split=True, em_iterations=3)
    _, done = split(x, mix, config, torch.Generator().manual_seed(0))
    assert 40 <= done <= 80  # of 120 clusters; binomial std 5.5


def test_filter_drops_light_components_and_keeps_each_units_heaviest():
    x = blobs(torch.full((2, 1, 2), -0.5), 100, std=0.05)
    means = torch.tensor(
        [[[-5.0, -5.0], [-0.5, -0.5], [-0.49, -0.5]], [[-5.0, -5.0], [-0.5, -0.5], [0.0, 0.0]]]
    )
    active = torch.tensor([[True, True, True], [True, True, False]])
    mix = Mixture(means, torch.eye(2).expand(2, 3, 2, 2) * 0.05, active / active.sum(1, keepdim=True), active)
    kept, dropped = drop_small(x, mix, min_size=10)  # the far components get no responsibility
    assert dropped == 2 and kept.active.tolist() == [[True, True], [True, False]]
    torch.testing.assert_close(kept.means[1, 0], means[1, 1])  # compacted: survivors first
    torch.testing.assert_close(kept.weights, torch.tensor([[0.5, 0.5], [1.0, 0.0]]))
    kept, dropped = drop_small(x, mix, min_size=101)  # nothing is heavy enough: keep the heaviest
    assert dropped == 3 and kept.active.sum(1).tolist() == [1, 1]
    assert kept.weights[:, 0].tolist() == [1.0, 1.0]


def fitted(covariance="full", **overrides) -> tuple[GaussianAnchors, torch.Tensor]:
    """Anchors fitted on raw tokens 3 + 10 x (M=600, N=3, d=3) with three blobs per unit."""
    centers = torch.stack([THREE, THREE.flip(0), THREE.roll(1, 0)])
    tokens = (3 + 10 * blobs(centers, 600, std=0.05)).transpose(0, 1)
    config = AnchoringConfig(**{"enabled": True, "covariance": covariance, **overrides})
    anchors = GaussianAnchors(config, 3, 3)
    anchors.fit(tokens, torch.Generator().manual_seed(0))
    return anchors, tokens


def most_likely_in_raw_space(anchors: GaussianAnchors, c: torch.Tensor) -> torch.Tensor:
    """Reference assignment by torch.distributions in the raw space: mu = high + span mu_x, L = span L_x."""
    span = anchors.token_span[:, None, None]
    if anchors.config.covariance == "full":
        gaussian = torch.distributions.MultivariateNormal(
            anchors.raw_means(), scale_tril=span[..., None] * anchors.scales
        )
    else:
        gaussian = torch.distributions.Independent(
            torch.distributions.Normal(anchors.raw_means(), span * anchors.scales), 1
        )
    log_p = gaussian.log_prob(c[:, :, None]) + anchors.weights.log()  # (B, N, K)
    return log_p.masked_fill(~anchors.active, -torch.inf).argmax(-1)


def test_one_component_means_are_mapped_back_to_the_raw_token_mean():
    anchors, tokens = fitted(init_components=1, max_splits=0)
    torch.testing.assert_close(anchors.raw_means()[:, 0], tokens.mean(0), atol=1e-4, rtol=0)


@pytest.mark.parametrize("covariance", ["full", "diag"])
def test_published_lambda_moves_each_token_toward_its_components_mean(covariance):
    anchors, tokens = fitted(covariance)
    c = tokens[:50].clone().requires_grad_(True)
    out, used = anchors.anchor(c)
    torch.testing.assert_close(anchors(c), out)
    index = anchors.assign(c)
    assert torch.equal(index, most_likely_in_raw_space(anchors, c.detach()))
    mu = anchors.raw_means()[torch.arange(3), index]  # (B, N, d)
    lam = 0.1 * torch.exp(-((c.detach() - mu) / (c.detach() + 1e-6)).abs().mean())
    torch.testing.assert_close(used, lam)
    torch.testing.assert_close(out - c, lam * (mu - c), atol=1e-5, rtol=0)
    out.sum().backward()
    torch.testing.assert_close(c.grad, torch.full_like(c, 1 - lam.item()))


def test_fixed_lambda():
    anchors, tokens = fitted(lambda_mode="fixed", fixed_lambda=0.25)
    c = tokens[:20]
    mu = anchors.raw_means()[torch.arange(3), anchors.assign(c)]
    anchored, lam = anchors.anchor(c)
    torch.testing.assert_close(anchors(c), 0.25 * mu + 0.75 * c)
    torch.testing.assert_close(anchored, 0.25 * mu + 0.75 * c)
    assert lam.item() == 0.25


def test_identity_before_the_first_fit_and_when_disabled():
    tokens = torch.randn(5, 3, 3)
    fresh = GaussianAnchors(AnchoringConfig(enabled=True), 3, 3)
    anchored, lam = fresh.anchor(tokens)
    assert fresh(tokens) is tokens and anchored is tokens and lam is None
    disabled, tokens = fitted(enabled=False)
    assert bool(disabled.fitted) and disabled(tokens) is tokens


def test_should_refit_on_the_schedule_only_when_enabled():
    anchors = GaussianAnchors(AnchoringConfig(enabled=True, refit_every=100), 3, 3)
    assert [s for s in range(0, 301) if anchors.should_refit(s)] == [100, 200, 300]
    assert not GaussianAnchors(AnchoringConfig(refit_every=100), 3, 3).should_refit(100)


@pytest.mark.parametrize("covariance", ["full", "diag"])
def test_a_fresh_module_loads_a_fitted_one_from_safetensors(covariance, tmp_path):
    anchors, tokens = fitted(covariance)
    save_file(anchors.state_dict(), tmp_path / "anchors.safetensors")
    fresh = GaussianAnchors(anchors.config, 3, 3)
    assert fresh(tokens) is tokens
    fresh.load_state_dict(load_file(tmp_path / "anchors.safetensors"))
    assert torch.equal(fresh.assign(tokens), anchors.assign(tokens))
    assert torch.equal(fresh(tokens), anchors(tokens))


def test_fit_subsamples_reproducibly_and_reports():
    a, _ = fitted(max_fit_tokens=200)
    b, tokens = fitted(max_fit_tokens=200)
    stats = a.fit(tokens, torch.Generator().manual_seed(0))
    assert stats["tokens"] == 200 and len(stats["components"]) == 3 and stats["fit_seconds"] > 0
    assert torch.equal(a.means, b.means) and torch.equal(a.active, b.active)
    with pytest.raises(ValueError, match="anchoring.init_components"):
        a.fit(tokens[:4], torch.Generator().manual_seed(0))


def test_loading_through_a_parent_module_marks_the_anchors_fitted():
    anchors, tokens = fitted()
    fresh = torch.nn.ModuleDict({"anchors": GaussianAnchors(anchors.config, 3, 3)})
    fresh.load_state_dict(torch.nn.ModuleDict({"anchors": anchors}).state_dict())
    assert torch.equal(fresh["anchors"](tokens), anchors(tokens))


def test_low_precision_tokens_keep_their_dtype():
    anchors, tokens = fitted()
    out = anchors(tokens.bfloat16())
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), anchors(tokens), atol=0.1, rtol=0.02)
