import numpy as np
import pytest
import torch

from diffdrl.diffusion.draws import StepDraws
from diffdrl.models.encdiff import EncDiff


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
    a, terms = model(x, draws=StepDraws.seeded(1, len(x)))
    b, _ = model(x, draws=StepDraws.seeded(1, len(x)))
    assert a.item() == b.item() and a.item() > 0
    assert terms == {}  # no regulariser, no anchoring: the loss has no named parts


def test_plain_encdiff_checkpoints_carry_no_anchoring_state(tiny_config):
    plain = EncDiff(tiny_config().model, resolution=16)
    assert not any(k.startswith("anchors.") for k in plain.state_dict())
    dyga = EncDiff(tiny_config("model.anchoring.enabled=true").model, resolution=16)
    assert {"anchors.means", "anchors.fitted"} <= set(dyga.state_dict())


def test_unknown_loss_weighting_is_a_config_error(tiny_config):
    with pytest.raises(ValueError, match="model.loss_weighting must be one of"):
        tiny_config("model.loss_weighting=snr")
