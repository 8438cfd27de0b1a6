import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from diffdrl.metrics.tad import (
    auroc_exact,
    auroc_grid,
    entropy_reduction,
    tad_from_aurocs,
    tad_infodiffusion,
    tad_nashae,
)


def attributes_and_codes(rng, n=2000, num_attributes=4, extra_codes=2, noise=0.05):
    """One code per independent attribute (code = attribute + noise) plus pure-noise codes."""
    y = rng.integers(0, 2, size=(n, num_attributes))
    codes = np.concatenate([y + noise * rng.normal(size=y.shape), rng.normal(size=(n, extra_codes))], 1)
    return codes, y


def test_one_code_per_attribute_scores_half_per_attribute():
    codes, y = attributes_and_codes(np.random.default_rng(0))
    aurocs = auroc_exact(codes, y)
    assert aurocs.max(1) == pytest.approx(np.ones(4))
    score, captured = tad_from_aurocs(aurocs, y)
    assert captured == 4
    assert score == pytest.approx(4 * 0.5, abs=0.15)  # best 1.0, runner-up ~0.5 for each


def test_near_copy_attribute_is_filtered_by_the_entropy_rule():
    rng = np.random.default_rng(1)
    codes, y = attributes_and_codes(rng)
    copy = np.where(rng.random(len(y)) < 0.02, 1 - y[:, 0], y[:, 0])  # attribute 0 with 2% flips
    y5 = np.concatenate([y, copy[:, None]], 1)
    reduction = entropy_reduction(y5)
    assert reduction[0] > 0.2 and reduction[4] > 0.2 and (reduction[1:4] < 0.01).all()
    score, captured = tad_from_aurocs(auroc_exact(codes, y5), y5)
    assert captured == 3  # both members of the pair are dropped
    assert score == pytest.approx(3 * 0.5, abs=0.12)


def test_exact_auroc_matches_scikit_learn_with_ties():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, size=(300, 3))
    codes = np.round(rng.normal(size=(300, 4)) + y[:, :1], 1)  # rounded: many ties
    aurocs = auroc_exact(codes, y)
    for a in range(3):
        for code in range(4):
            auc = roc_auc_score(y[:, a], codes[:, code])
            assert aurocs[a, code] == pytest.approx(max(auc, 1 - auc))


def test_grid_auroc_close_to_exact_and_narrow_codes_score_half():
    codes, y = attributes_and_codes(np.random.default_rng(3), n=1000, noise=0.5)
    grid, exact = auroc_grid(codes, y), auroc_exact(codes, y)
    assert np.abs(grid - exact).max() < 0.02
    narrow = auroc_grid(codes * 0.01, y)  # every code's range is now <= 0.2 (NashAE's sigmoid-scale rule)
    assert (narrow == 0.5).all()


def test_named_variants_report_their_protocol():
    codes, y = attributes_and_codes(np.random.default_rng(4), n=2000, noise=0.2)
    nash = tad_nashae(codes, y)
    assert nash["tad_nashae.num_samples"] == 1000 and nash["tad_nashae.attributes_captured"] == 4
    info = tad_infodiffusion(codes, y, num_samples=2000)
    assert info["tad_infodiffusion.num_samples"] == 2000
    assert info["tad_infodiffusion.attributes_captured"] == 4 and info["tad_infodiffusion.score_std"] < 0.05
    assert nash["tad_nashae.score"] == pytest.approx(info["tad_infodiffusion.score"], abs=0.1)
    with pytest.raises(ValueError, match="10000 rows"):
        tad_infodiffusion(codes, y)
    with pytest.raises(ValueError, match="0/1"):
        tad_nashae(codes, 2 * y - 1)
