"""Datasets: the ground-truth contract, procedural generators, and a registry by name."""

from __future__ import annotations

from collections.abc import Callable

from diffdrl.data.ground_truth import GroundTruthDataset


def _synth_shapes3d(path: str | None, resolution: int) -> GroundTruthDataset:
    from diffdrl.data.synth_shapes3d import SynthShapes3D

    if path is not None:
        raise ValueError("data.path must be empty for the procedural dataset 'synth-shapes3d'")
    return SynthShapes3D(resolution=resolution)


DATASETS: dict[str, Callable[[str | None, int], GroundTruthDataset]] = {
    "synth-shapes3d": _synth_shapes3d,
}


def make_dataset(name: str, path: str | None = None, resolution: int = 64) -> GroundTruthDataset:
    """Build a dataset by registry name; an unknown name errors with the valid ones."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r} (datasets: {', '.join(sorted(DATASETS))})")
    return DATASETS[name](path, resolution)
