import pytest
import torch

from diffdrl.diffusion.draws import StepDraws
from diffdrl.diffusion.loss import epsilon_loss
from diffdrl.hspace.isometry import IsometryConfig, exact_trace_ratio, trace_ratio
from diffdrl.models.encdiff import EncDiff
from diffdrl.training.config import ConfigError, load_config


def test_hutchinson_estimate_equals_the_exact_trace_ratio_of_a_small_linear_map():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(5, 4, generator=gen, dtype=torch.float64) * torch.tensor(
        [3.0, 1.0, 0.5, 0.2], dtype=torch.float64
    )
    x = torch.zeros(1, 4, dtype=torch.float64)
    estimate = trace_ratio(lambda x: x @ a.T, x, samples=20_000, generator=gen, create_graph=False)
    exact = exact_trace_ratio(a)
    assert abs(float(estimate) - float(exact)) < 0.03 * float(exact)
    # an isometry (orthonormal columns, any scale) reaches the minimum 1/n
    q, _ = torch.linalg.qr(torch.randn(5, 4, generator=gen, dtype=torch.float64))
    torch.testing.assert_close(exact_trace_ratio(7 * q), torch.tensor(0.25, dtype=torch.float64))


@pytest.mark.parametrize("target", ["x", "tokens"])
def test_isometry_option_adds_a_differentiable_term_to_the_loss(target, hs_overrides):
    config = load_config(
        "tiny-cpu", [*hs_overrides, "model.isometry.weight=0.1", f"model.isometry.target={target}",
                     "model.isometry.probability=1.0"],
    )  # fmt: skip
    torch.manual_seed(0)
    model = EncDiff(config.model, resolution=16).train()
    x0 = torch.rand(2, 3, 16, 16) * 2 - 1
    loss, terms = model(x0, draws=StepDraws.seeded(0, 2))
    ratio = terms["isometry"]
    assert 0 < float(ratio) <= 1
    loss.backward()
    grads = [p.grad for p in model.denoiser.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    if target == "tokens":  # the term reaches the encoder through the tokens
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoder.parameters())


@pytest.mark.parametrize("weighting", ["none", "truncated_snr"])
def test_the_gated_step_is_the_epsilon_loss_at_high_noise_plus_weighted_l_iso(weighting, hs_overrides):
    """One diffusion formula: the gated step's diffusion term is the model's epsilon loss (its
    weighting included) at t drawn from the high-noise half, after the gate's draw."""
    config = load_config(
        "tiny-cpu", [*hs_overrides, "model.isometry.weight=0.1", "model.isometry.probability=1.0",
                     f"model.loss_weighting={weighting}"],
    )  # fmt: skip
    torch.manual_seed(0)
    model = EncDiff(config.model, resolution=16).train()
    x0 = torch.rand(2, 3, 16, 16) * 2 - 1
    loss, terms = model(x0, draws=StepDraws.seeded(0, 2))
    draws = StepDraws.seeded(0, 2)
    torch.rand((), generator=draws.generator)  # the gate
    T = model.schedule.timesteps
    t = draws.integers(T // 2, T)
    c = model.tokens(model.encode_input(x0))
    diffusion, _ = epsilon_loss(
        lambda x_t, t: model.denoiser(x_t, t, c), x0, schedule=model.schedule, kind=model.config.loss,
        draws=draws, weighting=weighting, t=t,
    )  # fmt: skip
    torch.testing.assert_close(loss, diffusion + 0.1 * terms["isometry"])


def test_isometry_off_by_default_and_validated(hs_overrides):
    assert IsometryConfig().weight == 0
    with pytest.raises(ConfigError, match="model.isometry.target"):
        load_config("tiny-cpu", [*hs_overrides, "model.isometry.target=h"])
    with pytest.raises(ConfigError, match="model.isometry.probability"):
        load_config("tiny-cpu", [*hs_overrides, "model.isometry.probability=0"])
