import numpy as np
import pytest
import torch

from diffdrl.diffusion.draws import StepDraws
from diffdrl.diffusion.schedule import SCHEDULES, NoiseSchedule, ScheduleConfig, make_betas


@pytest.mark.parametrize("name", SCHEDULES)
def test_schedules_are_valid_and_noise_monotonically(name):
    betas = make_betas(ScheduleConfig(name=name))
    assert betas.shape == (1000,) and betas.dtype == np.float64
    assert np.all(betas > 0) and np.all(betas < 1)
    alpha_bar = np.cumprod(1 - betas)
    assert np.all(np.diff(alpha_bar) < 0)
    assert alpha_bar[-1] < 0.05  # (almost) pure noise at t = T-1


def test_schedule_endpoints_match_the_formulas():
    b0, b1 = 0.0015, 0.0155
    lin = make_betas(ScheduleConfig(name="linear"))
    assert lin[0] == pytest.approx(b0) and lin[-1] == pytest.approx(b1)
    sq = make_betas(ScheduleConfig(name="sqrt_linear"))
    assert np.allclose(np.diff(sq), (b1 - b0) / 999)
    assert make_betas(ScheduleConfig(name="sqrt"))[0] == pytest.approx(b0**0.5)
    cos = make_betas(ScheduleConfig(name="cosine"))
    assert cos.max() <= 0.999


def test_q_sample_matches_the_closed_form():
    sched = NoiseSchedule(ScheduleConfig())
    x0, eps = torch.randn(3, 2, 4, 4), torch.randn(3, 2, 4, 4)
    t = torch.tensor([0, 500, 999])
    x_t = sched.q_sample(x0, t, eps)
    abar = np.cumprod(1 - make_betas(ScheduleConfig()))
    for i, ti in enumerate(t.tolist()):
        expected = np.sqrt(abar[ti]) * x0[i].numpy() + np.sqrt(1 - abar[ti]) * eps[i].numpy()
        np.testing.assert_allclose(x_t[i].numpy(), expected, rtol=1e-5, atol=1e-6)


def test_bad_schedule_config_is_rejected():
    with pytest.raises(ValueError, match="schedule.name"):
        ScheduleConfig(name="quadratic")
    with pytest.raises(ValueError, match="beta_start"):
        ScheduleConfig(beta_start=0.1, beta_end=0.01)


@pytest.mark.parametrize("bias", [0.0, 1.0, 3.0])
def test_training_timesteps_have_density_proportional_to_t_power_bias(bias):
    sched = NoiseSchedule(ScheduleConfig(high_noise_bias=bias))
    t = sched.sample_timesteps(StepDraws.seeded(0, 200_000))
    assert t.min() >= 0 and t.max() <= 999 and t.dtype == torch.long
    # the fraction above T/2 is 1 - 0.5 ** (1 + bias): 0.5 uniform, 0.75 linear, 0.94 cubic
    assert (t >= 500).float().mean().item() == pytest.approx(1 - 0.5 ** (1 + bias), abs=0.01)


def test_negative_high_noise_bias_is_rejected():
    with pytest.raises(ValueError, match="schedule.high_noise_bias"):
        ScheduleConfig(high_noise_bias=-1)


@pytest.mark.parametrize("mix", [0.0, 0.2, 0.5, 1.0])
def test_uniform_fraction_mixes_the_biased_density_with_the_uniform_one(mix):
    sched = NoiseSchedule(ScheduleConfig(high_noise_bias=2.0, uniform_fraction=mix))
    t = sched.sample_timesteps(StepDraws.seeded(0, 400_000))
    assert t.min() >= 0 and t.max() <= 999
    # P(t < 100) = mix * 0.1 + (1 - mix) * 0.1 ** 3 and P(t >= 500) = mix * 0.5 + (1 - mix) * 0.875
    assert (t < 100).float().mean().item() == pytest.approx(mix * 0.1 + (1 - mix) * 1e-3, abs=0.002)
    assert (t >= 500).float().mean().item() == pytest.approx(mix * 0.5 + (1 - mix) * 0.875, abs=0.003)


def test_uniform_fraction_zero_draws_what_the_bias_alone_drew():
    """Runs made before the option existed resume with the same timesteps."""
    a = NoiseSchedule(ScheduleConfig(high_noise_bias=2.0)).sample_timesteps(StepDraws.seeded(3, 64))
    u = torch.rand(64, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    assert torch.equal(a, (1000 * u ** (1 / 3)).long().clamp(max=999))


def test_uniform_fraction_outside_0_1_is_rejected():
    with pytest.raises(ValueError, match=r"schedule.uniform_fraction must be in \[0, 1\], got 1.5"):
        ScheduleConfig(uniform_fraction=1.5)
