import hashlib
import pickle

import h5py
import numpy as np
import pytest

from diffdrl.cli import main
from diffdrl.data import make_dataset
from diffdrl.data.shapes3d import Shapes3D
from diffdrl.data.validation import verify_file
from helpers.dataset_files.shapes3d import SIZES, images_of, label_values, write
from helpers.reader_errors import expect_one_line_error


@pytest.fixture
def h5(tmp_path):
    return write(tmp_path / "3dshapes.h5")


def rows_of(images: np.ndarray) -> np.ndarray:
    return images[:, 0, 0, 0].astype(np.int64) + 256 * images[:, 0, 0, 1].astype(np.int64)


def test_factors_from_rank_of_values(h5):
    data = Shapes3D(h5)
    assert data.factor_names == ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation")
    assert data.factor_sizes == SIZES and len(data) == np.prod(SIZES)
    codes = data.sample_factors(50, np.random.default_rng(0))
    images = data.images_for(codes)
    assert images.shape == (50, 64, 64, 3) and images.dtype == np.uint8
    np.testing.assert_array_equal(rows_of(images), data.index_of(codes))
    np.testing.assert_array_equal(data.codes_of(data.index_of(codes)), codes)


def test_lazy_and_in_memory_agree_with_duplicates_and_any_order(h5):
    index = np.array([5, 0, 5, 71, 3])
    lazy, loaded = Shapes3D(h5).images_at(index), Shapes3D(h5, in_memory=True).images_at(index)
    np.testing.assert_array_equal(lazy, loaded)
    np.testing.assert_array_equal(rows_of(lazy), index)
    assert Shapes3D(h5).images_at(np.array([], np.int64)).shape == (0, 64, 64, 3)


def test_resolution_and_registry_and_pickle(h5):
    data = make_dataset("shapes3d", str(h5), 32)
    assert data.sample(3, np.random.default_rng(0))[1].shape == (3, 32, 32, 3)
    again = pickle.loads(pickle.dumps(data))
    np.testing.assert_array_equal(again.images_at(np.arange(4)), data.images_at(np.arange(4)))


def check_error(path, error, *words, **options):
    expect_one_line_error(lambda: Shapes3D(path, **options), error, *words, path=path)


def test_missing_path(tmp_path):
    check_error(tmp_path / "nope.h5", FileNotFoundError, "no such file")


def test_no_path_given():
    with pytest.raises(ValueError, match="data.path"):
        make_dataset("shapes3d")


def test_wrong_keys(tmp_path):
    path = write(tmp_path / "a.h5", labels=label_values(), images=None)
    with h5py.File(path, "a") as f:
        f.move("labels", "values")
    check_error(path, ValueError, "'labels'", "values")


def test_wrong_image_dtype_and_shape(tmp_path):
    n = int(np.prod(SIZES))
    check_error(write(tmp_path / "a.h5", images=images_of(n).astype(np.float32)), ValueError, "uint8")
    check_error(write(tmp_path / "b.h5", images=images_of(n, 32)), ValueError, "shape", "(n, 64, 64, 3)")
    check_error(write(tmp_path / "c.h5", labels=label_values()[:, :5]), ValueError, "'labels'", "shape")


def test_counts_must_match(tmp_path):
    n = int(np.prod(SIZES))
    check_error(
        write(tmp_path / "a.h5", images=images_of(n - 1)), ValueError, f"{n - 1} images but {n} labels"
    )
    labels = label_values()[:-1]
    check_error(
        write(tmp_path / "b.h5", labels=labels, images=images_of(n - 1)),
        ValueError,
        f"need {n} images, the file has {n - 1}",
    )


def test_labels_must_be_the_row_major_grid(tmp_path):
    labels = label_values()[np.random.default_rng(0).permutation(int(np.prod(SIZES)))]
    check_error(write(tmp_path / "a.h5", labels=labels), ValueError, "row-major", "first mismatch")


def test_truncated_and_corrupt_files(tmp_path, h5):
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(h5.read_bytes()[: h5.stat().st_size // 2])
    check_error(truncated, ValueError, "truncated")
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"not an hdf5 file at all" * 10)
    check_error(garbage, ValueError, "not a readable HDF5 file")


def test_strict_and_sha256(h5):
    check_error(h5, ValueError, "267573662", strict=True)
    check_error(h5, ValueError, "sha256", sha256="0" * 64)
    digest = hashlib.sha256(h5.read_bytes()).hexdigest()
    assert Shapes3D(h5, sha256=digest).factor_sizes == SIZES
    verify_file(h5, size=h5.stat().st_size, sha256=digest.upper())


def test_cli_info_and_bad_file(h5, tmp_path, capsys):
    assert main(["datasets", "info", "shapes3d", "--path", str(h5)]) == 0
    out = capsys.readouterr().out
    assert "144 images" in out and "orientation" in out
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"\0" * 100)
    assert main(["datasets", "info", "shapes3d", "--path", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(bad) in err


def test_trains_by_config_alone(h5, tmp_path, tiny_config):
    from diffdrl.training.trainer import train

    config = tiny_config("data.name=shapes3d", f"data.path={h5}", "train.steps=2")
    train(config, tmp_path / "run", progress=False)
    assert (tmp_path / "run" / "config.yaml").is_file()
