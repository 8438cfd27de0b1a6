"""Does swapping a factor's leading unit move that factor, and only it? Read by a held-out classifier.

For each ground-truth factor f of a trained run:

1. the leading unit u_f is the unit with the largest DCI importance for f (the quick LightGBM fit
   that labels the pictures, ``viz.unit_factor``);
2. ``--pairs`` source images are drawn, each with a target image that differs from it in f (the
   target's other factors are drawn afresh);
3. the source's unit u_f is replaced by the target's, and the image is rendered from the source's
   DDIM inversion under the edited units (the report's interchange: the unedited units give the
   source back);
4. a factor classifier that no model has seen (``hspace.learned``'s "heldout" kind: its own seed,
   images and width, trained on clean images) reads the edited image and the unedited round trip.

``moved`` is the share of swaps whose f now reads as the target's value; ``kept`` the share of the
other factors' readings left as they were on the unedited round trip. A factor passes when
``moved >= 0.5`` and ``kept >= 0.8`` (issue 33's bar for a demo a person can see). The fresh-noise
regeneration PSNR of the same sources under their own units is reported too.

    python benchmarks/swap_fidelity.py runs/demo --out benchmarks/results/swap_fidelity-demo.json

The classifier depends only on the dataset and resolution, so it is trained once into
``--classifier-dir`` and reused for every run compared.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from diffdrl.atomic import atomic_write_text
from diffdrl.data.ground_truth import to_model_input
from diffdrl.hspace import learned
from diffdrl.metrics.reconstruction import image_similarity
from diffdrl.training.runs import load_run
from diffdrl.viz.render import inverted_start, reconstruct, render_units
from diffdrl.viz.unit_factor import unit_factor_importance

MOVED_BAR, KEPT_BAR = 0.5, 0.8


def targets_differing(data, source_codes: np.ndarray, factor: int, rng: np.random.Generator) -> np.ndarray:
    """Codes drawn afresh, except that ``factor`` takes any value but the source's."""
    codes = data.sample_factors(len(source_codes), rng)
    size = data.factor_sizes[factor]
    shift = rng.integers(1, size, len(source_codes))  # never 0: the value always changes
    codes[:, factor] = (source_codes[:, factor] + shift) % size
    return codes


@torch.no_grad()
def factor_swaps(run, classifier, importance: np.ndarray, factor: int, pairs: int, steps: int, rng) -> dict:
    data, model = run.data, run.model
    source_codes = data.sample_factors(pairs, rng)
    target_codes = targets_differing(data, source_codes, factor, rng)
    source, target = data.images_for(source_codes), data.images_for(target_codes)
    unit = int(importance[:, factor].argmax())
    units = model.encode(source)  # (P, N)
    units[:, unit] = model.encode(target)[:, unit]
    x_T = inverted_start(model, source, steps)
    kept_units = model.encode(source)
    before = classifier.predict(render_units(model, kept_units, x_T=x_T, steps=steps))
    after = classifier.predict(render_units(model, units, x_T=x_T, steps=steps))
    others = [i for i in range(len(data.factor_sizes)) if i != factor]
    moved = float((after[:, factor] == target_codes[:, factor]).mean())
    kept = float((after[:, others] == before[:, others]).mean())
    return {
        "factor": data.factor_names[factor],
        "unit": unit,
        "unit_share": float(importance[unit, factor] / max(importance[:, factor].sum(), 1e-12)),
        "moved": moved,
        "kept": kept,
        "passes": moved >= MOVED_BAR and kept >= KEPT_BAR,
        "round_trip_reads_source": float((before == source_codes).mean()),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run")
    parser.add_argument("--out", required=True)
    parser.add_argument("--pairs", type=int, default=48, help="swaps per factor")
    parser.add_argument("--steps", type=int, default=25, help="DDIM steps (inversion and rendering)")
    parser.add_argument("--regenerate", type=int, default=64, help="images for the fresh-noise PSNR")
    parser.add_argument("--classifier-dir", default="runs/swap_fidelity")
    parser.add_argument("--classifier-steps", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.pairs < 1 or args.steps < 1:
        parser.error("--pairs and --steps must be >= 1")
    torch.manual_seed(args.seed)
    start = time.perf_counter()
    run = load_run(args.run)
    data = run.data
    learned.require_factors(data, "swap fidelity")
    folder = Path(args.classifier_dir) / f"{run.config.data.name}-{run.config.data.resolution}"
    classifier = learned.classifier_for(
        run.model, data, folder, "heldout", steps=args.classifier_steps, images=4096, progress=True
    )
    importance = unit_factor_importance(run, seed=args.seed)  # (N, F)
    rng = np.random.default_rng(args.seed + 1000)
    rows = [
        factor_swaps(run, classifier, importance, f, args.pairs, args.steps, rng)
        for f in range(len(data.factor_sizes))
    ]
    _, images = run.sample(args.regenerate, args.seed + 2000)
    fresh = reconstruct(run.model, images, seed=args.seed, steps=args.steps)
    result = {
        "run": args.run,
        "step": run_step(args.run),
        "pairs": args.pairs,
        "steps": args.steps,
        "classifier_accuracy": learned.accuracy_of(folder, "heldout"),
        "factors": rows,
        "factors_passing": sum(r["passes"] for r in rows),
        "regeneration_psnr_db": image_similarity((to_model_input(images) + 1) / 2, (fresh.cpu() + 1) / 2)[
            "reconstruction.psnr"
        ],
        "seconds": time.perf_counter() - start,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(args.out), json.dumps(result, indent=1))
    print(f"{'factor':<12} {'unit':>4} {'share':>6} {'moved':>6} {'kept':>6}")
    for r in rows:
        mark = "pass" if r["passes"] else ""
        scores = f"{r['unit_share']:6.2f} {r['moved']:6.2f} {r['kept']:6.2f}"
        print(f"{r['factor']:<12} {r['unit']:>4} {scores} {mark}")
    print(
        f"{result['factors_passing']} of {len(rows)} factors pass "
        f"(moved >= {MOVED_BAR}, kept >= {KEPT_BAR}); "
        f"fresh-noise regeneration PSNR {result['regeneration_psnr_db']:.1f} dB; wrote {args.out}"
    )


def run_step(run_dir: str) -> int | None:
    from diffdrl.training.checkpoint import latest_checkpoint

    checkpoint = latest_checkpoint(Path(run_dir))
    return int(checkpoint.name.removeprefix("step_")) if checkpoint else None


if __name__ == "__main__":
    main()
