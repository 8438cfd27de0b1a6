"""EMA of the weights: known values of the warm-up decay, integer buffers copied, strict loading."""

import pytest
import torch
from torch import nn

from diffdrl.training.ema import EMA


def test_update_follows_the_warm_up_decay():
    model = nn.Linear(1, 1, bias=False)
    nn.init.zeros_(model.weight)
    ema = EMA(model, decay=0.999)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model, step=0)  # d = min(0.999, 1 / 10) = 0.1: shadow = 0.1 * 0 + 0.9 * 1
    assert ema.state_dict()["weight"].item() == pytest.approx(0.9)
    ema.update(model, step=10**6)  # d -> 0.999
    assert ema.state_dict()["weight"].item() == pytest.approx(0.9 + 0.001 * 0.1)


def test_integer_buffers_are_copied_not_averaged():
    model = nn.BatchNorm1d(2)
    ema = EMA(model, 0.9)
    model.num_batches_tracked += 7
    ema.update(model, step=100)
    assert ema.state_dict()["num_batches_tracked"].item() == 7


def test_loading_a_foreign_state_is_refused():
    ema = EMA(nn.Linear(2, 2), 0.9)
    with pytest.raises(ValueError, match="keys differ"):
        ema.load_state_dict({"weight": torch.zeros(2, 2)})
