"""h-space and prior-side methods against EncDiff's own unit swaps, on one trained run.

For every method, on the same DDIM-inverted source images of synth-shapes3d:

- **edit fidelity**, scored by a *held-out* factor classifier (other seed, other images, wider;
  never used by any method): for each factor, the direction (unit, PC, Jacobian direction, learned
  block, guidance target) that changes it most on a calibration half is applied to a test half;
  ``target_changed`` = share of test images whose predicted factor changed, ``others_kept`` = share
  of the other factors' predictions left unchanged (both against the unedited reconstruction
  through the same sampler), averaged over factors;
- **DCI** of the codes each unsupervised method defines (units; h_t projected on the top PCs at
  t_edit; tokens projected on dh/dc's directions; h_t projected on dh/dx's image directions),
  LightGBM importances on a small sample (a cheap DCI, comparable across methods here only);
- subspace diffusion: sigma_perp, the t1 sweep, and how often regenerated sources keep their
  predicted factors relative to plain DDIM; the isometric regulariser: seconds per training step
  with and without it (x -> h and tokens -> h) and L_iso of the checkpoint.

    python benchmarks/hspace.py runs/hspace-tiny --out benchmarks/results/hspace.json

Writes the JSON after every method, so a killed run keeps what it measured.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from diffdrl.atomic import atomic_write_text
from diffdrl.diffusion.draws import StepDraws
from diffdrl.hspace import directions as hd
from diffdrl.hspace import learned
from diffdrl.hspace.bottleneck import denoiser_of
from diffdrl.hspace.interval import measure_interval
from diffdrl.hspace.subspace import choose_t1, divergence_sweep, subspace_sample
from diffdrl.metrics.dci import dci_from_codes
from diffdrl.training.runs import load_run


def x_of(src):
    return src.x0


def fidelity(before: np.ndarray, edits: dict, n_cal: int) -> dict:
    """Per factor, the edit that changes it most on the calibration rows, scored on the rest."""
    n_factors = before.shape[1]
    per_factor = {}
    for f in range(n_factors):
        best, best_rate = None, -1.0
        for name, after in edits.items():
            rate = float((after[:n_cal, f] != before[:n_cal, f]).mean())
            if rate > best_rate:
                best, best_rate = name, rate
        rates = learned.factor_rates(before[n_cal:], edits[best][n_cal:], f)
        per_factor[f] = {"edit": best, **rates}
    return {
        "target_changed": float(np.mean([v["target_changed"] for v in per_factor.values()])),
        "others_kept": float(np.mean([v["others_kept"] for v in per_factor.values()])),
        "per_factor": per_factor,
    }


def cheap_dci(codes: np.ndarray, factors: np.ndarray) -> dict:
    n = len(codes) * 3 // 4
    r = dci_from_codes(codes[:n], factors[:n], codes[n:], factors[n:], importance="lightgbm")
    return {"disentanglement": r.disentanglement, "completeness": r.completeness,
            "informativeness_test": r.informativeness_test}  # fmt: skip


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run")
    parser.add_argument("--out", default="benchmarks/results/hspace.json")
    parser.add_argument("--checkpoint", help="a step_<k> directory (default: the latest)")
    parser.add_argument("--steps", type=int, default=10, help="DDIM steps for every edit")
    parser.add_argument("--images", type=int, default=24, help="edited images (half calibrate, half test)")
    parser.add_argument("--dci-images", type=int, default=256)
    parser.add_argument("--k", type=int, default=4, help="directions per unsupervised method")
    parser.add_argument("--gamma", type=float, default=3.0)
    parser.add_argument("--guidance-scale", type=float, default=5.0)
    parser.add_argument("--classifier-steps", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    run = load_run(args.run, checkpoint=args.checkpoint)
    model, data, steps = run.model, run.data, args.steps
    folder = Path(args.run) / "hspace"
    load = os.getloadavg()[0]
    machine = f"{os.cpu_count()} CPU cores, load average {load:.1f} at the start (idle near 0)"
    out = {
        "run": str(args.run),
        "checkpoint": args.checkpoint,
        "steps": steps,
        "timings_s": {},
        "machine": machine,
    }
    path = Path(args.out)

    def save():
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(out, indent=1, default=float))

    def timed(key, fn):
        t0 = time.perf_counter()
        value = fn()
        out["timings_s"][key] = time.perf_counter() - t0
        print(f"{key}: {out['timings_s'][key]:.1f} s", flush=True)
        return value

    clfs = timed("classifiers", lambda: {
        kind: learned.classifier_for(
            model, data, folder, kind, steps=args.classifier_steps, images=1024, progress=True
        )
        for kind in ("clean", "noisy", "heldout")
    })  # fmt: skip
    out["classifier_accuracy"] = {k: learned.accuracy_of(folder, k) for k in clfs}
    heldout = clfs["heldout"]
    codes, images = data.sample(args.images, np.random.default_rng(args.seed + 100))
    src = timed("inversion", lambda: hd.sources(model, images, steps))
    fit = hd.sources(model, data.sample(24, np.random.default_rng(args.seed + 200))[1], steps)
    interval = measure_interval(denoiser_of(model, fit.tokens), fit.x0, hd.betas_of(model), steps)
    t_edit = interval["t_edit"]
    out["interval"] = {k: interval[k] for k in ("t_edit", "t_boost", "reached_edit_threshold")}
    out["interval_curve"] = interval["curve"]
    base = hd.token_edit(model, src, src.tokens, steps)
    before = heldout.predict(base)
    out["reconstruction_factor_accuracy"] = float((before == codes).mean())
    n_cal = args.images // 2
    methods = {}

    def sign_edits(make):
        return {f"{j}{'+' if s > 0 else '-'}": heldout.predict(make(j, s * args.gamma))
                for j in range(args.k) for s in (1, -1)}  # fmt: skip

    # EncDiff's own unit swaps: unit i takes another source's value
    other = src.units.roll(1, dims=0)
    edits = timed("units", lambda: {
        f"unit {i}": heldout.predict(hd.unit_edit(model, src, i, other[:, i], steps))
        for i in range(src.units.shape[1])
    })  # fmt: skip
    methods["units (EncDiff swap)"] = fidelity(before, edits, n_cal)
    out["methods"] = methods
    save()
    pca = timed("pca_fit", lambda: hd.fit_pca(model, fit, k=args.k, steps=steps))
    edits = timed(
        "pca", lambda: sign_edits(lambda j, g: hd.pca_edit(model, src, pca, j, g, t_edit, steps=steps))
    )
    methods["h-space PCA"] = fidelity(before, edits, n_cal)
    save()
    dx, t_x = timed(
        "jacobian_x_fit", lambda: hd.jacobian_x(model, fit, t_edit, rank=args.k, steps=steps, iters=8)
    )
    edits = timed(
        "jacobian_x", lambda: sign_edits(lambda j, g: hd.jacobian_x_edit(model, src, dx, t_x, j, g, steps))
    )
    methods["Jacobian dh/dx"] = fidelity(before, edits, n_cal)
    save()
    small = hd.Sources(fit.x0[:3], fit.units[:3], fit.tokens[:3], fit.x_T[:3])  # the full Jacobian is costly
    dc, _ = timed("jacobian_c_fit", lambda: hd.jacobian_c(model, small, t_edit, rank=args.k, steps=steps))
    std = hd.token_direction_std(fit, dc)
    edits = timed(
        "jacobian_c", lambda: sign_edits(lambda j, g: hd.jacobian_c_edit(model, src, dc, j, g, std, steps))
    )
    methods["Jacobian dh/dc (ours)"] = fidelity(before, edits, n_cal)
    save()
    # learned DeltaBlocks and guidance: one target per factor, value size // 2
    train_src = hd.sources(model, data.sample(16, np.random.default_rng(args.seed + 300))[1], steps)
    delta_edits, guide_edits, hits = {}, {}, {"delta": [], "guidance": []}
    t0 = time.perf_counter()
    for f, (name, size) in enumerate(zip(data.factor_names, data.factor_sizes, strict=True)):
        value = size // 2
        block, info = learned.delta_for(model, train_src, clfs["clean"], folder, name, value, t_edit,
                                        steps=steps, epochs=6, batch_size=8)  # fmt: skip
        pred = heldout.predict(learned.delta_edit(model, src, block, info, 1.0, steps))
        delta_edits[name] = pred
        hits["delta"].append(float((pred[:, f] == value).mean()))
        pred = heldout.predict(
            learned.guidance_edit(model, src, clfs["noisy"], name, value, args.guidance_scale, steps)
        )
        guide_edits[name] = pred
        hits["guidance"].append(float((pred[:, f] == value).mean()))
    out["timings_s"]["delta_and_guidance"] = time.perf_counter() - t0
    methods["Asyrp DeltaBlock (ours: classifier loss)"] = fidelity(before, delta_edits, n_cal)
    methods[f"classifier guidance s={args.guidance_scale:g}"] = fidelity(before, guide_edits, n_cal)
    out["target_value_hit_rate"] = {k: float(np.mean(v)) for k, v in hits.items()}
    save()
    # DCI of each unsupervised method's codes
    dcodes, dimages = data.sample(args.dci_images, np.random.default_rng(args.seed + 400))
    with torch.no_grad():
        units = model.encode(dimages)
        tokens = model.tokens(units)
        x0 = torch.from_numpy(dimages).permute(0, 3, 1, 2).float() / 127.5 - 1
        i_t = int(np.argmin(np.abs(pca.t - t_edit)))
        t_e = torch.full((len(x0),), int(pca.t[i_t]), dtype=torch.long)
        eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(1))
        x_t = model.schedule.q_sample(x0, t_e, eps)
        h = hd.space_of(model).bottleneck(denoiser_of(model, tokens), x_t, t_e)
        t_j = torch.full((len(x0),), t_x, dtype=torch.long)
        h_x = hd.space_of(model).bottleneck(
            denoiser_of(model, tokens), model.schedule.q_sample(x0, t_j, eps), t_j
        )
    code_sets = {
        "units (EncDiff swap)": units.numpy(),
        "h-space PCA": pca.project(h, i_t).numpy(),
        "Jacobian dh/dx": (h_x.flatten(1) @ dx.outputs.flatten(1).T).numpy(),
        "Jacobian dh/dc (ours)": (tokens.flatten(1) @ dc.inputs.flatten(1).T).numpy(),
    }
    out["dci"] = timed("dci", lambda: {k: cheap_dci(v, dcodes) for k, v in code_sets.items()})
    save()
    # subspace diffusion: t1 sweep on data, and content kept vs plain DDIM on the same x_T
    sweep = divergence_sweep(fit.x0, hd.betas_of(model), steps)
    t1 = choose_t1(sweep)
    sub = subspace_sample(
        denoiser_of(model, src.tokens), src.x_T, hd.betas_of(model), t1, sweep["sigma_perp"],
        steps=steps, generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    kept = float((heldout.predict(sub) == before).mean())
    out["subspace"] = {
        "sigma_perp": sweep["sigma_perp"],
        "t1": t1,
        "sweep": sweep,
        "factors_kept_vs_ddim": kept,
    }
    save()
    # isometric regulariser: cost per training step, and L_iso of this checkpoint
    out["isometry"] = isometry_cost(run, data)
    save()
    print(
        json.dumps({k: out[k] for k in ("interval", "dci", "target_value_hit_rate")}, indent=1, default=float)
    )
    for name, m in methods.items():
        print(f"{name:45s} changed {m['target_changed']:.2f} kept {m['others_kept']:.2f}")
    print(f"wrote {path}")


def isometry_cost(run, data, batch: int = 16, repeats: int = 3) -> dict:
    """Seconds per training step (forward + backward) without / with the regulariser, and L_iso
    (x -> h and tokens -> h) of the checkpoint on one batch."""
    import copy

    from diffdrl.hspace.isometry import IsometryConfig

    _, images = data.sample(batch, np.random.default_rng(7))
    x0 = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
    result = {}
    for label, iso in (("off", IsometryConfig()), ("x", IsometryConfig(1e-3, "x", 1.0)),
                       ("tokens", IsometryConfig(1e-3, "tokens", 1.0))):  # fmt: skip
        model = copy.deepcopy(run.model).train()
        model.config = copy.deepcopy(model.config)
        model.config.isometry = iso
        times = []
        for r in range(repeats):
            t0 = time.perf_counter()
            loss, terms = model(x0, draws=StepDraws.seeded(r, len(x0)))
            loss.backward()
            times.append(time.perf_counter() - t0)
        result[label] = {"seconds_per_step": float(np.median(times))}
        if label != "off":
            result[label]["l_iso"] = float(terms["isometry"])
    return result


if __name__ == "__main__":
    main()
