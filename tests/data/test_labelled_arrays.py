import numpy as np
import pytest

from diffdrl.cli import main
from diffdrl.data import make_dataset
from diffdrl.data.labelled_arrays import LabelledArrays
from helpers.dataset_files.labelled_arrays import NAMES, SIZES, arrays, write_h5, write_npz
from helpers.reader_errors import expect_one_line_error


@pytest.mark.parametrize("write, suffix", [(write_npz, ".npz"), (write_h5, ".h5")])
def test_reads_row_major_and_shuffled_files(tmp_path, write, suffix):
    shuffled = arrays(order=np.random.default_rng(0).permutation(24))
    for path in (write(tmp_path / f"a{suffix}"), write(tmp_path / f"b{suffix}", **shuffled)):
        data = make_dataset("labelled-arrays", str(path), 8)
        assert data.factor_names == NAMES and data.factor_sizes == SIZES and len(data) == 24
        codes, images = data.sample(30, np.random.default_rng(1))
        assert images.shape == (30, 8, 8, 3) and images.dtype == np.uint8
        np.testing.assert_array_equal(images[:, 0, 0, 0], data.index_of(codes))


def test_grey_images_and_resize(tmp_path):
    data = LabelledArrays(write_npz(tmp_path / "a.npz", images=arrays(channels=1)["images"]), 16)
    assert data.images_at(np.arange(2)).shape == (2, 16, 16, 3)


def check_error(path, error, *words):
    expect_one_line_error(lambda: LabelledArrays(path, 8), error, *words, path=path)


def test_errors(tmp_path):
    good = arrays()
    check_error(tmp_path / "none.npz", FileNotFoundError, "no such file")
    (tmp_path / "a.txt").write_text("x")
    check_error(tmp_path / "a.txt", ValueError, ".npz, .h5")
    path = tmp_path / "b.npz"
    np.savez(path, images=good["images"], factors=good["factors"])
    check_error(path, ValueError, "'factor_names'", "'factor_sizes'")
    check_error(write_npz(tmp_path / "c.npz", images=good["images"].astype(np.float32)), ValueError, "uint8")
    check_error(
        write_npz(tmp_path / "d.npz", factors=good["factors"].astype(np.float32)), ValueError, "integer"
    )
    check_error(write_npz(tmp_path / "e.npz", factor_names=np.array(NAMES[:2])), ValueError, "2 names")
    check_error(write_npz(tmp_path / "f.npz", images=good["images"][:-1]), ValueError, "23 images but 24")
    check_error(write_npz(tmp_path / "g.npz", factor_sizes=np.array([2, 3, 5])), ValueError, "need 30 images")
    factors = good["factors"].copy()
    factors[5] = factors[4]
    check_error(write_npz(tmp_path / "h.npz", factors=factors), ValueError, "duplicates")
    factors[5, 2] = 9
    check_error(write_npz(tmp_path / "i.npz", factors=factors), ValueError, "row 5", "out of range")
    check_error(write_npz(tmp_path / "j.npz", images=good["images"][..., :2]), ValueError, "1 or 3 channels")
    path = write_npz(tmp_path / "k.npz", factor_names=np.array(list(NAMES), dtype=object))
    check_error(path, ValueError, "objects")


def test_truncated_and_corrupt(tmp_path):
    for write, suffix in ((write_npz, ".npz"), (write_h5, ".h5")):
        good = write(tmp_path / f"good{suffix}")
        bad = tmp_path / f"bad{suffix}"
        bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
        check_error(bad, ValueError, "not a readable")


def test_cli(tmp_path, capsys):
    path = write_npz(tmp_path / "mine.npz")
    assert main(["datasets", "info", "labelled-arrays", "--path", str(path), "--resolution", "8"]) == 0
    assert "shape" in capsys.readouterr().out
    bad = write_npz(tmp_path / "bad.npz", factor_sizes=np.array([2, 3, 5]))
    assert main(["datasets", "info", "labelled-arrays", "--path", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "need 30 images" in err
