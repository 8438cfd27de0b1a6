"""Canonical DCI: our batched exact GBT (``importance="gbt"``) against scikit-learn's, side by side.

Two parts, one run, each case's result written to the JSON as soon as it is done:

- Speed at canonical sizes (10000 train / 5000 test): the 20-unit synth-shapes3d case of
  ``metrics_speed.py`` (a fixed random linear map of the six [0, 1]-scaled factors plus fixed
  per-state noise 0.1; the codes are computed from the factor states, which is what its
  representation does, so no rendering) and the same with 30 units. scikit-learn runs as
  ``dci_from_codes(importance="sklearn", n_jobs=2)`` (one ``GradientBoostingClassifier()`` per
  factor, two factors at a time), ours as ``importance="gbt"`` with ``--backend`` (default
  "auto": the numba kernels on CPU). Ours is timed twice: the first call (which loads or compiles
  the numba kernels) and a warm one (``gbt_s``, the one the speed-up uses).
- Agreement battery (>= 10 cases, smaller samples so that scikit-learn finishes): random and
  structured codes, 5-30 units, 3-8 factors of 2-40 classes, constant and duplicate columns,
  tied (quantised) and near-separable codes. Reported: |D - D_sk|, |C - C_sk|, |I - I_sk| and
  the largest elementwise importance difference. For duplicate columns scikit-learn's choice
  between the copies is random (it depends on ``random_state``), so that case also reports the
  difference with the copies' importances summed and scikit-learn against itself with another
  seed.

    python benchmarks/dci_speed.py                      # everything (an hour or more on 2 busy cores)
    python benchmarks/dci_speed.py --skip-speed          # the battery only
    python benchmarks/dci_speed.py --cases 3 --scale 0.3  # a quick look
    python benchmarks/dci_speed.py --skip-sklearn --skip-battery --backend torch
        # ours alone on the speed cases; scikit-learn's seconds and scores from --sklearn-results
    python benchmarks/dci_speed.py --skip-speed --scale 0.25 --skip-sklearn \
        --sklearn-results benchmarks/results/dci_agreement.json   # the battery, ours refitted only
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import sklearn
import torch

from diffdrl.data.ground_truth import FactorSpace
from diffdrl.metrics.dci import dci_from_codes
from diffdrl.metrics.gbt import BACKENDS

SHAPES3D = (10, 10, 10, 8, 4, 15)
TOLERANCE = {"scores": 0.005, "importance": 0.01}


def projection_case(units: int, num_train: int = 10000, num_test: int = 5000, seed: int = 0):
    """metrics_speed.py's representation: units 0-5 follow one factor each with cross-talk, the rest mix."""
    space = FactorSpace(SHAPES3D)
    rng = np.random.default_rng(seed)
    f = len(SHAPES3D)
    weights = rng.normal(0.0, 0.5, size=(f, units))
    weights[:, :f] = np.eye(f) + 0.25 * rng.normal(size=(f, f))
    noise = (0.1 * rng.standard_normal((len(space), units))).astype(np.float32)
    scale = 1.0 / (np.array(SHAPES3D, dtype=np.float32) - 1)
    draw = np.random.default_rng(0)
    y = np.concatenate([space.sample(num_train, draw), space.sample(num_test, draw)])
    x = ((y * scale) @ weights.astype(np.float32) + noise[space.index_of(y)]).astype(np.float32)
    return x[:num_train], y[:num_train], x[num_train:], y[num_train:]


