import numpy as np

from diffdrl.metrics.sap import sap, sap_matrix
from helpers.metric_fakes import CodeImages, decode, identity, random_codes_for


def run(data, represent):
    return sap(data, represent, np.random.default_rng(0), num_train=1000, num_test=500)["sap_custom"]


def test_identity_beats_random():
    data = CodeImages()
    random_codes = random_codes_for(data)
    good, bad = run(data, identity), run(data, random_codes)
    assert good > 0.2
    assert bad < 0.05


def test_mixing_lowers_sap():
    data = CodeImages()

    def mixed(images):  # a and b only readable together
        z = decode(images)
        return np.stack([z[:, 0] + z[:, 1], z[:, 0] - z[:, 1], z[:, 2], z[:, 3]], 1).astype(np.float32)

    assert run(data, mixed) < run(data, identity) - 0.05


def test_binary_factor_read_from_its_code():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, size=(400, 1))
    x = np.concatenate([y + 0.1 * rng.normal(size=(400, 1)), rng.normal(size=(400, 1))], 1)
    s = sap_matrix(x[:300], y[:300], x[300:], y[300:])
    assert s[0, 0] > 0.99 and abs(s[1, 0] - 0.5) < 0.15
