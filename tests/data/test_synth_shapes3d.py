import numpy as np
import pytest
import torch

from diffdrl.data.synth_shapes3d import SynthShapes3D
from diffdrl.viz.dataset_preview import factor_preview_grid, save_preview

# Smallest mean |pixel difference| (0..255 scale) between images of adjacent values of each
# factor, at 32 x 32. Hues recolour whole regions; scale and orientation move only the
# object's outline, shadow and the floor/wall line, as in Shapes3D, so their floors are lower.
# Measured minima over 200 random base codes: 14.9, 10.2, 1.6, 0.50, 1.1, 0.23.
MIN_ADJACENT_DIFFERENCE = {
    "floor_hue": 8.0,
    "wall_hue": 6.0,
    "object_hue": 1.0,
    "scale": 0.3,
    "shape": 0.6,
    "orientation": 0.15,
}


@pytest.fixture(scope="module")
def data() -> SynthShapes3D:
    return SynthShapes3D(resolution=32)


def sweep(data: SynthShapes3D, base: np.ndarray, factor: int) -> np.ndarray:
    codes = np.repeat(base[None], data.factor_sizes[factor], axis=0)
    codes[:, factor] = np.arange(data.factor_sizes[factor])
    return codes


def test_factors_match_shapes3d(data):
    assert data.factor_names == ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation")
    assert data.factor_sizes == (10, 10, 10, 8, 4, 15)
    assert len(data) == 480_000


def test_images_shape_dtype_and_content(data):
    codes = data.sample_factors(5, np.random.default_rng(0))
    images = data.images_for(codes)
    assert images.shape == (5, 32, 32, 3) and images.dtype == np.uint8
    assert images.max() > 200 and images.min() < 60  # lit hues and shadowed/dark sides
    assert data.images_for(codes[:0]).shape == (0, 32, 32, 3)


def test_same_codes_give_identical_pixels_whatever_the_batch(data):
    codes = data.sample_factors(20, np.random.default_rng(1))
    alone = SynthShapes3D(resolution=32).images_for(codes[:3])
    mixed = data.images_for(codes[::-1])[::-1]
    np.testing.assert_array_equal(alone, mixed[:3])
    np.testing.assert_array_equal(data.images_for(codes), mixed)


@pytest.mark.parametrize("factor", range(6))
def test_adjacent_factor_values_change_the_image(data, factor):
    name = data.factor_names[factor]
    for base in data.sample_factors(3, np.random.default_rng(2)):
        images = data.images_for(sweep(data, base, factor)).astype(np.float32)
        difference = np.abs(np.diff(images, axis=0)).mean(axis=(1, 2, 3))
        assert difference.min() > MIN_ADJACENT_DIFFERENCE[name], (name, base, difference)


def object_masks(data: SynthShapes3D) -> np.ndarray:
    """Object pixels (8, 4, 15, H, W) of every geometry: where recolouring only the object shows."""
    geometry = data.codes_of(np.arange(8 * 4 * 15))[
        :, 3:
    ]  # floor, wall, object hue 0: (scale, shape, orient)
    codes = np.concatenate([np.tile([2, 7, 0], (len(geometry), 1)), geometry], axis=1)
    recoloured = codes.copy()
    recoloured[:, 2] = 5
    mask = (data.images_for(codes) != data.images_for(recoloured)).any(-1)
    return mask.reshape(8, 4, 15, data.resolution, data.resolution)


def test_object_stays_inside_frame_and_is_visible(data):
    mask = object_masks(data)
    border = mask[..., 0, :] | mask[..., -1, :] | mask[..., :, 0] | mask[..., :, -1]
    assert not border.any()
    assert mask.mean(axis=(-1, -2)).min() > 0.03


def test_shapes_differ_in_silhouette_at_32(data):
    mask = object_masks(data)
    for a in range(4):
        for b in range(a + 1, 4):
            differing = (mask[:, a] ^ mask[:, b]).sum(axis=(-1, -2))
            assert differing.min() >= 10, (a, b)


def test_resolution_and_supersample_options():
    assert SynthShapes3D(resolution=8, supersample=1).images_for(np.zeros((2, 6), np.int64)).shape == (
        2,
        8,
        8,
        3,
    )
    assert SynthShapes3D(resolution=40, supersample=3).images_for(np.zeros((1, 6), np.int64)).shape == (
        1,
        40,
        40,
        3,
    )


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        ({"resolution": 7}, ValueError, "resolution.*7"),
        ({"supersample": 0}, ValueError, "supersample.*0"),
        ({"resolution": 32.0}, TypeError, "resolution"),
    ],
)
def test_bad_options_rejected(kwargs, error, words):
    with pytest.raises(error, match=words):
        SynthShapes3D(**kwargs)


def test_bad_codes_rejected(data):
    with pytest.raises(ValueError):
        data.images_for(np.zeros((2, 5), np.int64))
    with pytest.raises(ValueError):
        data.images_for(np.array([[0, 0, 0, 8, 0, 0]]))
    with pytest.raises(ValueError):
        data.images_for(np.array([[0, 0, 0, 0, 0, -1]]))
    with pytest.raises(TypeError):
        data.images_for(np.zeros((2, 6), np.float64))
    with pytest.raises(TypeError):
        data.render(torch.zeros(2, 6))
    with pytest.raises(ValueError):
        data.render(torch.tensor([[0, 0, 0, 0, 4, 0]]))


def test_index_codes_round_trip(data):
    codes = data.sample_factors(100, np.random.default_rng(3))
    np.testing.assert_array_equal(data.codes_of(data.index_of(codes)), codes)
    np.testing.assert_array_equal(data.codes_of(np.array([1, 15])), [[0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 1, 0]])
    assert data.index_of(np.array([[9, 9, 9, 7, 3, 14]]))[0] == len(data) - 1


def test_preview_grid_layout():
    data = SynthShapes3D(resolution=8, supersample=1)
    grid = factor_preview_grid(data, np.random.default_rng(0), columns=10)
    assert grid.shape == (6 * 10 - 2, 10 * 10 - 2, 3) and grid.dtype == np.uint8
    scale_row = grid[3 * 10 : 3 * 10 + 8]
    assert (scale_row[:, 8 * 10 :] == 255).all()  # 8 scales: two blank cells
    assert (grid[8:10] == 255).all()  # gap between rows


def test_save_preview_writes_png(tmp_path):
    path = tmp_path / "preview.png"
    save_preview(SynthShapes3D(resolution=8, supersample=1), path, np.random.default_rng(0))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.gpu
def test_gpu_render_matches_cpu(data):
    codes = torch.from_numpy(data.sample_factors(16, np.random.default_rng(4)))
    on_gpu = data.render(codes, device="cuda").cpu().int()
    assert (on_gpu - data.render(codes).int()).abs().max() <= 1
