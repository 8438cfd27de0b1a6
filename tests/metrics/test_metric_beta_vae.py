import numpy as np

from diffdrl.metrics.beta_vae import beta_vae
from helpers.metric_fakes import CodeImages, identity, random_codes_for


def run(data, represent, seed=0):
    return beta_vae(data, represent, np.random.default_rng(seed), num_train=300, num_eval=200)


def test_identity_scores_one():
    data = CodeImages()
    out = run(data, identity)
    assert out["beta_vae_custom.eval_accuracy"] == 1.0
    assert out["beta_vae_custom.train_accuracy"] == 1.0


def test_random_codes_near_chance():
    data = CodeImages()
    random_codes = random_codes_for(data)
    assert abs(run(data, random_codes)["beta_vae_custom.eval_accuracy"] - 1 / data.num_factors) < 0.12


def test_same_seed_same_result_and_other_seed_differs():
    data = CodeImages()
    random_codes = random_codes_for(data)
    assert run(data, random_codes, 3) == run(data, random_codes, 3)
    assert run(data, random_codes, 3) != run(data, random_codes, 4)
