"""The LPIPS-free edit interval: known answers of ``choose_interval`` on a given curve, and the
distance curve of an exact and of a useless denoiser."""

import numpy as np
import pytest
import torch

from diffdrl.diffusion.schedule import ScheduleConfig, alpha_bar_of, make_betas
from diffdrl.hspace.interval import choose_interval, distance_curve, measure_interval

BETAS = make_betas(ScheduleConfig(timesteps=100))


def test_choose_interval_known_answers():
    t = np.array([40, 30, 20, 10, 0])  # a DDIM grid, high noise first
    d = np.array([0.9, 0.5, 0.3, 0.04, 0.0])
    chosen = choose_interval(t, d)
    assert (chosen["t_edit"], chosen["t_boost"]) == (30, 10)  # first d >= 0.33, last d <= 0.05
    assert chosen["reached_edit_threshold"] and chosen["curve"] == {"t": t.tolist(), "d": d.tolist()}
    never = choose_interval(t, np.full(5, 0.1), edit_threshold=0.5, boost_threshold=0.01)
    assert (never["t_edit"], never["t_boost"]) == (40, -1) and not never["reached_edit_threshold"]
    capped = choose_interval(t, np.array([0.01, 0.01, 0.5, 0.5, 0.5]), 0.33, 0.05)
    assert capped["t_edit"] == 0 and capped["t_boost"] == 0  # t_boost never above t_edit


def test_choose_interval_refuses_inverted_thresholds():
    with pytest.raises(ValueError, match="boost_threshold < edit_threshold"):
        choose_interval(np.arange(3), np.zeros(3), edit_threshold=0.1, boost_threshold=0.2)


def oracle(x0):
    abar = torch.from_numpy(alpha_bar_of(BETAS)).float()

    def denoise(x_t, t):
        a = abar[t].view(-1, 1, 1, 1)
        return (x_t - a.sqrt() * x0) / (1 - a).sqrt()

    return denoise


def test_an_exact_denoiser_keeps_the_image_at_every_t():
    x0 = torch.rand(4, 3, 8, 8) * 2 - 1
    t, d = distance_curve(oracle(x0), x0, BETAS, steps=10)
    assert len(t) == len(d) == 10 and np.all(d < 1e-8)
    chosen = measure_interval(oracle(x0), x0, BETAS, steps=10)
    assert not chosen["reached_edit_threshold"] and chosen["t_boost"] == chosen["t_edit"] == int(t.max())


def test_a_zero_denoiser_loses_the_image_as_noise_grows():
    x0 = torch.rand(4, 3, 8, 8) * 2 - 1
    t, d = distance_curve(lambda x, s: torch.zeros_like(x), x0, BETAS, steps=10)
    by_t = d[np.argsort(t)]
    assert by_t[0] < 0.05 and by_t[-1] > 0.33
    chosen = measure_interval(lambda x, s: torch.zeros_like(x), x0, BETAS, steps=10)
    assert chosen["reached_edit_threshold"] and chosen["t_boost"] < chosen["t_edit"]


def test_the_curve_needs_two_different_images():
    with pytest.raises(ValueError, match="at least 2 images"):
        distance_curve(lambda x, s: x, torch.zeros(1, 3, 4, 4), BETAS)
    with pytest.raises(ValueError, match="all identical"):
        distance_curve(lambda x, s: x, torch.zeros(2, 3, 4, 4), BETAS)
