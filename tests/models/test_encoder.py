"""The unit encoder: images -> N scalars, at the published shapes."""

import pytest
import torch

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


def test_unknown_architecture_is_a_config_error():
    with pytest.raises(ValueError, match="encoder.architecture must be one of"):
        EncoderConfig(architecture="vit")
