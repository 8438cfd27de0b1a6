import numpy as np
import pytest

from diffdrl.data import make_dataset
from diffdrl.data.synth_dsprites import SynthDSprites
from diffdrl.data.synth_xyobject import SynthXYObject

DATASETS = {"synth-dsprites": SynthDSprites, "synth-xyobject": SynthXYObject}


@pytest.mark.parametrize("name", DATASETS)
def test_contract_and_determinism(name):
    data = make_dataset(name, resolution=24)
    assert len(data) == np.prod(data.factor_sizes)
    codes = data.sample_factors(12, np.random.default_rng(0))
    images = data.images_for(codes)
    assert images.shape == (12, 24, 24, 3) and images.dtype == np.uint8
    np.testing.assert_array_equal(data.images_for(codes[::-1])[::-1], images)
    np.testing.assert_array_equal(DATASETS[name](resolution=24).images_for(codes[:3]), images[:3])
    assert data.images_for(codes[:0]).shape == (0, 24, 24, 3)
    with pytest.raises(ValueError, match="data.path"):
        make_dataset(name, "/some/file")
    with pytest.raises(ValueError):
        data.images_for(np.zeros((1, len(data.factor_sizes) + 1), np.int64))


@pytest.mark.parametrize("name", DATASETS)
def test_every_factor_step_changes_the_image(name):
    data = make_dataset(name, resolution=32)
    rng = np.random.default_rng(1)
    for factor, size in enumerate(data.factor_sizes):
        base = data.sample_factors(1, rng)
        codes = np.repeat(base, size, axis=0)
        codes[:, factor] = np.arange(size)
        images = data.images_for(codes).astype(np.int32)
        difference = np.abs(np.diff(images, axis=0)).sum(axis=(1, 2, 3))
        if data.factor_names[factor] == "orientation":
            difference = difference[:-1]  # 0 and 2 pi coincide, as in dSprites
            if base[0, 0] == 0:  # a square repeats every quarter turn
                difference = difference[difference > 0]
        assert (difference > 0).all(), (name, data.factor_names[factor], difference)


def test_dsprites_layout():
    data = SynthDSprites(resolution=32)
    assert data.factor_names == ("shape", "scale", "orientation", "position_x", "position_y")
    assert data.factor_sizes == (3, 6, 40, 32, 32)
    image = data.images_for(np.array([[0, 5, 0, 31, 0]]))[0, ..., 0]
    ys, xs = np.nonzero(image > 127)
    assert xs.mean() > 20 and ys.mean() < 12  # right, top
    big, small = data.images_for(np.array([[1, 5, 0, 16, 16], [1, 0, 0, 16, 16]]))
    assert (big > 127).sum() > 3 * (small > 127).sum()
    with pytest.raises(ValueError, match="supersample"):
        SynthDSprites(supersample=0)


def test_xyobject_is_exact_at_64():
    data = SynthXYObject()
    assert data.factor_sizes == (25, 25, 5, 24) and len(data) == 75_000
    image = data.images_for(np.array([[3, 10, 4, 23]]))[0]
    ys, xs = np.nonzero(image.any(-1))
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (6, 20, 20, 34)  # side 7 + 2 * 4 = 15
    assert set(np.unique(image)) == {0, 255}
    assert SynthXYObject(resolution=16).images_for(np.array([[24, 24, 4, 0]])).shape == (1, 16, 16, 3)
