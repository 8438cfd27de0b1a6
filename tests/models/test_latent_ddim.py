"""Diff-AE's latent DDIM: fitted codes come back with their distribution; saved ones load the same."""

import pytest
import torch

from diffdrl.models.latent_ddim import LatentDDIMConfig, fit_on_codes, load_latent_ddim, save_latent_ddim

SMALL = LatentDDIMConfig(layers=2, width=32, train_steps=300, batch_size=128, sample_steps=20)


def test_draws_follow_the_fitted_codes_distribution():
    gen = torch.Generator().manual_seed(0)
    target_mean, target_std = torch.tensor([3.0, -1.0]), torch.tensor([2.0, 0.5])
    codes = torch.randn(2000, 2, generator=gen) * target_std + target_mean
    ddim = fit_on_codes(codes, SMALL, seed=0)
    torch.testing.assert_close(ddim.mean, codes.mean(0))  # the z-normalisation is the codes' own
    torch.testing.assert_close(ddim.std, codes.std(0))
    draws = ddim.draw(1000, seed=1)
    assert draws.shape == (1000, 2) and torch.isfinite(draws).all()
    assert ((draws.mean(0) - target_mean).abs() < 0.3 * target_std).all(), draws.mean(0)
    ratio = draws.std(0) / target_std
    assert ((ratio > 0.7) & (ratio < 1.3)).all(), ratio


def test_a_saved_latent_ddim_draws_the_same_codes(tmp_path):
    ddim = fit_on_codes(torch.randn(64, 3), LatentDDIMConfig(layers=2, width=16, train_steps=2), seed=0)
    save_latent_ddim(ddim, tmp_path)
    again = load_latent_ddim(tmp_path)
    torch.testing.assert_close(again.draw(5, seed=2), ddim.draw(5, seed=2), rtol=0, atol=0)
    with pytest.raises(FileNotFoundError, match="no latent DDIM"):
        load_latent_ddim(tmp_path / "elsewhere")


def test_bad_settings_name_the_key():
    with pytest.raises(ValueError, match="latent_ddim.beta must be in"):
        LatentDDIMConfig(beta=1.5)
