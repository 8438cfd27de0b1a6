import numpy as np
import pytest
import torch

from diffdrl.diffusion.samplers import sample
from diffdrl.diffusion.schedule import make_betas
from diffdrl.hspace.asymmetric import edit_sample
from diffdrl.hspace.bottleneck import HSpace, denoiser_of, null_tokens, unet_of


def _inputs(model, b=2):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(b, 3, 16, 16, generator=gen)
    return x, model.tokens(model.encode(x))


@torch.no_grad()
def test_capture_returns_the_ordinary_output_and_decode_of_h_reproduces_it(tiny_model):
    x, c = _inputs(tiny_model)
    space, denoise = HSpace(unet_of(tiny_model)), denoiser_of(tiny_model, c)
    t = torch.tensor([5, 40])
    state = space.capture(denoise, x, t)
    assert torch.equal(state.eps, denoise(x, t))
    assert state.h.shape == (2, 16, 8, 8)
    assert torch.equal(space.decode(state, state.h), state.eps)
    # a real edit changes eps, and the decoder depends on h (not only on the skips)
    assert not torch.allclose(space.decode(state, state.h + 1.0), state.eps)


@torch.no_grad()
def test_bottleneck_matches_the_captured_h(tiny_model):
    x, c = _inputs(tiny_model)
    space, denoise = HSpace(unet_of(tiny_model)), denoiser_of(tiny_model, c)
    t = torch.tensor([5, 40])
    torch.testing.assert_close(space.bottleneck(denoise, x, t), space.capture(denoise, x, t).h)


@torch.no_grad()
def test_zero_edit_reproduces_the_unedited_sample_exactly(tiny_model):
    x_T, c = _inputs(tiny_model)
    space, denoise, betas = (
        HSpace(unet_of(tiny_model)),
        denoiser_of(tiny_model, c),
        make_betas(tiny_model.config.schedule),
    )
    kwargs = dict(steps=10, t_edit=20, t_boost=8)
    plain = edit_sample(
        space, denoise, x_T, betas, None, generator=torch.Generator().manual_seed(3), **kwargs
    )
    zero = edit_sample(
        space,
        denoise,
        x_T,
        betas,
        torch.zeros(1, 16, 8, 8),
        generator=torch.Generator().manual_seed(3),
        **kwargs,
    )
    assert torch.equal(plain, zero)
    edited = edit_sample(
        space,
        denoise,
        x_T,
        betas,
        torch.ones(1, 16, 8, 8),
        generator=torch.Generator().manual_seed(3),
        **kwargs,
    )
    assert not torch.allclose(plain, edited)


@torch.no_grad()
def test_edit_sampler_without_edit_or_boosting_is_diffusers_ddim(tiny_model):
    x_T, c = _inputs(tiny_model)
    betas = make_betas(tiny_model.config.schedule)
    denoise = denoiser_of(tiny_model, c)
    ours = edit_sample(HSpace(unet_of(tiny_model)), denoise, x_T, betas, steps=10)
    reference = sample(denoise, x_T, betas, "ddim", steps=10, eta=0.0)
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-5)


def test_null_tokens_and_errors(tiny_model):
    assert null_tokens(tiny_model, 2).abs().sum() == 0
    with pytest.raises(TypeError, match="no diffusers U-Net"):
        unet_of(torch.nn.Linear(2, 2))
    x, c = _inputs(tiny_model)
    space, denoise = HSpace(unet_of(tiny_model)), denoiser_of(tiny_model, c)
    state = space.capture(denoise, x, torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="bottleneck's shape"):
        space.decode(state, torch.zeros(2, 16, 4, 4))
    betas = make_betas(tiny_model.config.schedule)
    with pytest.raises(ValueError, match="t_edit must be in \\[0, 50\\)"):
        edit_sample(space, denoise, x, betas, steps=5, t_edit=50)
    with pytest.raises(ValueError, match="t_boost must be in"):
        edit_sample(space, denoise, x, betas, steps=5, t_edit=10, t_boost=20)
    assert np.isfinite(betas).all()
