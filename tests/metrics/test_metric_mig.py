import numpy as np
import pytest

from diffdrl.metrics.discretize import discrete_entropy, histogram_discretize, mutual_info_matrix
from diffdrl.metrics.mig import mig, mig_from_codes
from helpers.metric_fakes import CodeImages, decode, identity, random_codes_for


def run(data, represent, num_train=3000):
    return mig(data, represent, np.random.default_rng(0), num_train=num_train)["mig_custom"]


def test_identity_high_random_near_zero():
    data = CodeImages()
    random_codes = random_codes_for(data)
    assert run(data, identity) > 0.9
    assert run(data, random_codes) < 0.05


def test_mixing_two_factors_lowers_mig():
    data = CodeImages()

    def mixed(images):
        z = decode(images)
        return np.stack([z[:, 0] + z[:, 1], z[:, 0] - z[:, 1], z[:, 2], z[:, 3]], 1).astype(np.float32)

    assert run(data, mixed) < run(data, identity) - 0.2


def test_permutation_and_rescaling_change_nothing():
    data = CodeImages()
    order, scale = [3, 0, 2, 1], np.array([0.5, 8.0, 0.25, 2.0])
    moved = run(data, lambda x: identity(x)[:, order] * scale)
    assert moved == pytest.approx(run(data, identity), abs=1e-12)


def test_canonical_key_and_sizes():
    data = CodeImages()
    assert list(mig(data, identity, np.random.default_rng(0))) == ["mig"]
    assert list(mig(data, identity, np.random.default_rng(0), num_train=5000)) == ["mig_fast"]


def test_discretisation_and_entropy_known_answers():
    x = np.array([[0.0], [0.5], [1.0], [1.0]])
    assert histogram_discretize(x, 2)[:, 0].tolist() == [1, 2, 2, 2]  # dlib: the max lands in the last bin
    y = np.repeat(np.arange(4), 25)[:, None]
    assert discrete_entropy(y)[0] == pytest.approx(np.log(4))
    assert mutual_info_matrix(y, y)[0, 0] == pytest.approx(np.log(4))
    assert mig_from_codes(np.concatenate([y, y * 0 + 1], 1).astype(float), y) == pytest.approx(1.0)
