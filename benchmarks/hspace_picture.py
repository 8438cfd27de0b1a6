"""The README / docs picture: each method's edit of one factor next to EncDiff's own unit swap.

Reads the choices ``benchmarks/hspace.py`` made (for the factor, the unit / direction that changed
it most on its calibration images) and redraws those edits on the first test images:

    python benchmarks/hspace_picture.py runs/hspace-tiny benchmarks/results/hspace.json \
        --factor object_hue --out docs/hspace_compare.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from diffdrl.hspace import directions as hd
from diffdrl.hspace import learned
from diffdrl.training.runs import load_run
from diffdrl.viz.hspace import save_rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run")
    parser.add_argument("results")
    parser.add_argument("--factor", default="object_hue")
    parser.add_argument("--num", type=int, default=6)
    parser.add_argument("--out", default="docs/hspace_compare.png")
    args = parser.parse_args(argv)
    res = json.loads(Path(args.results).read_text())
    run = load_run(args.run, checkpoint=res.get("checkpoint"))
    model, data, steps = run.model, run.data, res["steps"]
    f = learned.check_factor(data, args.factor)
    seed, k, gamma = 0, 4, 3.0  # benchmarks/hspace.py's defaults
    _, images = data.sample(24, np.random.default_rng(seed + 100))
    src = hd.sources(model, images[12 : 12 + args.num], steps)
    fit = hd.sources(model, data.sample(24, np.random.default_rng(seed + 200))[1], steps)
    t_edit = res["interval"]["t_edit"]
    choice = {name: m["per_factor"][str(f)]["edit"] for name, m in res["methods"].items()}
    rows = {"unedited": hd.token_edit(model, src, src.tokens, steps)}

    def signed(name):
        j, s = int(choice[name][:-1]), 1.0 if choice[name][-1] == "+" else -1.0
        return j, s * gamma

    unit = int(choice["units (EncDiff swap)"].split()[1])
    other = hd.sources(model, images[:12], steps).units[: args.num]
    rows[f"EncDiff swap (unit {unit})"] = hd.unit_edit(model, src, unit, other[:, unit], steps)
    pca = hd.fit_pca(model, fit, k=k, steps=steps)
    j, g = signed("h-space PCA")
    rows[f"h-space PCA {j + 1} ({g:+g})"] = hd.pca_edit(model, src, pca, j, g, t_edit, steps=steps)
    dx, t_x = hd.jacobian_x(model, fit, t_edit, rank=k, steps=steps, iters=8)
    j, g = signed("Jacobian dh/dx")
    rows[f"dh/dx dir {j + 1} ({g:+g})"] = hd.jacobian_x_edit(model, src, dx, t_x, j, g, steps)
    small = hd.Sources(fit.x0[:3], fit.units[:3], fit.tokens[:3], fit.x_T[:3])  # the full Jacobian is costly
    dc, _ = hd.jacobian_c(model, small, t_edit, rank=k, steps=steps)
    j, g = signed("Jacobian dh/dc (ours)")
    rows[f"dh/dc dir {j + 1} ({g:+g})"] = hd.jacobian_c_edit(
        model, src, dc, j, g, hd.token_direction_std(fit, dc), steps
    )
    folder = Path(args.run) / "hspace"
    target = choice["Asyrp DeltaBlock (ours: classifier loss)"]
    value = data.factor_sizes[data.factor_names.index(target)] // 2
    clean = learned.classifier_for(model, data, folder, "clean")
    block, info = learned.delta_for(model, src, clean, folder, target, value, t_edit, steps=steps)
    rows[f"DeltaBlock {target}={value}"] = learned.delta_edit(model, src, block, info, 1.0, steps)
    target = [k for k in choice if k.startswith("classifier guidance")][0]
    name = choice[target]
    value = data.factor_sizes[data.factor_names.index(name)] // 2
    noisy = learned.classifier_for(model, data, folder, "noisy")
    scale = float(target.split("s=")[1])
    rows[f"guidance {name}={value}"] = learned.guidance_edit(model, src, noisy, name, value, scale, steps)
    with torch.no_grad():
        path = save_rows(
            {k: v for k, v in rows.items()}, args.out, [f"img {i + 1}" for i in range(args.num)],
            f"edits that change {args.factor} most (chosen on calibration images), {steps} DDIM steps",
        )  # fmt: skip
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
