import numpy as np
import pytest

from diffdrl.cli import main
from diffdrl.data import make_dataset
from diffdrl.data.celeba import CelebA
from helpers.dataset_files.celeba import NAMES, write
from helpers.reader_errors import expect_one_line_error


def test_images_attributes_and_crops(tmp_path):
    folder, labels = write(tmp_path / "celeba")
    data = make_dataset("celeba", str(folder), 32)
    assert len(data) == 5 and data.crop == "nashae" and not hasattr(data, "factor_sizes")
    assert data.attribute_names == NAMES
    np.testing.assert_array_equal(data.attributes(np.array([4, 0])), labels[[4, 0]])
    images = data.images_at(np.arange(5))
    assert images.shape == (5, 32, 32, 3) and images.dtype == np.uint8
    dlib = make_dataset("celeba-dlib", str(folder), 32).images_at(np.arange(1))
    assert CelebA(folder, 32, crop="dlib").crop == "dlib"
    # The 60-pixel bright square covers more of the tight NashAE crop (96 -> 64) than of 148 -> 64.
    bright = lambda image: (image[..., 0] > 200).mean()  # noqa: E731
    assert bright(images[0]) > bright(dlib[0]) + 0.1
    codes, sampled = data.sample(3, np.random.default_rng(0))
    assert codes is None and sampled.shape == (3, 32, 32, 3)


def test_splits(tmp_path):
    folder, labels = write(tmp_path / "celeba")
    assert len(CelebA(folder, split="train")) == 3 and len(CelebA(folder, split="test")) == 1
    np.testing.assert_array_equal(CelebA(folder, split="valid").attributes([0]), labels[[3]])
    with pytest.raises(ValueError, match="split"):
        CelebA(folder, split="dev")
    with pytest.raises(ValueError, match="crop"):
        CelebA(folder, crop="square")


def check_error(folder, error, *words, **options):
    expect_one_line_error(lambda: CelebA(folder, **options), error, *words)


def test_errors(tmp_path):
    check_error(tmp_path / "none", FileNotFoundError, "no such folder")
    folder, _ = write(tmp_path / "a", partition=False)
    check_error(folder, FileNotFoundError, "list_eval_partition.txt", split="train")
    (folder / "list_attr_celeba.txt").unlink()
    check_error(folder, FileNotFoundError, "list_attr_celeba.txt")
    folder, _ = write(tmp_path / "b", attr_lines=["1", "A B C"])
    check_error(folder, ValueError, "list_attr_celeba.txt", "40 attributes")
    folder, _ = write(tmp_path / "c", attr_lines=["2", " ".join(NAMES), "000001.jpg " + " 0" * 40])
    check_error(folder, ValueError, "+1 or -1")
    folder, _ = write(tmp_path / "d", attr_lines=["3", " ".join(NAMES), "000001.jpg " + " 1" * 40])
    check_error(folder, ValueError, "says 3 images")
    folder, _ = write(tmp_path / "e", attr_lines=["1", " ".join(NAMES), "000001.jpg 1 1"])
    check_error(folder, ValueError, "line 3")


def test_corrupt_image_named_when_read(tmp_path):
    folder, _ = write(tmp_path / "celeba")
    (folder / "img_align_celeba" / "000002.jpg").write_bytes(b"broken")
    data = CelebA(folder)
    data.images_at([0])
    with pytest.raises(ValueError, match="000002.jpg: not a readable image"):
        data.images_at([1])


def test_cli_bad_path_is_one_line(tmp_path, capsys):
    # (`datasets info celeba` on a good folder needs cli.cmd_datasets to allow factor-free data.)
    assert main(["datasets", "info", "celeba", "--path", str(tmp_path / "none")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
