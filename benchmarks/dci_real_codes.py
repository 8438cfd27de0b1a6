"""Canonical DCI on real models' codes: ours (``importance="gbt"``) against scikit-learn's seeds (issue 27).

Issue 23's battery (``dci_speed.py``) is synthetic codes; this one scores the units of real models,
whose codes are correlated and full of small nodes that several units split alike (exact ties).
Per case, scikit-learn's ``GradientBoostingClassifier`` runs at ``random_state`` 0-4 and ours at
the same seeds; ours passes when its seed-0 D and C lie within scikit-learn's range widened by
``MARGIN`` (the rows also give ours' own range over the five seeds).

Cases (``CASES``): an untrained, a 300-step and a longer-trained tiny model on each procedural
dataset, a 5-factor labelled-arrays set of 6, 6, 3, 8 and 8 values rendered from synth-shapes3d
(``five_factor_file``) untrained and after 300 steps (issue 27's case, at its 4000/2000), and a
beta-VAE baseline. The codes scored are saved, compressed, under
``benchmarks/results/dci_real_codes/`` (the first ``num_train`` rows train, the next ``num_test``
test), so the scoring reruns without the models. Making them (``--encode``) needs the runs; the
training commands, about 40 CPU-minutes in all, are in benchmarks/RESULTS.md.

    python benchmarks/dci_real_codes.py --five-factor runs/battery/five.npz   # write the dataset file
    python benchmarks/dci_real_codes.py --encode        # codes from the runs named in CASES
    python benchmarks/dci_real_codes.py                 # score every case: table + JSON
    python benchmarks/dci_real_codes.py --cases five    # the cases whose name contains "five"
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import time
from pathlib import Path

import numpy as np
import sklearn

from diffdrl.metrics.dci import dci_from_codes

CODES = Path("benchmarks/results/dci_real_codes")
SEEDS = range(5)
MARGIN = 0.003
KEYS = ("disentanglement", "completeness", "informativeness_test")
BATTERY = Path("runs/battery")
LATENT8 = "/work/main/runs/cpu_budget/tiny-cpu-latent8-seed0"  # a 30-minute latent model (read only)
DEMO = "/work/main/runs/demo-tiny-cpu"  # 400 steps of batch 64, pixel tiny-cpu (read only)

# name: (run directory, checkpoint or None for the latest or "untrained", train, test)
CASES = {
    "five-factor 6,6,3,8,8, tiny-cpu 300 steps (issue 27)": (f"{BATTERY}/five-300", None, 4000, 2000),
    "five-factor 6,6,3,8,8, untrained": (f"{BATTERY}/five-300", "untrained", 1000, 500),
    "synth-shapes3d, untrained": (DEMO, "untrained", 1000, 500),
    "synth-shapes3d, 200 steps (batch 64)": (DEMO, "step_200", 1000, 500),
    "synth-shapes3d, 400 steps (batch 64)": (DEMO, None, 1000, 500),
    "synth-shapes3d, latent8 2310 steps": (LATENT8, None, 1000, 500),
    "synth-dsprites, untrained": (f"{BATTERY}/synth-dsprites-b16", "untrained", 600, 300),
    "synth-dsprites, 300 steps (batch 16)": (f"{BATTERY}/synth-dsprites-b16", "step_300", 600, 300),
    "synth-dsprites, 600 steps (batch 16)": (f"{BATTERY}/synth-dsprites-b16", "step_600", 600, 300),
    "synth-xyobject, untrained": (f"{BATTERY}/synth-xyobject-b16", "untrained", 600, 300),
    "synth-xyobject, 300 steps (batch 16)": (f"{BATTERY}/synth-xyobject-b16", "step_300", 600, 300),
    "synth-xyobject, 600 steps (batch 16)": (f"{BATTERY}/synth-xyobject-b16", "step_600", 600, 300),
    "beta-VAE, synth-shapes3d, 1000 steps": (f"{BATTERY}/betavae", None, 1000, 500),
}

# The five-factor set: synth-shapes3d states at these factor values, orientation fixed (index 7).
FIVE_FACTOR = {
    "floor_hue": (0, [0, 2, 4, 5, 7, 9]),
    "wall_hue": (1, [0, 2, 4, 5, 7, 9]),
    "shape": (4, [0, 1, 2]),
    "scale": (3, list(range(8))),
    "object_hue": (2, [0, 1, 3, 4, 5, 6, 8, 9]),
}


def five_factor_file(path: Path, resolution: int = 32) -> None:
    """A labelled-arrays file of every state of FIVE_FACTOR's grid (6 x 6 x 3 x 8 x 8 = 6912)."""
    from diffdrl.data.synth_shapes3d import SynthShapes3D

    sizes = [len(values) for _, values in FIVE_FACTOR.values()]
    grid = np.array(list(itertools.product(*map(range, sizes))))
    states = np.full((len(grid), 6), 7)
    for i, (column, values) in enumerate(FIVE_FACTOR.values()):
        states[:, column] = np.array(values)[grid[:, i]]
    images = SynthShapes3D(resolution).images_for(states)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        path,
        images=images,
        factors=grid.astype(np.int32),
        factor_names=np.array(list(FIVE_FACTOR)),
        factor_sizes=np.array(sizes),
    )


