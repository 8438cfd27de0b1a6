import numpy as np
import pytest
import torch

from diffdrl.data.ground_truth import to_model_input
from diffdrl.diffusion.samplers import SAMPLERS, sample


@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_samplers_are_seed_deterministic(trained_tiny, sampler):
    model = trained_tiny.model
    tokens = torch.randn(3, 3, 4)
    a = model.generate(tokens, sampler=sampler, steps=5, eta=1.0, seed=7)
    b = model.generate(tokens, sampler=sampler, steps=5, eta=1.0, seed=7)
    assert a.shape == (3, 3, 16, 16)
    assert torch.equal(a, b)
    assert not torch.equal(a, model.generate(tokens, sampler=sampler, steps=5, eta=1.0, seed=8))


def test_ddim_inversion_round_trip(trained_tiny):
    model = trained_tiny.model
    _, images = trained_tiny.sample(4, seed=3)
    x0 = to_model_input(images)
    tokens = model.tokens(model.encode(x0))
    x_T = model.invert(x0, tokens, steps=50)
    assert x_T.std() > 0.5  # it is noise-like, not the image
    back = model.generate(tokens, "ddim", steps=50, eta=0.0, x_T=x_T)
    assert (back - x0).square().mean() < 1e-3


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_ends_on_the_clean_image_under_an_oracle_denoiser(eta):
    """With the true noise as its prediction, DDIM's clean final step returns x0 exactly; the released
    code's end point (alpha_bar_0 < 1) leaves sqrt(beta_0) of noise in the picture."""
    betas = np.linspace(1e-3, 0.02, 100)
    abar = torch.from_numpy(np.cumprod(1 - betas)).float()
    x0 = torch.rand(2, 3, 8, 8) * 2 - 1

    def oracle(x_t, t):
        a = abar[t].view(-1, 1, 1, 1)
        return (x_t - a.sqrt() * x0) / (1 - a).sqrt()

    x_T = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(1)
    clean = sample(oracle, x_T, betas, "ddim", steps=10, eta=eta, generator=gen)
    assert (clean - x0).abs().max() < 1e-4
    noisy = sample(oracle, x_T, betas, "ddim", steps=10, eta=eta, generator=gen, clean_final_step=False)
    assert (noisy - x0).std() > 0.5 * betas[0] ** 0.5  # the residual noise the clean step removes
