import pytest
import torch

from diffdrl.training.config import load_config
from helpers.tiny import TINY, TINY_DDPM, TINY_DISDIFF, TINY_LATENT, TINY_STAGE

torch.set_num_threads(2)


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "gpu: needs a CUDA device; skipped without one (benchmarks/gpu_check.sh runs them: -m gpu)"
    )


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` skip, with the reason, where torch sees no CUDA device."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def tiny_config():
    """A model small enough that a training step takes milliseconds."""

    def make(*overrides: str):
        return load_config("tiny-cpu", [*TINY, *overrides])

    return make


@pytest.fixture(scope="session")
def trained_tiny(tmp_path_factory):
    """A run of the tiny test model trained for a few steps, and the run loaded back."""
    from diffdrl.api import load_run
    from diffdrl.training.trainer import train

    run_dir = tmp_path_factory.mktemp("trained") / "run"
    config = load_config("tiny-cpu", [*TINY, "train.steps=4"])
    train(config, run_dir, progress=False)
    return load_run(run_dir)


# -- first stages and latent EncDiff (tests/first_stage/) -------------------------------------------


@pytest.fixture
def tiny_stage_overrides():
    return list(TINY_STAGE)


@pytest.fixture
def stage_config():
    def make(*overrides: str, resolution: int = 16, kind: str = "vq"):
        preset, own = {
            "vq": ("tiny-cpu-first-stage", ["model.codebook_size=16"]),
            "kl": ("first-stage-kl", []),
        }[kind]
        return load_config(preset, [*TINY_STAGE, *own, f"data.resolution={resolution}", *overrides])

    return make


@pytest.fixture(scope="session")
def trained_stage(tmp_path_factory):
    """A tiny VQ first stage at 64x64, trained 2 steps and exported (``RUN/diffusers``)."""
    from diffdrl.training.first_stage_export import train_autoencoder

    run = tmp_path_factory.mktemp("stage") / "vq"
    config = load_config(
        "tiny-cpu-first-stage", [*TINY_STAGE, "model.codebook_size=16", "data.resolution=64", "train.steps=2"]
    )
    train_autoencoder(config, run, progress=False)
    return run


@pytest.fixture
def latent_config(trained_stage):
    def make(*overrides: str):
        return load_config(
            "tiny-cpu-latent", [*TINY_LATENT, f"model.first_stage.path={trained_stage}", *overrides]
        )

    return make


@pytest.fixture(scope="session")
def latent_folder(tmp_path_factory):
    """An image folder of 5 random 64x64 images: batches of 4 repeat its items from the second step."""
    import numpy as np
    from PIL import Image

    folder = tmp_path_factory.mktemp("latent_folder")
    rng = np.random.default_rng(0)
    for i in range(5):
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


# -- h-space (tests/hspace/) -----------------------------------------------------------------------

HS_TINY = [o for o in TINY if not o.startswith("train.")]  # the tiny model; h-space needs no training


@pytest.fixture(params=["cross_attention", "adagn"])
def tiny_model(request):
    """An untrained tiny EncDiff of each conditioning (h-space needs no training to be tested)."""
    from diffdrl.models.encdiff import EncDiff

    torch.manual_seed(0)
    config = load_config("tiny-cpu", [*HS_TINY, f"model.denoiser.conditioning={request.param}"])
    return EncDiff(config.model, resolution=16).eval()


@pytest.fixture
def hs_overrides():
    """The tiny h-space test model's config overrides."""
    return list(HS_TINY)


# -- DisDiff's pre-trained unconditional denoiser (tests/models/test_disdiff.py) ---------------------


@pytest.fixture(scope="session")
def tiny_pretrained(tmp_path_factory):
    """A run of the tiny unconditional denoiser (``tiny-cpu-ddpm``) trained for 2 steps: the
    ``model.pretrained.path`` of the tiny DisDiff."""
    from diffdrl.training.trainer import train

    run_dir = tmp_path_factory.mktemp("pretrained") / "ddpm"
    train(load_config("tiny-cpu-ddpm", [*TINY_DDPM, "train.steps=2"]), run_dir, progress=False)
    return run_dir


@pytest.fixture
def disdiff_config(tiny_pretrained):
    """The tiny DisDiff on ``tiny_pretrained``, with more overrides."""

    def make(*overrides: str):
        return load_config(
            "tiny-cpu-disdiff", [*TINY_DISDIFF, f"model.pretrained.path={tiny_pretrained}", *overrides]
        )

    return make
