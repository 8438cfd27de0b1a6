"""The supervised h-space workflow's own pieces: the checks on the factor, the classifier cache,
a DeltaBlock trained, stored and reused, and the edit-fidelity rates."""

import numpy as np
import pytest
import torch

from diffdrl.hspace import learned
from diffdrl.hspace.directions import sources

STEPS = 3


def test_require_and_check_factor(trained_tiny):
    data = trained_tiny.data
    learned.require_factors(data, "a test")
    assert learned.check_factor(data, "shape", 1) == data.factor_names.index("shape")
    with pytest.raises(ValueError, match="shape"):
        learned.check_factor(data, "shape", data.factor_sizes[data.factor_names.index("shape")])
    with pytest.raises(ValueError, match="no_such_factor"):
        learned.check_factor(data, "no_such_factor")
    with pytest.raises(ValueError, match="a test"):
        learned.require_factors(object(), "a test")


def test_factor_rates_known_answer():
    before = np.array([[0, 1, 2], [1, 1, 2], [2, 0, 0], [0, 0, 1]])
    after = np.array([[1, 1, 2], [1, 1, 0], [0, 0, 0], [0, 1, 1]])
    rates = learned.factor_rates(before, after, factor=0)
    assert rates == {"target_changed": 0.5, "others_kept": 0.75}
    assert learned.factor_rates(before[:, :1], after[:, :1], 0)["others_kept"] == 1.0


def test_a_classifier_is_trained_once_then_read_back(trained_tiny, tmp_path):
    model, data = trained_tiny.model, trained_tiny.data
    first = learned.classifier_for(model, data, tmp_path, "clean", steps=2, images=16)
    assert (tmp_path / "classifier_clean.json").is_file()
    again = learned.classifier_for(model, data, tmp_path, "clean", steps=50, images=16)  # not retrained
    for (name, a), b in zip(first.state_dict().items(), again.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    accuracy = learned.accuracy_of(tmp_path, "clean")
    assert set(accuracy) == set(data.factor_names) and all(0 <= a <= 1 for a in accuracy.values())
    assert learned.accuracy_of(tmp_path, "noisy") == {}
    with pytest.raises(ValueError, match="classifier kind"):
        learned.classifier_for(model, data, tmp_path, "fuzzy")


def test_a_delta_block_is_stored_reused_and_zero_at_coefficient_zero(trained_tiny, tmp_path):
    model, data = trained_tiny.model, trained_tiny.data
    clf = learned.classifier_for(model, data, tmp_path, "clean", steps=2, images=16)
    src = sources(model, trained_tiny.sample(2, seed=3)[1], STEPS)
    block, info = learned.delta_for(model, src, clf, tmp_path, "shape", 1, 10, steps=STEPS, epochs=1)
    assert info["t_edit"] == 10 and (tmp_path / "delta_shape_1.safetensors").is_file()
    reused, reused_info = learned.delta_for(model, src, clf, tmp_path, "shape", 1, 10, steps=STEPS)
    fixed = ("factor", "value", "t_edit", "steps", "lambda_recon", "epochs")
    assert {k: reused_info[k] for k in fixed} == {k: info[k] for k in fixed}
    for a, b in zip(block.state_dict().values(), reused.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    plain = learned.delta_edit(model, src, block, info, 0.0, STEPS)
    edited = learned.delta_edit(model, src, block, info, 1.0, STEPS)
    assert plain.shape == edited.shape == src.x0.shape and plain.abs().max() <= 1
    from diffdrl.hspace.directions import token_edit

    torch.testing.assert_close(plain, token_edit(model, src, src.tokens, STEPS))  # coefficient 0: no edit
