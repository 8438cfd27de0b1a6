"""Every registered sampler keeps the sampler contract: from a ``denoise(x_t, t) -> eps`` callable
and our beta table to images in [-1, 1], exactly right on a model that knows x0."""

import numpy as np
import pytest
import torch

from diffdrl.diffusion.samplers import DEFAULT_SAMPLING, SAMPLERS, make_scheduler, sample
from diffdrl.diffusion.schedule import ScheduleConfig, make_betas

BETAS = make_betas(ScheduleConfig(timesteps=100))
ALPHA_BAR = torch.from_numpy(np.cumprod(1 - BETAS)).float()


def oracle(x0: torch.Tensor):
    """The exact eps of an x_t whose clean image is ``x0``: every sampler must land on x0."""

    def denoise(x_t, t):
        a = ALPHA_BAR[t.long()].view(-1, 1, 1, 1)
        return (x_t - a.sqrt() * x0) / (1 - a).sqrt()

    return denoise


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_an_exact_denoiser_is_sampled_to_its_image(name):
    x0 = torch.rand(2, 3, 4, 4) * 1.6 - 0.8
    x_T = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    out = sample(oracle(x0), x_T, BETAS, name, steps=10, eta=0.0, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(out, x0, atol=2e-3, rtol=0)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_scheduler_uses_our_betas(name):
    scheduler = make_scheduler(name, BETAS)
    np.testing.assert_allclose(scheduler.betas.numpy(), BETAS, rtol=1e-6)


def test_unknown_sampler_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown sampler 'euler'.*ddim"):
        make_scheduler("euler", BETAS)
    with pytest.raises(ValueError, match="unknown sampler 'euler'.*ddim"):  # before any step runs
        sample(lambda x, t: x, torch.zeros(1, 3, 8, 8), BETAS, sampler="euler")
    assert DEFAULT_SAMPLING.sampler in SAMPLERS
