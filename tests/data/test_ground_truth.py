"""The ground-truth contract's own pieces: the torch Dataset view and the uint8 -> [-1, 1] conversion."""

import numpy as np
import pytest
import torch

from diffdrl.data import make_dataset
from diffdrl.data.ground_truth import GroundTruthTorchDataset, to_model_input


def test_to_model_input_maps_uint8_ends_to_minus_one_and_one():
    images = np.array([0, 255, 51], dtype=np.uint8).reshape(1, 1, 3, 1).repeat(3, axis=3)  # (1, 1, 3, 3)
    x = to_model_input(images)
    assert x.shape == (1, 3, 1, 3) and x.dtype == torch.float32
    np.testing.assert_allclose(x[0, 0, 0].numpy(), [-1.0, 1.0, 51 / 127.5 - 1], rtol=0, atol=1e-7)


def test_to_model_input_refuses_float_images():
    with pytest.raises(ValueError, match="uint8"):
        to_model_input(np.zeros((1, 4, 4, 3), dtype=np.float32))


def test_torch_view_item_is_the_image_of_that_index_and_its_codes():
    data = make_dataset("synth-shapes3d", None, 16)
    view = GroundTruthTorchDataset(data)
    assert len(view) == len(data)
    for i in (0, len(data) - 1, 12345 % len(data)):
        image, codes = view[i]
        assert codes.dtype == torch.int64
        np.testing.assert_array_equal(codes.numpy(), data.codes_of(np.array([i]))[0])
        assert data.index_of(codes.numpy()[None])[0] == i
        torch.testing.assert_close(image, to_model_input(data.images_at(np.array([i])))[0], rtol=0, atol=0)
        assert image.shape == (3, 16, 16) and -1.0 <= image.min() and image.max() <= 1.0


def test_torch_view_batches_through_a_data_loader():
    data = make_dataset("synth-dsprites", None, 16)
    images, codes = next(iter(torch.utils.data.DataLoader(GroundTruthTorchDataset(data), batch_size=4)))
    assert images.shape[0] == codes.shape[0] == 4
    np.testing.assert_array_equal(codes.numpy(), data.codes_of(np.arange(4)))
