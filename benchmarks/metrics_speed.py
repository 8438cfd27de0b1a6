"""Speed of the metrics suite on synth-shapes3d (32 x 32) with a cheap 20-unit representation.

The representation is a fixed random linear map of the true factors plus fixed per-state noise:
each rendered image carries its factor codes in six pixels of its first row, which ``represent``
reads back, so encoding costs nothing and the measured time splits into rendering, representing
and the metric's own work. Units 0-5 follow one factor each with some cross-talk; units 6-19
are random mixtures, so the scores sit mid-range, where metric variants disagree most.

Rendering speed swings widely with other load on the machine (torch threads oversubscribed), so
compare metric times, not render times, across runs. Each metric runs alone under the canonical
preset (no shared cache, as if run separately). DCI is timed on one shared sample (10000/5000)
with scikit-learn GBT (canonical, slow) and with LightGBM gain importances (the fast variant),
reporting both values. Then ``evaluate`` runs the whole fast preset once. Results go to
benchmarks/results/metrics_speed.json.

    python benchmarks/metrics_speed.py                 # everything (several minutes on 2 cores)
    python benchmarks/metrics_speed.py --skip-gbt      # without canonical DCI
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import lightgbm
import numpy as np
import scipy
import sklearn
import torch

from diffdrl.data.ground_truth import GroundTruthDataset
from diffdrl.data.synth_shapes3d import SynthShapes3D
from diffdrl.metrics import METRICS, evaluate
from diffdrl.metrics.dci import dci_from_codes
from diffdrl.metrics.sampling import sample_points

NUM_UNITS = 20


class Timed(GroundTruthDataset):
    """SynthShapes3D whose images carry their codes (red channel of the first row's first pixels)."""

    def __init__(self, resolution: int):
        self.base = SynthShapes3D(resolution=resolution)
        self.factor_names, self.factor_sizes = self.base.factor_names, self.base.factor_sizes
        self.seconds = 0.0

    def images_for(self, codes: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        images = self.base.images_for(codes)
        images[:, 0, : self.num_factors, 0] = codes
        self.seconds += time.perf_counter() - start
        return images


class Projection:
    """Fixed random linear map of the [0, 1]-scaled factors plus fixed per-state noise."""

    def __init__(self, data: Timed, seed: int = 0, noise: float = 0.1):
        rng = np.random.default_rng(seed)
        f = data.num_factors
        weights = rng.normal(0.0, 0.5, size=(f, NUM_UNITS))
        weights[:, :f] = np.eye(f) + 0.25 * rng.normal(size=(f, f))
        self.weights, self.data = weights.astype(np.float32), data
        self.scale = 1.0 / (np.array(data.factor_sizes, dtype=np.float32) - 1)
        self.noise = (noise * rng.standard_normal((len(data), NUM_UNITS))).astype(np.float32)
        self.seconds = 0.0

    def __call__(self, images: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        codes = images[:, 0, : self.data.num_factors, 0].astype(np.int64)
        z = ((codes * self.scale) @ self.weights + self.noise[self.data.index_of(codes)]).astype(np.float32)
        self.seconds += time.perf_counter() - start
        return z


def timed(data: Timed, represent: Projection, run) -> tuple[object, dict[str, float]]:
    data.seconds = represent.seconds = 0.0
    start = time.perf_counter()
    out = run()
    total = time.perf_counter() - start
    times = {
        "total_s": total,
        "render_s": data.seconds,
        "represent_s": represent.seconds,
        "metric_s": total - data.seconds - represent.seconds,
    }
    return out, {k: round(v, 3) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--skip-gbt", action="store_true", help="skip canonical (GBT) DCI")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()

    data = Timed(args.resolution)
    represent = Projection(data)
    _, warm = timed(
        data, represent, lambda: data.images_for(data.space.codes_of(np.arange(0, len(data), 1000)))
    )
    print(f"renderer warm-up (ray-casting the 480 geometries): {warm['total_s']:.1f} s")

    per_metric = {}
    for name, metric in METRICS.items():
        if name == "dci":
            continue
        scores, times = timed(data, represent, lambda m=metric: m(data, represent, np.random.default_rng(0)))
        per_metric[name] = {**times, "scores": scores}
        print(
            f"{name:>13}: metric {times['metric_s']:6.1f} s | render {times['render_s']:6.1f} s"
            f" | represent {times['represent_s']:5.1f} s | "
            + ", ".join(f"{k} {v:.3f}" for k, v in scores.items())
        )

    rng = np.random.default_rng(0)  # draws as dci() does: train set, then test set
    ((x_train, y_train), (x_test, y_test)), sample_times = timed(
        data,
        represent,
        lambda: tuple(sample_points(data, represent, n, rng, encode_batch_size=4096) for n in (10000, 5000)),
    )
    dci_results = {"render_and_represent_s": round(sample_times["total_s"], 3)}
    for importance in ("lightgbm",) if args.skip_gbt else ("lightgbm", "gbt"):
        start = time.perf_counter()
        r = dci_from_codes(x_train, y_train, x_test, y_test, importance=importance)
        seconds = time.perf_counter() - start
        dci_results[importance] = {
            "metric_s": round(seconds, 3),
            "disentanglement": r.disentanglement,
            "completeness": r.completeness,
            "informativeness_test": r.informativeness_test,
        }
        print(
            f"  dci {importance:>8}: {seconds:6.1f} s | D {r.disentanglement:.4f} C {r.completeness:.4f}"
            f" I {r.informativeness_test:.4f}"
        )
    if "gbt" in dci_results:
        gbt, fast = dci_results["gbt"], dci_results["lightgbm"]
        dci_results["abs_difference"] = {
            k: abs(gbt[k] - fast[k]) for k in ("disentanglement", "completeness", "informativeness_test")
        }
        dci_results["speedup"] = round(gbt["metric_s"] / fast["metric_s"], 1)

    fast_scores, fast_times = timed(
        data, represent, lambda: evaluate(data, represent, preset="fast", progress=False)
    )
    print(f"evaluate(preset='fast'), all metrics with the shared cache: {fast_times}")

    suite_metric_s = sum(m["metric_s"] for m in per_metric.values())
    summary = {
        "canonical_suite_metric_s_without_dci": round(suite_metric_s, 3),
        "canonical_suite_metric_s_with_gbt_dci": round(suite_metric_s + dci_results["gbt"]["metric_s"], 3)
        if "gbt" in dci_results
        else None,
        "canonical_suite_metric_s_with_lightgbm_dci": round(
            suite_metric_s + dci_results["lightgbm"]["metric_s"], 3
        ),
        "canonical_render_s": round(sum(m["render_s"] for m in per_metric.values()), 3),
    }
    print(json.dumps(summary, indent=2))
    host = {
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "versions": {
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "scikit-learn": sklearn.__version__,
            "lightgbm": lightgbm.__version__,
            "torch": torch.__version__,
        },
    }
    result = {
        "host": host,
        "setup": {"dataset": f"synth-shapes3d {args.resolution}x{args.resolution}", "units": NUM_UNITS},
        "renderer_warmup_s": warm["total_s"],
        "canonical_per_metric": per_metric,
        "dci_10000_5000": dci_results,
        "fast_preset": {**fast_times, "scores": fast_scores},
        "summary": summary,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "metrics_speed.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2))
    os.replace(tmp, path)
    print(f"saved {path}")


if __name__ == "__main__":
    main()
