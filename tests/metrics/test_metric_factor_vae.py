import numpy as np
import pytest

from diffdrl.metrics.factor_vae import active_codes, factor_vae, majority_accuracy
from helpers.metric_fakes import CodeImages, decode, identity, random_codes_for

SMALL = {"num_train": 300, "num_eval": 200, "num_variance_estimate": 1000}


def run(data, represent, seed=0, **kwargs):
    return factor_vae(data, represent, np.random.default_rng(seed), **{**SMALL, **kwargs})


def test_identity_scores_one():
    data = CodeImages()
    out = run(data, identity)
    assert out["factor_vae_custom.eval_accuracy"] == 1.0
    assert out["factor_vae_custom.train_accuracy"] == 1.0
    assert out["factor_vae_custom.num_active_codes"] == 4


def test_random_codes_score_near_chance():
    data = CodeImages()
    random_codes = random_codes_for(data)
    out = run(data, random_codes, num_train=1000, num_eval=1000)
    assert abs(out["factor_vae_custom.eval_accuracy"] - 1 / data.num_factors) < 0.1


def test_collapsed_codes_are_pruned():
    data = CodeImages()

    def represent(images):
        z = decode(images)
        return np.concatenate([z, np.full((len(z), 2), 3.0), 0.01 * z[:, :1]], 1).astype(np.float32)

    out = run(data, represent)
    assert out["factor_vae_custom.num_active_codes"] == 4  # constant and std-0.01 codes dropped
    assert out["factor_vae_custom.eval_accuracy"] == 1.0


def test_permutation_and_rescaling_change_nothing():
    data = CodeImages()
    order, scale = [2, 0, 3, 1], np.array([0.1, 3.0, 40.0, 0.5])  # stds stay above 0.05

    def mixed(images):
        z = decode(images)
        return np.stack([z[:, 0] + 0.5 * z[:, 1], z[:, 1], z[:, 2] - 0.3 * z[:, 3], z[:, 3]], 1)

    base = run(data, lambda x: mixed(x).astype(np.float32))
    moved = run(data, lambda x: (mixed(x)[:, order] * scale[order]).astype(np.float32))
    assert moved == pytest.approx(base, abs=1e-12)


def test_relative_pruning_is_scale_free():
    data = CodeImages()

    def tiny(images):  # an untrained encoder's spread: absolute pruning drops every code
        return (2e-3 * decode(images)).astype(np.float32)

    assert run(data, tiny)["factor_vae_custom.num_active_codes"] == 0
    assert run(data, tiny)["factor_vae_custom.eval_accuracy"] == 0.0
    relative = run(data, tiny, pruning="relative")
    assert relative == run(data, identity, pruning="relative")
    assert relative["factor_vae_custom_relative.eval_accuracy"] == 1.0
    assert relative["factor_vae_custom_relative.num_active_codes"] == 4


def test_same_seed_same_result_and_other_seed_differs():
    data = CodeImages()
    random_codes = random_codes_for(data)
    assert run(data, random_codes, seed=1) == run(data, random_codes, seed=1)
    assert run(data, random_codes, seed=1) != run(data, random_codes, seed=2)


def test_canonical_keys_and_arguments_are_validated():
    data = CodeImages()
    # Key naming is decided by the arguments; a canonical run would encode ~970k images.
    with pytest.raises(ValueError, match="pruning"):
        run(data, identity, pruning="median")
    with pytest.raises(ValueError, match="num_train"):
        run(data, identity, num_train=0)


def test_vote_helpers():
    assert active_codes(np.array([1.0, 0.0016, 0.0025, 0.0]), 0.05).tolist() == [True, False, True, False]
    assert active_codes(np.array([1e-6, 1e-10, 0.0]), 0.05, "relative").tolist() == [True, False, False]
    votes = np.array([[5, 0, 1], [1, 4, 3]])
    assert majority_accuracy(votes, votes.argmax(0)) == 12 / 14
