"""Every file reader trains and encodes through the CLI by config alone (data.name + data.path).

MPI3D is the exception: a file small enough for a test cannot hold the published 1,036,800-image
grid, and the smaller grid is only reachable with the ``factor_sizes`` option (test_mpi3d.py)."""

import numpy as np
import pytest

from diffdrl.cli import main
from helpers.dataset_files.cars3d import write as write_cars
from helpers.dataset_files.celeba import write as write_celeba
from helpers.dataset_files.dsprites import write as write_dsprites
from helpers.dataset_files.labelled_arrays import write_h5, write_npz
from helpers.tiny import TINY

BUILDERS = {
    "dsprites": lambda tmp: write_dsprites(tmp / "dsprites.npz"),
    "cars3d": lambda tmp: write_cars(tmp / "cars"),
    "celeba": lambda tmp: write_celeba(tmp / "celeba")[0],
    "celeba-dlib": lambda tmp: write_celeba(tmp / "celeba")[0],
    "labelled-arrays": lambda tmp: write_npz(tmp / "mine.npz"),
    "labelled-arrays h5": lambda tmp: write_h5(tmp / "mine.h5"),
}


@pytest.mark.parametrize("case", list(BUILDERS))
def test_train_and_encode_by_config(case, tmp_path):
    path = BUILDERS[case](tmp_path)
    name = case.split(" ")[0]
    run = tmp_path / "run"
    argv = [
        "train",
        "--out",
        str(run),
        "--no-progress",
        *TINY,
        "train.steps=1",
        f"data.name={name}",
        f"data.path={path}",
    ]
    assert main(argv) == 0
    assert main(["encode", str(run), "--out", str(tmp_path / "codes.npz"), "--num", "4"]) == 0
    codes = np.load(tmp_path / "codes.npz", allow_pickle=False)
    assert codes["units"].shape == (4, 3) and np.isfinite(codes["units"]).all()
    assert ("factors" in codes) == (not name.startswith("celeba"))
