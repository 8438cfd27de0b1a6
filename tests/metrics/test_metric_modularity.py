import numpy as np
import pytest

from diffdrl.metrics.modularity import modularity, modularity_explicitness
from helpers.metric_fakes import CodeImages, decode, identity, random_codes_for


def run(data, represent):
    out = modularity_explicitness(data, represent, np.random.default_rng(0), num_train=1500, num_test=500)
    return out["modularity_custom"], out["explicitness_custom"], out["explicitness_custom.train"]


def test_formula_known_answers():
    assert modularity(np.eye(3)) == pytest.approx(1.0)
    assert modularity(np.ones((3, 3))) == pytest.approx(0.0)  # each code equally about every factor
    assert modularity(np.zeros((2, 3))) == 0.0  # codes sharing nothing score 0 (dlib)
    # theta = 4, sum = 5: delta = 1 / (4 * 2), modularity 1 - 1/8
    assert modularity(np.array([[2.0, 1.0, 0.0]])) == pytest.approx(7 / 8)


def test_identity_scores_high_random_low():
    data = CodeImages()
    random_codes = random_codes_for(data)
    mod, exp, exp_train = run(data, identity)
    assert mod > 0.95 and exp > 0.95 and exp_train > 0.95
    mod_r, exp_r, _ = run(data, random_codes)
    assert mod_r < mod - 0.3
    assert abs(exp_r - 0.5) < 0.1


def test_constant_code_does_not_break_explicitness():
    data = CodeImages()

    def represent(images):
        z = decode(images)
        return np.concatenate([z, np.ones((len(z), 1))], 1).astype(np.float32)

    assert run(data, represent)[1] > 0.95