def battery(scale: float = 1.0) -> list[tuple[str, tuple]]:
    """The agreement cases: (name, (x_train, y_train, x_test, y_test)); ``scale`` shrinks samples."""
    cases = []

    def add(name, y, x, num_train):
        n = int(num_train * scale)
        cases.append(
            (name, (x[:n].astype(np.float32), y[:n], x[n : n + n // 2].astype(np.float32), y[n : n + n // 2]))
        )

    rng = np.random.default_rng(1)

    def factors(sizes, n):
        return rng.integers(0, sizes, size=(n, len(sizes)))

    n = 4000
    y = factors((3, 5, 8, 10), n)
    add("random codes, 10 units x 4 factors", y, rng.normal(size=(n, 10)), 3000)
    y = factors(SHAPES3D, n)
    add("identity codes (factor classes), 6 x 6", y, y.astype(float), 3000)
    y = factors(SHAPES3D, n)
    z = (y / (np.array(SHAPES3D) - 1)) @ rng.normal(size=(6, 20))
    add("linear mix + noise 0.1, 20 x 6", y, z + 0.1 * rng.normal(size=z.shape), 3000)
    y = factors((2, 3, 6, 10, 40), n)
    z = y / (np.array((2, 3, 6, 10, 40)) - 1)
    add(
        "near-separable: identity + noise 0.02, 5 x 5 (2-40 classes)",
        y,
        z + 0.02 * rng.normal(size=z.shape),
        3000,
    )
    y = factors((4, 6, 9), n)
    z = np.concatenate([y + 0.3 * rng.normal(size=y.shape), np.zeros((n, 2)), np.full((n, 3), 7.0)], 1)
    add("constant columns: 3 informative + 5 constant, 3 factors", y, z, 3000)
    y = factors((5, 7, 3, 8), n)
    z = (y / (np.array((5, 7, 3, 8)) - 1)) @ rng.normal(size=(4, 8)) + 0.2 * rng.normal(size=(n, 8))
    add(
        "duplicate columns: 8 units + copies of units 0-3, 4 factors",
        y,
        np.concatenate([z, z[:, :4]], 1),
        3000,
    )
    sizes = (2, 3, 5, 8, 12, 20, 30, 40)
    y = factors(sizes, n)
    z = (y / (np.array(sizes) - 1)) @ rng.normal(size=(8, 30)) + 0.3 * rng.normal(size=(n, 30))
    add("30 units x 8 factors (2-40 classes), mixed + noise 0.3", y, z, 3000)
    y = factors((2, 2, 2), n)
    z = np.concatenate([y + 0.5 * rng.normal(size=y.shape), rng.normal(size=(n, 2))], 1)
    add("binary factors: 5 units x 3 factors", y, z, 3000)
    y = factors((4, 5, 6, 7, 8), n)
    z = (y / (np.array((4, 5, 6, 7, 8)) - 1)) @ rng.normal(size=(5, 10)) + 0.2 * rng.normal(size=(n, 10))
    add("tied values: quantised to 0.25, 10 x 5", y, np.round(4 * z) / 4, 3000)
    y = factors((6, 10, 4, 15, 3, 9, 5), n)
    z = np.concatenate([y[:, :4] / 10 + 0.1 * rng.normal(size=(n, 4)), rng.normal(size=(n, 11))], 1)
    add("partial: 4 of 7 factors encoded + 11 noise units", y, z, 3000)
    y = factors((40, 3, 5), n)
    z = np.stack([y[:, 0] + 0.5 * rng.normal(size=n), y[:, 1] + y[:, 2], rng.normal(size=n)], 1)
    z = np.concatenate([z, rng.standard_t(2, size=(n, 2))], 1)
    add("40 classes, heavy-tailed noise units, 5 x 3", y, z, 3000)
    return cases


KEYS = ("disentanglement", "completeness", "informativeness_test")


def compare(case, seed: int = 0, backend: str = "auto", sklearn_row: dict | None = None) -> dict:
    """Fit both estimators on one case; differences, per-side seconds, scores.

    With ``sklearn_row`` (a previous run's row for this case) scikit-learn is not run: its
    seconds and scores come from that row, and the importance difference is not available.
    """
    if sklearn_row is None:
        start = time.perf_counter()
        sk = dci_from_codes(*case, importance="sklearn", random_state=seed, n_jobs=2)
        sk_s = time.perf_counter() - start
        sk_scores = {k: getattr(sk, k) for k in KEYS}
    else:
        sk, sk_s, sk_scores = None, sklearn_row["sklearn_s"], sklearn_row["sklearn"]
    start = time.perf_counter()
    dci_from_codes(*case, importance="gbt", gbt_backend=backend)  # loads or compiles numba kernels
    first_s = time.perf_counter() - start
    start = time.perf_counter()
    ours = dci_from_codes(*case, importance="gbt", gbt_backend=backend)
    ours_s = time.perf_counter() - start
    out = {
        "units": case[0].shape[1],
        "factors": case[1].shape[1],
        "classes": [int(len(np.unique(c))) for c in case[1].T],
        "num_train": len(case[0]),
        "gbt_backend": ours.gbt_backend,
        "sklearn_s": round(sk_s, 2),
        "sklearn_s_from_previous_run": sklearn_row is not None,
        "gbt_first_call_s": round(first_s, 2),
        "gbt_s": round(ours_s, 2),
        "speedup": round(sk_s / ours_s, 1),
        "sklearn": sk_scores,
        "gbt": {k: getattr(ours, k) for k in KEYS},
        "abs_difference": {k: abs(sk_scores[k] - getattr(ours, k)) for k in KEYS},
        "importance_max_abs_difference": None
        if sk is None
        else float(np.abs(sk.importance_matrix - ours.importance_matrix).max()),
    }
    out["within_tolerance"] = bool(
        max(out["abs_difference"].values()) <= TOLERANCE["scores"]
        and (sk is None or out["importance_max_abs_difference"] <= TOLERANCE["importance"])
    )
    return out, sk, ours


def host(backend: str) -> dict:
    import numba

    return {
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "numba_threads": numba.get_num_threads(),
        "gbt_backend_option": backend,
        "load_average_at_start": os.getloadavg(),
        "versions": {
            "numpy": np.__version__,
            "scikit-learn": sklearn.__version__,
            "torch": torch.__version__,
            "numba": numba.__version__,
        },
    }


def save(result: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2))
    os.replace(tmp, path)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--skip-speed", action="store_true", help="only the agreement battery")
    parser.add_argument("--skip-battery", action="store_true", help="only the speed cases")
    parser.add_argument("--cases", type=int, default=None, help="the first N battery cases only")
    parser.add_argument("--scale", type=float, default=1.0, help="shrink the battery's sample counts")
    parser.add_argument(
        "--self-check", type=int, default=0, help="scikit-learn seed 0 vs seed 1 on the first N battery cases"
    )
    parser.add_argument("--backend", default="auto", choices=BACKENDS, help="gbt's backend (see gbt)")
    parser.add_argument(
        "--skip-sklearn",
        action="store_true",
        help="fit ours only; scikit-learn's seconds and scores from --sklearn-results (same cases)",
    )
    parser.add_argument("--sklearn-results", default="benchmarks/results/dci_speed.json")
    parser.add_argument("--units", default="20,30", help="the speed cases' unit counts, comma-separated")
    parser.add_argument(
        "--out", default=None, help="default results/dci_speed.json, dci_speed_gbt.json with --skip-sklearn"
    )
    args = parser.parse_args()
    default = "dci_speed_gbt.json" if args.skip_sklearn else "dci_speed.json"
    path = Path(args.out or f"benchmarks/results/{default}")
    previous = json.loads(Path(args.sklearn_results).read_text()) if args.skip_sklearn else {}
    result = {
        "host": host(args.backend),
        "tolerance": TOLERANCE,
        "speed": {},
        "battery": {},
        "sklearn_self_agreement": {},
    }
    if not args.skip_speed:
        for units in (int(u) for u in args.units.split(",")):
            name = f"synth-shapes3d projection, {units} units x 6 factors, 10000/5000"
            old = previous.get("speed", {}).get(name)
            if args.skip_sklearn and old is None:
                raise SystemExit(f"no scikit-learn row for {name!r} in {args.sklearn_results}")
            row, _, _ = compare(projection_case(units), backend=args.backend, sklearn_row=old)
            result["speed"][name] = row
            save(result, path)
            print(
                f"{name}: sklearn {row['sklearn_s']:.1f} s, gbt ({row['gbt_backend']}) {row['gbt_s']:.1f} s "
                f"warm, {row['gbt_first_call_s']:.1f} s first call ({row['speedup']}x); "
                f"diff {row['abs_difference']}, importance {row['importance_max_abs_difference']}",
                flush=True,
            )
    if not args.skip_battery:
        for name, case in battery(args.scale)[: args.cases]:
            old = previous.get("battery", {}).get(name)
            if args.skip_sklearn and (old is None or old["num_train"] != len(case[0])):
                raise SystemExit(
                    f"no scikit-learn row for {name!r} at this --scale in {args.sklearn_results}"
                )
            row, sk, ours = compare(case, backend=args.backend, sklearn_row=old)
            if name.startswith("duplicate") and sk is not None:
                merged = lambda r: np.concatenate([r[:4] + r[8:], r[4:8]])  # noqa: E731 - copies summed
                row["importance_max_abs_difference_copies_summed"] = float(
                    np.abs(merged(sk.importance_matrix) - merged(ours.importance_matrix)).max()
                )
                other = dci_from_codes(*case, importance="sklearn", random_state=1, n_jobs=2)
                row["sklearn_seed0_vs_seed1"] = {
                    "disentanglement": abs(other.disentanglement - sk.disentanglement),
                    "completeness": abs(other.completeness - sk.completeness),
                    "importance_max_abs_difference": float(
                        np.abs(other.importance_matrix - sk.importance_matrix).max()
                    ),
                }
            result["battery"][name] = row
            save(result, path)
            print(
                f"{name}: {row['abs_difference']}, importance {row['importance_max_abs_difference']}, "
                f"sklearn {row['sklearn_s']:.1f} s, gbt {row['gbt_s']:.1f} s",
                flush=True,
            )
    for name, case in battery(args.scale)[: args.self_check]:
        runs = [dci_from_codes(*case, importance="sklearn", random_state=seed, n_jobs=2) for seed in (0, 1)]
        keys = ("disentanglement", "completeness", "informativeness_test")
        row = {k: abs(getattr(runs[0], k) - getattr(runs[1], k)) for k in keys}
        row["importance_max_abs_difference"] = float(
            np.abs(runs[0].importance_matrix - runs[1].importance_matrix).max()
        )
        result["sklearn_self_agreement"][name] = {"num_train": len(case[0]), "seed0_vs_seed1": row}
        save(result, path)
        print(f"{name}: scikit-learn seed 0 vs 1: {row}", flush=True)
    print(f"saved {path}")


if __name__ == "__main__":
    main()
