"""The public surface: ``diffdrl.api`` re-exports the layer that owns each call, unchanged."""

import numpy as np

import diffdrl
from diffdrl import api
from diffdrl.models import representation as representation_module
from diffdrl.training import runs


def test_api_names_are_the_owning_modules_objects():
    for name in api.__all__:
        owner = runs if hasattr(runs, name) else representation_module
        assert getattr(api, name) is getattr(owner, name), name
    assert diffdrl.load_model is runs.load_model and diffdrl.__version__


def test_load_run_encodes_and_scores(trained_tiny):
    run = api.load_run(trained_tiny.path)
    codes, images = run.sample(6, seed=1)
    units = api.encode_images(run.model, images)
    assert units.shape == (6, api.unit_width(run.model)) and codes.shape == (6, len(run.data.factor_sizes))
    np.testing.assert_array_equal(units, api.encode_images(trained_tiny.model, images))
    scores = api.evaluate_run(run, ["mig"], preset="fast", progress=False)
    assert set(scores) == {"mig_fast"} and 0.0 <= scores["mig_fast"] <= 1.0