def codes_path(name: str) -> Path:
    slug = "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")
    return CODES / f"{'-'.join(filter(None, slug.split('-')))}.npz"


def encode(name: str) -> None:
    """Encode ``num_train + num_test`` dataset samples (seed 0) with the case's model; save them."""
    from diffdrl.api import encode_images, load_run, untrained_run

    run_dir, checkpoint, num_train, num_test = CASES[name]
    if checkpoint == "untrained":
        run = untrained_run(run_dir)
    else:
        run = load_run(
            run_dir, checkpoint=None if checkpoint is None else Path(run_dir, "checkpoints", checkpoint)
        )
    factors, images = run.sample(num_train + num_test, seed=0)
    units = encode_images(run.model, images)
    CODES.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(codes_path(name), units=units, factors=factors.astype(np.int16))


def score(name: str, previous: dict | None = None) -> dict:
    """Ours and scikit-learn at SEEDS on one case's saved codes; the pass test on ours' seed 0.

    scikit-learn's rows are taken from ``previous`` (this case's row of an earlier run, same
    codes) when given: they do not depend on our code, and they are most of the time.
    """
    _, _, num_train, num_test = CASES[name]
    saved = np.load(codes_path(name))
    x, y = saved["units"], saved["factors"].astype(np.int64)
    split = (
        x[:num_train],
        y[:num_train],
        x[num_train : num_train + num_test],
        y[num_train : num_train + num_test],
    )
    rows = {}
    if previous is not None:
        rows["sklearn"] = {**previous["sklearn"], "from_previous_run": True}
    for importance in ("gbt", "sklearn")[: 1 if previous else 2]:
        runs, start = [], time.perf_counter()
        for seed in SEEDS:
            result = dci_from_codes(*split, importance=importance, random_state=seed, n_jobs=2)
            runs.append({k: getattr(result, k) for k in KEYS})
        rows[importance] = {"per_seed": runs, "seconds": round(time.perf_counter() - start, 1)}
    row = {
        "units": x.shape[1],
        "classes": [int(len(np.unique(c))) for c in y.T],
        "num_train": num_train,
        "num_test": num_test,
        **rows,
        "margin": MARGIN,
    }
    for key in KEYS:
        sk = [r[key] for r in rows["sklearn"]["per_seed"]]
        ours = [r[key] for r in rows["gbt"]["per_seed"]]
        row[key] = {
            "sklearn_range": [min(sk), max(sk)],
            "gbt_range": [min(ours), max(ours)],
            "gbt_seed0": ours[0],
            "gbt_seed0_within": bool(min(sk) - MARGIN <= ours[0] <= max(sk) + MARGIN),
            "gbt_seeds_within": sum(min(sk) - MARGIN <= v <= max(sk) + MARGIN for v in ours),
        }
    row["within"] = row["disentanglement"]["gbt_seed0_within"] and row["completeness"]["gbt_seed0_within"]
    return row


def load(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {"cases": {}}


def table_line(name: str, row: dict) -> str:
    cells = [name, f"{row['units']} x {len(row['classes'])} ({','.join(map(str, row['classes']))})"]
    cells.append(f"{row['num_train']}/{row['num_test']}")
    for key in ("disentanglement", "completeness"):
        r = row[key]
        cells += [
            f"{r['sklearn_range'][0]:.4f}-{r['sklearn_range'][1]:.4f}",
            f"{r['gbt_seed0']:.4f}",
            f"{r['gbt_range'][0]:.4f}-{r['gbt_range'][1]:.4f}",
        ]
    cells.append("yes" if row["within"] else "**no**")
    return "| " + " | ".join(cells) + " |"


HEADER = (
    "| case | units x factors (classes) | train/test | D sklearn 0-4 | D ours seed 0 | D ours 0-4 "
    "| C sklearn 0-4 | C ours seed 0 | C ours 0-4 | within +-0.003 |\n|" + "---|" * 10
)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--five-factor", type=Path, help="write the five-factor labelled-arrays file here and exit"
    )
    parser.add_argument("--encode", action="store_true", help="encode the cases' codes from their runs")
    parser.add_argument("--cases", default="", help="only the cases whose name contains this")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/dci_real_codes.json"))
    parser.add_argument(
        "--rerun-sklearn", action="store_true", help="refit scikit-learn even where --out has its rows"
    )
    args = parser.parse_args()
    if args.five_factor:
        five_factor_file(args.five_factor)
        print(f"wrote {args.five_factor}")
        return
    names = [n for n in CASES if args.cases in n]
    if args.encode:
        for name in names:
            encode(name)
            print(f"encoded {name} -> {codes_path(name)}", flush=True)
        return
    host = {
        "cpus": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
        "scikit-learn": sklearn.__version__,
    }
    print(HEADER)
    for name in names:
        old = load(args.out)["cases"].get(name)
        row = score(name, None if args.rerun_sklearn or old is None else old)
        result = load(args.out)  # re-read: another invocation may have added cases meanwhile
        result["cases"][name] = {**row, "host": host}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(result, indent=2))
        os.replace(tmp, args.out)
        print(table_line(name, row), flush=True)
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
