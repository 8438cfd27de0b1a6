"""Every registered model keeps the model contract (``models/registry.py``), at a tiny size."""

import copy

import numpy as np
import pytest
import torch

from diffdrl.data import make_dataset
from diffdrl.data.ground_truth import to_model_input
from diffdrl.diffusion.draws import StepDraws
from diffdrl.models import registry
from diffdrl.models.representation import encode_images, has_tokens, unit_width
from diffdrl.training.config import load_config
from helpers.tiny import TINY, TINY_CODE, TINY_DDPM, TINY_DISDIFF, TINY_STAGE

# each registry name -> a preset of that model and the overrides that make it tiny
_VAE = ["model.units=3", "model.channels=[8,8]", "model.hidden=16"]
_ENCDEC = [o.replace("model.denoiser.", "model.decoder.") for o in TINY if o.startswith("model.denoiser.")]
TINY_MODELS = {
    "encdiff": ("tiny-cpu", TINY),
    "encdec": (
        "tiny-cpu-encdec",
        [*(o for o in TINY if "denoiser" not in o and "schedule" not in o), *_ENCDEC],
    ),
    "betavae": ("tiny-cpu-betavae", ["data.resolution=16", *_VAE]),
    "betatcvae": ("tiny-cpu-betatcvae", ["data.resolution=16", *_VAE]),
    "factorvae": (
        "tiny-cpu-factorvae",
        ["data.resolution=16", *_VAE, "model.discriminator_width=16", "model.discriminator_layers=2"],
    ),
    # first stages: the same loss contract, no units (they encode to latents, not to units)
    "vq": ("tiny-cpu-first-stage", [*TINY_STAGE, "model.codebook_size=16", "data.resolution=16"]),
    "kl": ("first-stage-kl", [*TINY_STAGE, "data.resolution=16"]),
    "diffae": ("tiny-cpu-diffae", TINY_CODE),
    "infodiffusion": ("tiny-cpu-infodiffusion", TINY_CODE),
    # DisDiff's pre-trained unconditional denoiser: the loss contract, no units
    "ddpm": ("tiny-cpu-ddpm", TINY_DDPM),
    "disdiff": ("tiny-cpu-disdiff", TINY_DISDIFF),  # + model.pretrained.path: the tiny_pretrained run
}
NO_UNITS = ("vq", "kl", "ddpm")  # models with nothing to encode: ``encode`` is a ValueError


def test_every_registered_model_has_a_tiny_case():
    assert set(TINY_MODELS) == set(registry.MODELS)


@pytest.fixture(params=sorted(TINY_MODELS))
def model_and_images(request):
    preset, overrides = TINY_MODELS[request.param]
    if request.param == "disdiff":
        overrides = [*overrides, f"model.pretrained.path={request.getfixturevalue('tiny_pretrained')}"]
    config = load_config(preset, list(overrides))
    assert config.model.name == request.param
    model = registry.build(config.model, config.data.resolution, seed=0)
    images = make_dataset("synth-shapes3d", None, 16).sample(4, np.random.default_rng(0))[1]
    return model, images


def test_loss_is_a_finite_scalar_reproducible_from_its_draws(model_and_images):
    model, images = model_and_images
    x = to_model_input(images)
    twin = copy.deepcopy(model)  # a training forward may update state (a VQ codebook's EMA)
    first, terms = model(x, draws=StepDraws.seeded(1, len(x)))
    assert first.dim() == 0 and torch.isfinite(first)
    again, twin_terms = twin(x, draws=StepDraws.seeded(1, len(x)))
    torch.testing.assert_close(again, first, rtol=0, atol=0)
    # the named terms: detached scalars, the same from the same draws
    assert isinstance(terms, dict) and terms.keys() == twin_terms.keys()
    for name, value in terms.items():
        assert value.dim() == 0 and not value.requires_grad, name
        torch.testing.assert_close(twin_terms[name], value, rtol=0, atol=0)


def test_loss_reaches_the_encoder(model_and_images):
    model, images = model_and_images
    if model.config.name == "disdiff":  # its fields start at 0 (output conv zeroed, as released), so
        torch.nn.init.normal_(model.decoder.conv_out.weight, std=0.01)  # the code matters after step 1
    loss, _ = model(to_model_input(images), draws=StepDraws.seeded(0, len(images)))
    loss.backward()
    if model.config.name == "ddpm":  # an unconditional denoiser has no encoder: its U-Net learns
        encoder = model.unet
    else:
        encoder = model.net.encoder if hasattr(model, "net") else model.encoder  # first stages: diffusers'
    grads = [p.grad for p in encoder.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)


def test_encode_takes_uint8_images_and_gives_one_row_per_image(model_and_images):
    model, images = model_and_images
    if model.config.name in NO_UNITS:  # latents or nothing, not units: a clear error
        with pytest.raises(ValueError, match="units"):
            model.encode(images)
        return
    units = encode_images(model.eval(), images)
    assert units.shape == (len(images), unit_width(model)) and units.dtype == np.float32
    np.testing.assert_allclose(units[:2], encode_images(model, images[:2]), atol=1e-5)  # per image
    if has_tokens(model):
        tokens = model.tokens(torch.from_numpy(units))
        assert tokens.shape[:2] == (len(images), model.config.units)


def test_unknown_model_name_lists_the_valid_ones():
    config = load_config("tiny-cpu").model
    config.name = "nope"
    with pytest.raises(ValueError, match="model.name must be one of .*encdiff"):
        registry.build(config, 16)
