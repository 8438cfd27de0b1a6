import pickle

import numpy as np
import pytest

from diffdrl.cli import main
from diffdrl.data import make_dataset
from diffdrl.data.mpi3d import FACTOR_NAMES, MPI3D
from helpers.dataset_files.mpi3d import SIZES, images_of, write
from helpers.reader_errors import expect_one_line_error


def test_uncompressed_member_is_memory_mapped(tmp_path):
    path = write(tmp_path / "mpi3d_toy.npz", other=np.arange(5))
    data = MPI3D(path, "toy", 8, factor_sizes=SIZES)
    assert isinstance(data._images, np.memmap)
    assert data.factor_names == FACTOR_NAMES and data.factor_sizes == SIZES and len(data) == 48
    codes, images = data.sample(30, np.random.default_rng(0))
    assert images.shape == (30, 8, 8, 3) and images.dtype == np.uint8
    np.testing.assert_array_equal(images[:, 0, 0, 0], data.index_of(codes))
    np.testing.assert_array_equal(
        MPI3D(path, "toy", 8, factor_sizes=SIZES, in_memory=True).images_at([7]), data.images_at([7])
    )


def test_pickles_the_mapping_not_the_pixels(tmp_path):
    data = MPI3D(write(tmp_path / "mpi3d_toy.npz"), resolution=8, factor_sizes=SIZES)
    blob = pickle.dumps(data)
    assert len(blob) < data._images.nbytes
    again = pickle.loads(blob)
    assert isinstance(again._images, np.memmap)
    np.testing.assert_array_equal(again.images_at(np.arange(48)), data.images_at(np.arange(48)))


def test_compressed_member_is_converted_once(tmp_path):
    path = write(tmp_path / "mpi3d_real.npz", compressed=True)
    data = make_dataset("mpi3d-real", str(path), 8, factor_sizes=SIZES)
    converted = tmp_path / "mpi3d_real.npz.images.npy"
    assert converted.is_file() and data.variant == "real"
    np.testing.assert_array_equal(data.images_at(np.arange(48))[:, 0, 0, 0], np.arange(48))
    stamp = converted.stat().st_mtime_ns
    MPI3D(path, "real", 8, factor_sizes=SIZES)
    assert converted.stat().st_mtime_ns == stamp


def test_resize(tmp_path):
    data = MPI3D(write(tmp_path / "a.npz"), resolution=16, factor_sizes=SIZES)
    assert data.images_at(np.arange(3)).shape == (3, 16, 16, 3)


def check_error(path, error, *words, **options):
    expect_one_line_error(lambda: MPI3D(path, **options), error, *words, path=path)


def test_errors(tmp_path):
    n = int(np.prod(SIZES))
    check_error(tmp_path / "none.npz", FileNotFoundError, "no such file")
    check_error(write(tmp_path / "a.npz"), ValueError, "need 1036800 images, the file has 48")
    path = tmp_path / "b.npz"
    np.savez(path, imgs=images_of(n))
    check_error(path, ValueError, "'images'", "imgs", factor_sizes=SIZES)
    check_error(
        write(tmp_path / "c.npz", images=images_of(n).astype(np.int16)),
        ValueError,
        "uint8",
        factor_sizes=SIZES,
    )
    check_error(
        write(tmp_path / "d.npz", images=images_of(n)[..., :2]), ValueError, "shape", factor_sizes=SIZES
    )
    check_error(write(tmp_path / "e.npz", images=images_of(n - 1)), ValueError, "need 48", factor_sizes=SIZES)
    with pytest.raises(ValueError, match="variant"):
        MPI3D(tmp_path / "a.npz", "fake")


def test_truncated_and_corrupt(tmp_path):
    good = write(tmp_path / "good.npz")
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[:-200])
    check_error(truncated, ValueError, "not a readable npz", factor_sizes=SIZES)
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"x" * 300)
    check_error(garbage, ValueError, "not a readable npz", factor_sizes=SIZES)


def test_cli_reports_a_bad_file_in_one_line(tmp_path, capsys):
    path = write(tmp_path / "mpi3d_toy.npz")
    assert main(["datasets", "info", "mpi3d-toy", "--path", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "need 1036800 images" in err
