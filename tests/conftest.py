import pytest
import torch

from diffdrl.training.config import load_config

torch.set_num_threads(2)

TINY = [
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
    "train.batch_size=4",
    "train.eval_batch_size=4",
    "train.warmup_steps=2",
    "train.log_every=1",
    "train.eval_every=2",
    "train.checkpoint_every=2",
    "train.device=cpu",
]


@pytest.fixture
def tiny_config():
    """A model small enough that a training step takes milliseconds."""

    def make(*overrides: str):
        return load_config("tiny-cpu", [*TINY, *overrides])

    return make
