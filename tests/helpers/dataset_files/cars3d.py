"""Tiny cars3d files for the reader tests (tests/data/test_cars3d.py) and the contract suite."""

import numpy as np
import scipy.io

AZIMUTHS, ELEVATIONS = 5, 2
LISTED = ["car_003_mesh", "car_001_mesh.mat", "car_002_mesh"]  # list order differs from sorted order


def mesh(car: int, size: int = 8, azimuths: int = AZIMUTHS) -> np.ndarray:
    """``im`` (H, W, 3, azimuth, elevation) whose pixels say (car, azimuth, elevation)."""
    im = np.zeros((size, size, 3, azimuths, ELEVATIONS), np.uint8)
    im[:, :, 0] = 10 * car
    im[:, :, 1] = np.arange(azimuths)[:, None]
    im[:, :, 2] = np.arange(ELEVATIONS)[None, :]
    return im


def write(folder, listed=LISTED, **meshes):
    folder.mkdir(exist_ok=True)
    for car in (1, 2, 3):
        scipy.io.savemat(folder / f"car_00{car}_mesh.mat", {"im": meshes.get(f"car{car}", mesh(car))})
    (folder / "list.txt").write_text("\n".join(listed) + "\n")
    return folder
