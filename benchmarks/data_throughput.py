"""Data throughput: images/s of every procedural generator and file reader, against what training
consumes (tiny-cpu ~71 images/s on 2 CPU cores; see train_throughput.py).

Readers are timed on files this script writes in a temporary folder, in the real formats but with
smaller factor grids (the real files cannot be downloaded here): random batches of 256 indices,
as the trainer draws them, at the file's native 64x64 and resized to 32x32.

    python benchmarks/data_throughput.py
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from diffdrl.data import make_dataset

BATCH = 256


def images_per_s(data, repeats: int = 5) -> float:
    rng = np.random.default_rng(0)
    data.images_at(rng.integers(0, len(data), BATCH))  # warm-up (caches, file handles)
    start = time.perf_counter()
    for _ in range(repeats):
        data.images_at(rng.integers(0, len(data), BATCH))
    return repeats * BATCH / (time.perf_counter() - start)


def write_files(folder: Path) -> dict[str, tuple[str, dict]]:
    """Small files in each format; returns registry name -> (path, options)."""
    rng = np.random.default_rng(0)
    sizes = (2, 2, 4, 8, 4, 15)  # Shapes3D's layout, fewer hues: 7,680 images
    n = int(np.prod(sizes))
    images = rng.integers(0, 256, (n, 64, 64, 3), dtype=np.uint8)
    grid = np.stack(np.unravel_index(np.arange(n), sizes), -1)
    values = [
        np.arange(sizes[0]) / 10,
        np.arange(sizes[1]) / 10,
        np.arange(sizes[2]) / 10,
        np.linspace(0.75, 1.25, sizes[3]),
        np.arange(sizes[4], dtype=float),
        np.linspace(-30, 30, sizes[5]),
    ]
    labels = np.stack([values[k][grid[:, k]] for k in range(6)], -1)
    with h5py.File(folder / "3dshapes.h5", "w") as f:
        f.create_dataset("images", data=images, chunks=(1, 64, 64, 3))
        f.create_dataset("labels", data=labels)
    mpi_sizes = (2, 2, 2, 3, 3, 8, 10)  # MPI3D's layout, fewer states: 5,760 images
    np.savez(
        folder / "mpi3d_toy.npz",
        images=rng.integers(0, 256, (int(np.prod(mpi_sizes)), 64, 64, 3), dtype=np.uint8),
    )
    np.savez(
        folder / "mine.npz",
        images=images,
        factors=grid,
        factor_sizes=np.array(sizes),
        factor_names=np.array(["floor", "wall", "object", "scale", "shape", "orientation"]),
    )
    return {
        "shapes3d": (str(folder / "3dshapes.h5"), {}),
        "shapes3d (in memory)": (str(folder / "3dshapes.h5"), {"in_memory": True}),
        "mpi3d-toy (memory-mapped)": (str(folder / "mpi3d_toy.npz"), {"factor_sizes": mpi_sizes}),
        "labelled-arrays": (str(folder / "mine.npz"), {}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    rows = []
    for name in ("synth-shapes3d", "synth-dsprites", "synth-xyobject"):
        for resolution in (32, 64):
            rows.append(
                {
                    "dataset": name,
                    "resolution": resolution,
                    "images_per_s": images_per_s(make_dataset(name, None, resolution)),
                }
            )
    with tempfile.TemporaryDirectory() as tmp:
        for label, (path, options) in write_files(Path(tmp)).items():
            name = label.split(" ")[0]
            for resolution in (64, 32):
                data = make_dataset(name, path, resolution, **options)
                rows.append({"dataset": label, "resolution": resolution, "images_per_s": images_per_s(data)})
    for r in rows:
        print(
            f"{r['dataset']:>28} {r['resolution']:>3}x{r['resolution']:<3} {r['images_per_s']:10.0f} images/s"
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "data_throughput-cpu.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(
        json.dumps({"batch": BATCH, "rows": rows, "training_consumes": {"tiny-cpu": 71.3}}, indent=2)
    )
    os.replace(tmp, path)
    print(f"saved {path}")


if __name__ == "__main__":
    main()
