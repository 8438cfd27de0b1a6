"""The switches that make a step or a model cheaper are numerically harmless at initialisation: the
loss they give agrees with the plain float32 model's (same weights where the shapes allow, same
timesteps and noise), within a stated tolerance."""

import pytest
import torch
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

from diffdrl.models.registry import build as build_model_config


def build(tiny_config, *overrides):
    config = tiny_config(*overrides)
    torch.manual_seed(0)
    return build_model_config(config.model, config.data.resolution)


def loss(model, x0, seed=0):
    return float(model(x0, generator=torch.Generator().manual_seed(seed)))


def batch(n=16, res=16):
    return torch.rand(n, 3, res, res, generator=torch.Generator().manual_seed(1)) * 2 - 1


def test_bf16_autocast_on_cpu_gives_the_float32_loss_within_1_percent(tiny_config):
    model, x0 = build(tiny_config), batch()
    with torch.no_grad():
        fp32 = loss(model, x0)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = loss(model, x0)
    assert bf16 == pytest.approx(fp32, rel=0.01)  # bf16 keeps 8 bits of mantissa: ~0.4% per value


def test_patch_stem_folds_pixels_exactly_and_keeps_the_output_shape(tiny_config):
    model = build(tiny_config, "model.denoiser.patch_size=2")
    assert model.denoiser.unet.conv_in.in_channels == 12 and model.denoiser.unet.config.sample_size == 8
    x = batch(2)
    assert torch.equal(F.pixel_shuffle(F.pixel_unshuffle(x, 2), 2), x)
    tokens = torch.randn(2, 3, 4)
    assert model.denoiser(x, torch.tensor([0, 9]), tokens).shape == x.shape


def test_patch_stem_loss_at_init_is_the_plain_models_within_5_percent(tiny_config):
    """Both start as untrained eps predictors: the L1 loss is about E|eps| = 0.80 for either."""
    x0 = batch()
    with torch.no_grad():
        plain = loss(build(tiny_config), x0)
        patched = loss(build(tiny_config, "model.denoiser.patch_size=2"), x0)
    assert patched == pytest.approx(plain, rel=0.05)


def test_patch_stem_cuts_the_training_flops(tiny_config):
    def flops(model):
        with FlopCounterMode(display=False) as counter:
            model(batch(4), generator=torch.Generator().manual_seed(0)).backward()
        return counter.get_total_flops()

    plain, patched = flops(build(tiny_config)), flops(build(tiny_config, "model.denoiser.patch_size=2"))
    assert patched < 0.6 * plain


def test_bad_patch_size_is_rejected(tiny_config):
    with pytest.raises(ValueError, match="denoiser.patch_size must be >= 1, got 0"):
        tiny_config("model.denoiser.patch_size=0")
    with pytest.raises(ValueError, match="denoiser.patch_size=3 must divide the resolution 16"):
        build(tiny_config, "model.denoiser.patch_size=3")
