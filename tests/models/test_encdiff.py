import numpy as np
import pytest
import torch

from diffdrl.models.denoiser import Denoiser, DenoiserConfig
from diffdrl.models.encdiff import EncDiff
from diffdrl.models.encoder import Encoder, EncoderConfig


@pytest.mark.parametrize("architecture", ["released", "paper"])
@pytest.mark.parametrize("resolution", [16, 32])
def test_encoders_map_images_to_units(architecture, resolution):
    encoder = Encoder(EncoderConfig(architecture=architecture, width=16), num_units=5, resolution=resolution)
    assert encoder(torch.randn(2, 3, resolution, resolution)).shape == (2, 5)


def test_paper_encoder_matches_the_published_table_at_64():
    encoder = Encoder(EncoderConfig(architecture="paper"), num_units=20, resolution=64)
    convs = [m for m in encoder.features if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size[0], c.stride[0]) for c in convs] == [
        (3, 64, 7, 1),
        (64, 128, 4, 2),
        (128, 256, 4, 2),
        (256, 256, 4, 2),
        (256, 256, 4, 2),
    ]
    linears = [m for m in encoder.head if isinstance(m, torch.nn.Linear)]
    assert [(lin.in_features, lin.out_features) for lin in linears] == [(4096, 256), (256, 256), (256, 20)]


def test_released_encoder_flattens_2048_at_64():
    encoder = Encoder(EncoderConfig(), num_units=20, resolution=64)
    assert encoder.head.in_features == 2048


def test_encoder_rejects_resolutions_it_cannot_downsample():
    with pytest.raises(ValueError, match="multiple of 16"):
        Encoder(EncoderConfig(), num_units=3, resolution=24)


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


def test_encode_accepts_uint8_images_and_checks_shape(tiny_config):
    model = EncDiff(tiny_config().model, resolution=16).eval()
    images = np.random.default_rng(0).integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    units = model.encode(images)
    assert units.shape == (3, 3)
    torch.testing.assert_close(units, model.encode(torch.from_numpy(images).permute(0, 3, 1, 2) / 127.5 - 1))
    with pytest.raises(ValueError, match="expected images of shape"):
        model.encode(images[:, :8])


@pytest.mark.parametrize("loss", ["l1", "mse"])
@pytest.mark.parametrize("weighting", ["none", "truncated_snr"])
def test_loss_is_reproducible_with_a_generator(tiny_config, loss, weighting):
    config = tiny_config(f"model.loss={loss}", f"model.loss_weighting={weighting}")
    model = EncDiff(config.model, resolution=16).eval()
    x = torch.rand(4, 3, 16, 16) * 2 - 1
    a = model(x, generator=torch.Generator().manual_seed(1))
    b = model(x, generator=torch.Generator().manual_seed(1))
    assert a.item() == b.item() and a.item() > 0


def test_plain_encdiff_checkpoints_carry_no_anchoring_state(tiny_config):
    plain = EncDiff(tiny_config().model, resolution=16)
    assert not any(k.startswith("anchors.") for k in plain.state_dict())
    dyga = EncDiff(tiny_config("model.anchoring.enabled=true").model, resolution=16)
    assert {"anchors.means", "anchors.fitted"} <= set(dyga.state_dict())


def test_unknown_loss_weighting_is_a_config_error(tiny_config):
    with pytest.raises(ValueError, match="model.loss_weighting must be one of"):
        tiny_config("model.loss_weighting=snr")
