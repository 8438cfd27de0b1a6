"""The switches that make a step or a model cheaper are numerically harmless at initialisation: the
loss they give agrees with the plain float32 model's (same weights where the shapes allow, same
timesteps and noise), within a stated tolerance."""

import pytest
import torch
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

from diffdrl.diffusion.draws import StepDraws
from diffdrl.models.registry import build as build_model_config


def build(tiny_config, *overrides):
    config = tiny_config(*overrides)
    torch.manual_seed(0)
    return build_model_config(config.model, config.data.resolution)


def loss(model, x0, seed=0):
    return float(model(x0, draws=StepDraws.seeded(seed, len(x0)))[0])


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
            model(batch(4), draws=StepDraws.seeded(0, 4))[0].backward()
        return counter.get_total_flops()

    plain, patched = flops(build(tiny_config)), flops(build(tiny_config, "model.denoiser.patch_size=2"))
    assert patched < 0.6 * plain


def test_bad_patch_size_is_rejected(tiny_config):
    with pytest.raises(ValueError, match="denoiser.patch_size must be >= 1, got 0"):
        tiny_config("model.denoiser.patch_size=0")
    with pytest.raises(ValueError, match="denoiser.patch_size=3 must divide the resolution 16"):
        build(tiny_config, "model.denoiser.patch_size=3")


def test_decorrelation_penalty_known_answers():
    from diffdrl.models.decorrelation import decorrelation_penalty

    gen = torch.Generator().manual_seed(0)
    independent = torch.randn(20000, 4, generator=gen)
    assert float(decorrelation_penalty(independent)) < 1e-3
    copies = independent[:, :1] * torch.tensor([1.0, -2.0, 3.0, 0.5]) + 1.0  # affine copies of one unit
    assert float(decorrelation_penalty(copies)) == pytest.approx(1.0, abs=1e-4)
    a = torch.randn(20000, generator=gen)
    pair = torch.stack([a, 0.6 * a + 0.8 * torch.randn(20000, generator=gen)], 1)  # correlation 0.6
    assert float(decorrelation_penalty(pair)) == pytest.approx(0.36, abs=0.02)
    with pytest.raises(ValueError, match=r"shape \(B >= 2, N >= 2\), got \(5, 1\)"):
        decorrelation_penalty(torch.zeros(5, 1))


def test_decorrelation_adds_exactly_its_weighted_penalty(tiny_config):
    from diffdrl.models.decorrelation import decorrelation_penalty

    x0 = batch()
    plain, weighted = build(tiny_config), build(tiny_config, "model.decorrelation=0.1")
    weighted.load_state_dict(plain.state_dict())
    with torch.no_grad():
        penalty = float(decorrelation_penalty(plain.encode_input(x0)))
        assert loss(weighted, x0) == pytest.approx(loss(plain, x0) + 0.1 * penalty, rel=1e-5)
    with pytest.raises(ValueError, match="model.decorrelation must be >= 0, got -1"):
        tiny_config("model.decorrelation=-1")


def test_unit_norm_standardises_units_and_keeps_the_loss_at_init_within_5_percent(tiny_config):
    x0 = batch(64)
    plain, normed = build(tiny_config), build(tiny_config, "model.unit_norm=true")
    normed.load_state_dict(plain.state_dict(), strict=False)  # the same weights; the norm has none
    with torch.no_grad():
        s = normed.encode_input(x0)  # training mode: batch statistics
        assert torch.allclose(s.mean(0), torch.zeros(s.shape[1]), atol=1e-5)
        assert torch.allclose(s.std(0, unbiased=False), torch.ones(s.shape[1]), atol=1e-3)
        assert loss(normed, x0) == pytest.approx(loss(plain, x0), rel=0.05)
    assert "unit_norm.running_mean" in normed.state_dict()
    assert "unit_norm.running_mean" not in plain.state_dict()  # older checkpoints keep their keys
