import numpy as np
import pytest

from diffdrl.cli import main
from diffdrl.data import make_dataset
from diffdrl.data.dsprites import DSprites
from helpers.dataset_files.dsprites import SIZES, Bomb, rows_of, write
from helpers.reader_errors import expect_one_line_error


@pytest.fixture
def npz(tmp_path):
    return write(tmp_path / "dsprites.npz")


def test_five_factors_and_decoding(npz):
    data = DSprites(npz, 16)
    assert data.factor_names == ("shape", "scale", "orientation", "position_x", "position_y")
    assert data.factor_sizes == SIZES[1:] and len(data) == np.prod(SIZES)
    codes, images = data.sample(40, np.random.default_rng(0))
    assert images.shape == (40, 16, 16, 3) and images.dtype == np.uint8
    assert set(np.unique(images)) <= {0, 255}
    np.testing.assert_array_equal(rows_of(images), data.index_of(codes))
    np.testing.assert_array_equal(images[..., 0], images[..., 2])


def test_one_channel_and_resolution(npz):
    assert DSprites(npz, 16, channels=1).images_at(np.arange(2)).shape == (2, 16, 16, 1)
    assert make_dataset("dsprites", str(npz), 8).images_at(np.arange(2)).shape == (2, 8, 8, 3)
    with pytest.raises(ValueError, match="channels"):
        DSprites(npz, channels=2)


def check_error(path, error, *words, **options):
    expect_one_line_error(lambda: DSprites(path, **options), error, *words, path=path)


def test_errors(tmp_path):
    n = int(np.prod(SIZES))
    check_error(tmp_path / "missing.npz", FileNotFoundError, "no such file")
    check_error(write(tmp_path / "a.npz", drop=("imgs",)), ValueError, "'imgs'", "latents_classes")
    images = np.zeros((n, 16, 16), np.float32)
    check_error(write(tmp_path / "b.npz", imgs=images), ValueError, "uint8")
    check_error(write(tmp_path / "c.npz", imgs=np.zeros((n, 16, 8), np.uint8)), ValueError, "square")
    check_error(write(tmp_path / "d.npz", imgs=np.full((n, 16, 16), 7, np.uint8)), ValueError, "0/1")
    classes = np.zeros((n, 5), np.int64)
    check_error(write(tmp_path / "e.npz", latents_classes=classes), ValueError, "'latents_classes'", "shape")
    check_error(write(tmp_path / "f.npz", imgs=np.zeros((n - 1, 16, 16), np.uint8)), ValueError, "images but")
    classes = np.stack(np.unravel_index(np.arange(n), SIZES), -1)[::-1].copy()
    check_error(write(tmp_path / "g.npz", latents_classes=classes), ValueError, "row-major")
    check_error(write(tmp_path / "h.npz", sizes=(2, 3, 2, 2, 2, 2)), ValueError, "colour")
    check_error(write(tmp_path / "i.npz"), ValueError, "published", strict=True)


def test_object_arrays_are_refused_not_unpickled(tmp_path):
    n = int(np.prod(SIZES))
    check_error(write(tmp_path / "a.npz", imgs=np.array([Bomb()] * n, dtype=object)), ValueError, "objects")


def test_truncated_and_corrupt(tmp_path, npz):
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(npz.read_bytes()[: npz.stat().st_size // 2])
    check_error(truncated, ValueError, "not a readable npz")
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"garbage" * 50)
    check_error(garbage, ValueError, "not a readable npz")


def test_cli(npz, tmp_path, capsys):
    assert main(["datasets", "info", "dsprites", "--path", str(npz)]) == 0
    assert "position_y" in capsys.readouterr().out
    assert main(["datasets", "info", "dsprites", "--path", str(tmp_path / "none.npz")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
