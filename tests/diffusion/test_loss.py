import pytest
import torch

from diffdrl.diffusion.draws import StepDraws
from diffdrl.diffusion.loss import epsilon_loss, snr_weight
from diffdrl.diffusion.schedule import NoiseSchedule, ScheduleConfig


def constant_denoiser(value: float):
    return lambda x_t, t: torch.full_like(x_t, value)


@pytest.mark.parametrize("kind", ["l1", "mse"])
def test_truncated_snr_weights_only_high_noise_steps(kind):
    sched = NoiseSchedule(ScheduleConfig())
    t = torch.arange(sched.timesteps)
    w = snr_weight(sched, t, kind)
    snr = sched.alpha_bar / (1 - sched.alpha_bar)
    assert torch.all(w[snr >= 1] == 1.0)  # low noise: the plain epsilon loss
    high = snr < 1
    exponent = 1.0 if kind == "mse" else 0.5
    torch.testing.assert_close(w[high], (1 / snr[high]) ** exponent)
    assert torch.all(w.diff() >= 0) and w[-1] > 10  # grows with the noise level


@pytest.mark.parametrize("kind", ["l1", "mse"])
def test_weighted_loss_is_the_x0_error_at_high_noise(kind):
    """At a step with SNR < 1 the weighted epsilon error equals the error of the implied x0."""
    sched = NoiseSchedule(ScheduleConfig(high_noise_bias=1e6))  # every draw at t = T - 1
    x0 = torch.rand(4, 3, 8, 8) * 2 - 1
    loss, terms = epsilon_loss(
        constant_denoiser(0.3),
        x0,
        schedule=sched,
        kind=kind,
        draws=StepDraws.seeded(0, 4),
        weighting="truncated_snr",
    )
    draws = StepDraws.seeded(0, 4)
    t = sched.sample_timesteps(draws)
    eps = torch.randn(x0.shape, generator=draws.generator)
    assert torch.all(t == sched.timesteps - 1)
    x_t = sched.q_sample(x0, t, eps)
    a = sched.alpha_bar[-1]
    x0_hat = (x_t - (1 - a).sqrt() * 0.3) / a.sqrt()
    err = (x0_hat - x0).abs() if kind == "l1" else (x0_hat - x0).square()
    torch.testing.assert_close(loss, err.mean(), rtol=1e-4, atol=0)
    assert terms == {}  # no regulariser, no terms


def test_unweighted_loss_is_unchanged_and_unknown_weightings_are_refused():
    sched = NoiseSchedule(ScheduleConfig())
    x0 = torch.zeros(2, 3, 4, 4)
    plain, _ = epsilon_loss(
        constant_denoiser(0.0), x0, schedule=sched, kind="mse", draws=StepDraws.seeded(3, 2)
    )
    eps = torch.randn(x0.shape, generator=_after_timesteps(sched, 3))
    assert plain.item() == pytest.approx(eps.square().mean().item())
    with pytest.raises(ValueError, match="weighting must be one of"):
        epsilon_loss(constant_denoiser(0.0), x0, schedule=sched, weighting="min_snr")


def _after_timesteps(sched: NoiseSchedule, seed: int) -> torch.Generator:
    draws = StepDraws.seeded(seed, 2)
    sched.sample_timesteps(draws)
    return draws.generator


@pytest.mark.parametrize("weighting", ["none", "truncated_snr"])
def test_regularisers_are_added_with_their_weights_at_the_drawn_batch(weighting):
    """The loss adds weight * R(x_t, t) at the very x_t and t of its own draw (given t kept), one
    L1 formula whatever the regulariser, and reports each R by name."""
    sched = NoiseSchedule(ScheduleConfig())
    x0 = torch.rand(3, 3, 4, 4) * 2 - 1
    t = torch.tensor([5, 500, 999])
    seen = {}

    def regulariser(x_t, t_seen):
        seen["x_t"], seen["t"] = x_t, t_seen
        return x_t.square().mean()

    args = dict(schedule=sched, kind="l1", weighting=weighting, t=t)
    plain, none = epsilon_loss(constant_denoiser(0.1), x0, draws=StepDraws.seeded(4, 3), **args)
    total, terms = epsilon_loss(
        constant_denoiser(0.1),
        x0,
        draws=StepDraws.seeded(4, 3),
        regularisers={"r": (0.5, regulariser)},
        **args,
    )
    assert none == {} and torch.equal(seen["t"], t) and set(terms) == {"r"}
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(4))  # t given: eps is the first draw
    torch.testing.assert_close(seen["x_t"], sched.q_sample(x0, t, eps))
    torch.testing.assert_close(terms["r"], seen["x_t"].square().mean())
    torch.testing.assert_close(total, plain + 0.5 * terms["r"])
    assert not terms["r"].requires_grad
