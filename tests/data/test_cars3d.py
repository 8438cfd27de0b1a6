import numpy as np
import scipy.io

from diffdrl.cli import main
from diffdrl.data import make_dataset
from diffdrl.data.cars3d import Cars3D
from helpers.dataset_files.cars3d import AZIMUTHS, ELEVATIONS, LISTED, mesh, write
from helpers.reader_errors import expect_one_line_error


def test_factors_and_list_order(tmp_path):
    data = Cars3D(write(tmp_path / "cars"), resolution=8)
    assert data.factor_names == ("elevation", "azimuth", "object_type")
    assert data.factor_sizes == (ELEVATIONS, AZIMUTHS, 3) and len(data) == 30
    codes, images = data.sample(25, np.random.default_rng(0))
    assert images.shape == (25, 8, 8, 3) and images.dtype == np.uint8
    cars = np.array([3, 1, 2])[codes[:, 2]]
    np.testing.assert_array_equal(images[:, 4, 4], np.stack([10 * cars, codes[:, 1], codes[:, 0]], -1))
    np.testing.assert_array_equal(data.codes_of(data.index_of(codes)), codes)


def test_resized_to_resolution(tmp_path):
    data = make_dataset("cars3d", str(write(tmp_path / "cars")), 16)
    assert data.images_at(np.arange(4)).shape == (4, 16, 16, 3)


def check_error(path, error, *words, **options):
    expect_one_line_error(lambda: Cars3D(path, **options), error, *words)


def test_errors(tmp_path):
    check_error(tmp_path / "none", FileNotFoundError, "no such folder")
    folder = write(tmp_path / "a")
    (folder / "list.txt").unlink()
    check_error(folder, FileNotFoundError, "list.txt")
    check_error(
        write(tmp_path / "b", listed=[*LISTED, "car_009_mesh"]), FileNotFoundError, "car_009_mesh.mat"
    )
    check_error(
        write(tmp_path / "c", car2=mesh(2, azimuths=4)), ValueError, "car_002_mesh.mat", "other files"
    )
    check_error(
        write(tmp_path / "d", car1=mesh(1).astype(np.float32)), ValueError, "car_001_mesh.mat", "uint8"
    )
    check_error(write(tmp_path / "e", car1=mesh(1)[..., 0]), ValueError, "'im'", "shape")
    folder = write(tmp_path / "f")
    scipy.io.savemat(folder / "car_001_mesh.mat", {"images": mesh(1)})
    check_error(folder, ValueError, "car_001_mesh.mat", "'im'")
    check_error(write(tmp_path / "g"), ValueError, "published", strict=True)


def test_truncated_and_corrupt(tmp_path):
    folder = write(tmp_path / "a")
    data = (folder / "car_002_mesh.mat").read_bytes()
    (folder / "car_002_mesh.mat").write_bytes(data[: len(data) // 2])
    check_error(folder, ValueError, "car_002_mesh.mat", "not a readable .mat")
    (folder / "car_002_mesh.mat").write_bytes(b"nonsense" * 10)
    check_error(folder, ValueError, "car_002_mesh.mat")


def test_cli(tmp_path, capsys):
    folder = write(tmp_path / "cars")
    assert main(["datasets", "info", "cars3d", "--path", str(folder), "--resolution", "8"]) == 0
    assert "object_type" in capsys.readouterr().out
    assert main(["datasets", "info", "cars3d", "--path", str(folder / "list.txt")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
