import pytest
import torch

from diffdrl.models.encdiff import EncDiff
from diffdrl.training.config import load_config

HS_TINY = [
    "data.resolution=16",
    "model.units=3",
    "model.token_dim=4",
    "model.encoder.width=8",
    "model.token_bank.hidden=[8]",
    "model.denoiser.channels=[8,16]",
    "model.denoiser.cross_attention=[false,true]",
    "model.denoiser.heads=2",
    "model.denoiser.norm_groups=4",
    "model.schedule.timesteps=50",
]


@pytest.fixture(params=["cross_attention", "adagn"])
def tiny_model(request):
    """An untrained tiny EncDiff of each conditioning (h-space needs no training to be tested)."""
    torch.manual_seed(0)
    config = load_config("tiny-cpu", [*HS_TINY, f"model.denoiser.conditioning={request.param}"])
    return EncDiff(config.model, resolution=16).eval()


@pytest.fixture
def hs_overrides():
    """The tiny h-space test model's config overrides."""
    return list(HS_TINY)
