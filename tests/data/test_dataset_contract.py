"""Every registered dataset keeps the ground-truth data contract (DESIGN.md), on a tiny file where
it reads one: uint8 (B, H, W, C) images at the asked resolution, row-major index maths, and
deterministic images for a factor state."""

import numpy as np
import pytest

from diffdrl.data import DATASETS, make_dataset
from helpers.dataset_files.cars3d import write as write_cars
from helpers.dataset_files.celeba import write as write_celeba
from helpers.dataset_files.dsprites import write as write_dsprites
from helpers.dataset_files.image_folder import write as write_folder
from helpers.dataset_files.labelled_arrays import write_npz
from helpers.dataset_files.mpi3d import SIZES as MPI3D_SIZES
from helpers.dataset_files.mpi3d import write as write_mpi3d
from helpers.dataset_files.shapes3d import write as write_shapes3d

RESOLUTION = 16
# name -> (tmp_path -> data.path, extra options); None: procedural, no file
FILES = {
    "synth-shapes3d": None,
    "synth-dsprites": None,
    "synth-xyobject": None,
    "shapes3d": (lambda tmp: write_shapes3d(tmp / "3dshapes.h5"), {}),
    "dsprites": (lambda tmp: write_dsprites(tmp / "dsprites.npz"), {}),
    "mpi3d-toy": (lambda tmp: write_mpi3d(tmp / "mpi3d.npz"), {"factor_sizes": MPI3D_SIZES}),
    "mpi3d-realistic": (lambda tmp: write_mpi3d(tmp / "mpi3d.npz"), {"factor_sizes": MPI3D_SIZES}),
    "mpi3d-real": (lambda tmp: write_mpi3d(tmp / "mpi3d.npz"), {"factor_sizes": MPI3D_SIZES}),
    "cars3d": (lambda tmp: write_cars(tmp / "cars"), {}),
    "labelled-arrays": (lambda tmp: write_npz(tmp / "mine.npz"), {}),
    "celeba": (lambda tmp: write_celeba(tmp / "celeba")[0], {}),
    "celeba-dlib": (lambda tmp: write_celeba(tmp / "celeba")[0], {}),
    "image-folder": (lambda tmp: write_folder(tmp / "images"), {}),
}


def test_every_registered_dataset_has_a_case():
    assert set(FILES) == set(DATASETS)


@pytest.fixture(params=sorted(FILES))
def dataset(request, tmp_path):
    case = FILES[request.param]
    if case is None:
        return make_dataset(request.param, None, RESOLUTION)
    build, options = case
    return make_dataset(request.param, str(build(tmp_path)), RESOLUTION, **options)


def test_images_are_uint8_at_the_asked_resolution(dataset):
    index = np.array([0, len(dataset) - 1, len(dataset) // 2])
    images = dataset.images_at(index)
    assert images.dtype == np.uint8 and images.shape[:3] == (3, RESOLUTION, RESOLUTION)
    assert images.shape[3] in (1, 3)
    np.testing.assert_array_equal(dataset.images_at(index[:1]), images[:1])  # the same image each time


def test_sample_is_seeded(dataset):
    (codes, images), (codes_again, images_again) = (dataset.sample(5, np.random.default_rng(3)) for _ in "ab")
    assert images.shape[0] == 5
    np.testing.assert_array_equal(images, images_again)
    if codes is not None:  # unlabelled datasets sample images only
        np.testing.assert_array_equal(codes, codes_again)


def test_factor_index_maths_is_row_major(dataset):
    if not hasattr(dataset, "factor_sizes"):
        pytest.skip("unlabelled dataset: no factor grid")
    sizes = dataset.factor_sizes
    assert len(dataset) == int(np.prod(sizes)) and len(dataset.factor_names) == len(sizes)
    codes = dataset.sample_factors(50, np.random.default_rng(0))
    assert codes.shape == (50, len(sizes)) and (codes >= 0).all() and (codes < np.array(sizes)).all()
    index = dataset.index_of(codes)
    np.testing.assert_array_equal(index, np.ravel_multi_index(codes.T, sizes))
    np.testing.assert_array_equal(dataset.codes_of(index), codes)
    np.testing.assert_array_equal(dataset.images_for(codes[:4]), dataset.images_at(index[:4]))
