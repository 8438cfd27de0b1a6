"""What the trainer does between steps: the held-out loss and token reliance (fixed draws, so a
repeat gives the same row), the EMA copy, and the metrics of a model."""

import torch

from diffdrl.data.ground_truth import to_model_input
from diffdrl.training.ema import EMA
from diffdrl.training.side_jobs import disentanglement_scores, ema_copy, held_out_loss


def test_held_out_loss_is_seeded_and_reliance_is_the_shuffled_rise(trained_tiny):
    model = trained_tiny.model
    was_training = model.training
    x = to_model_input(trained_tiny.sample(4, seed=1)[1])
    try:
        row = held_out_loss(model, x, seed=5)
        assert model.training  # put back in training mode
        assert row == held_out_loss(model, x, seed=5)  # same draws, same numbers
        assert row["eval/loss"] != held_out_loss(model, x, seed=6)["eval/loss"]
    finally:
        model.train(was_training)  # the session's run is shared: leave it as it was
    assert row["eval/loss"] > 0
    reliance = row["eval/loss_shuffled_tokens"] / row["eval/loss"] - 1.0
    assert row["eval/token_reliance"] == reliance


def test_a_model_without_tokens_has_no_reliance(trained_tiny):
    class Plain(torch.nn.Module):
        def forward(self, x, draws=None):
            return x.square().mean(), {}  # (loss, terms): the model contract

    row = held_out_loss(Plain(), torch.ones(2, 3, 4, 4), seed=0)
    assert row == {"eval/loss": 1.0}


def test_ema_copy_carries_the_ema_weights_in_eval_mode():
    model = torch.nn.Linear(3, 2)
    ema = EMA(model, decay=0.5)
    with torch.no_grad():
        model.weight.add_(1.0)
    copied = ema_copy(model, ema)
    assert not copied.training and copied is not model
    torch.testing.assert_close(copied.weight, ema.state_dict()["weight"], rtol=0, atol=0)
    assert not torch.equal(copied.weight, model.weight)


def test_disentanglement_scores_of_the_named_metrics(trained_tiny):
    scores = disentanglement_scores(trained_tiny.model, trained_tiny.data, ["mig"], seed=0, preset="fast")
    assert scores and all(k.startswith("mig_fast") for k in scores) and 0 <= scores["mig_fast"] <= 1
    assert scores == disentanglement_scores(trained_tiny.model, trained_tiny.data, ["mig"], 0, "fast")
