"""Datasets: the ground-truth contract, procedural generators, file readers, and a registry by name.

Each registry entry is a factory ``(path, resolution, **options) -> dataset``; variants that a
config must select (MPI3D's three sets, CelebA's crop) are separate names, so ``data.name``
alone chooses them. Procedural sets take no path; readers require one. See docs/datasets.md.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the registry itself stays torch-free: ``diffdrl datasets list`` answers at once
    from diffdrl.data.ground_truth import GroundTruthDataset


def _procedural(name: str, path: str | None) -> None:
    if path is not None and str(path) != "":
        raise ValueError(f"data.path must be empty for the procedural dataset {name!r}, got {path!r}")


def _synth_shapes3d(path: str | None, resolution: int, **options) -> GroundTruthDataset:
    from diffdrl.data.synth_shapes3d import SynthShapes3D

    _procedural("synth-shapes3d", path)
    return SynthShapes3D(resolution=resolution, **options)


def _synth_dsprites(path: str | None, resolution: int, **options) -> GroundTruthDataset:
    from diffdrl.data.synth_dsprites import SynthDSprites

    _procedural("synth-dsprites", path)
    return SynthDSprites(resolution=resolution, **options)


def _synth_xyobject(path: str | None, resolution: int, **options) -> GroundTruthDataset:
    from diffdrl.data.synth_xyobject import SynthXYObject

    _procedural("synth-xyobject", path)
    return SynthXYObject(resolution=resolution, **options)


def _shapes3d(path: str | None, resolution: int, **options) -> GroundTruthDataset:
    from diffdrl.data.shapes3d import Shapes3D

    return Shapes3D(path, resolution, **options)


def _dsprites(path: str | None, resolution: int, **options) -> GroundTruthDataset:
    from diffdrl.data.dsprites import DSprites

    return DSprites(path, resolution, **options)


def _mpi3d(variant: str, path: str | None, resolution: int, **options) -> GroundTruthDataset:
    from diffdrl.data.mpi3d import MPI3D

    return MPI3D(path, variant, resolution, **options)


def _cars3d(path: str | None, resolution: int, **options) -> GroundTruthDataset:
    from diffdrl.data.cars3d import Cars3D

    return Cars3D(path, resolution, **options)


def _labelled_arrays(path: str | None, resolution: int, **options) -> GroundTruthDataset:
    from diffdrl.data.labelled_arrays import LabelledArrays

    return LabelledArrays(path, resolution, **options)


def _celeba(crop: str, path: str | None, resolution: int, **options):
    from diffdrl.data.celeba import CelebA

    return CelebA(path, resolution, **{"crop": crop, **options})


def _image_folder(path: str | None, resolution: int, **options):
    from diffdrl.data.image_folder import ImageFolder

    return ImageFolder(path, resolution, **options)


DATASETS: dict[str, Callable[..., GroundTruthDataset]] = {
    "synth-shapes3d": _synth_shapes3d,
    "synth-dsprites": _synth_dsprites,
    "synth-xyobject": _synth_xyobject,
    "shapes3d": _shapes3d,
    "dsprites": _dsprites,
    "mpi3d-toy": partial(_mpi3d, "toy"),
    "mpi3d-realistic": partial(_mpi3d, "realistic"),
    "mpi3d-real": partial(_mpi3d, "real"),
    "cars3d": _cars3d,
    "labelled-arrays": _labelled_arrays,
    # Unlabelled (no factor grid): train on them; factor metrics do not apply.
    "celeba": partial(_celeba, "nashae"),
    "celeba-dlib": partial(_celeba, "dlib"),
    "image-folder": _image_folder,
}


def make_dataset(name: str, path: str | None = None, resolution: int = 64, **options) -> GroundTruthDataset:
    """Build a dataset by registry name; an unknown name errors with the valid ones.

    ``options`` go to the dataset's constructor (e.g. ``in_memory=True`` for shapes3d,
    ``strict=True`` / ``sha256=...`` for a published file, ``crop=`` for celeba).
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r} (datasets: {', '.join(sorted(DATASETS))})")
    return DATASETS[name](path, resolution, **options)
