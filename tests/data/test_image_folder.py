import numpy as np
import pytest

from diffdrl.data import make_dataset
from diffdrl.data.image_folder import ImageFolder
from helpers.dataset_files.image_folder import write


def test_recursive_sorted_resized(tmp_path):
    data = make_dataset("image-folder", str(write(tmp_path / "imgs")), 16)
    assert [f.name for f in data.files] == ["b.png", "a.JPG", "c.jpeg"] and len(data) == 3
    images = data.images_at(np.arange(3))
    assert images.shape == (3, 16, 16, 3) and images.dtype == np.uint8
    assert (
        images[0].max() <= 12 and images[1].min() >= 195 and (np.abs(images[2].astype(int) - 90) <= 2).all()
    )
    codes, sampled = data.sample(4, np.random.default_rng(0))
    assert codes is None and sampled.shape == (4, 16, 16, 3)
    with pytest.raises(ValueError, match="out of range"):
        data.images_at([3])


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such folder"):
        ImageFolder(tmp_path / "none")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty: no images"):
        ImageFolder(tmp_path / "empty")
    folder = write(tmp_path / "imgs")
    (folder / "b.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(ValueError, match="b.png: not a readable image"):
        ImageFolder(folder).images_at([0])
