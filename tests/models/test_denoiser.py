"""The denoiser eps_theta(x_t, t, c): a diffusers U-Net behind a small config."""

import pytest
import torch

from diffdrl.models.denoiser import Denoiser, DenoiserConfig, UNetShape

TINY = dict(channels=(8, 16), cross_attention=(False, True), heads=2, norm_groups=4, layers_per_block=1)


def test_denoiser_output_depends_on_the_tokens():
    torch.manual_seed(0)
    config = DenoiserConfig(
        channels=(8, 16), cross_attention=(False, True), heads=2, norm_groups=4, layers_per_block=1
    )
    net = Denoiser(config, token_dim=4, resolution=16).eval()
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([10, 500])
    tokens = torch.randn(2, 3, 4)
    out = net(x, t, tokens)
    assert out.shape == x.shape
    assert not torch.allclose(out, net(x, t, tokens + 1.0))


def test_denoiser_output_depends_on_the_timestep():
    torch.manual_seed(0)
    net = Denoiser(DenoiserConfig(**TINY), token_dim=4, resolution=16).eval()
    x, tokens = torch.randn(2, 3, 16, 16), torch.randn(2, 3, 4)
    assert not torch.allclose(
        net(x, torch.tensor([10, 10]), tokens), net(x, torch.tensor([900, 900]), tokens)
    )


def test_default_shape_is_the_paper_presets():
    """The U-Net defaults are the released paper-scale ones (the paper preset sets none of them)."""
    shape = UNetShape()
    assert shape.channels == (64, 128, 256, 256) and shape.cross_attention == (False, True, True, True)
    assert (shape.layers_per_block, shape.heads, shape.norm_groups) == (2, 8, 32)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("cross_attention", (True,), "one flag per level"),
        ("norm_groups", 3, "must divide every channel count"),
        ("heads", 3, "must divide every channel count"),
        ("dropout", 1.0, "dropout must be in"),
    ],
)
def test_bad_shapes_name_the_key(key, value, message):
    with pytest.raises(ValueError, match=f"denoiser.{key}.*{message}|{message}"):
        DenoiserConfig(**{**TINY, key: value})
