"""The h-space commands of the CLI: ``diffdrl hspace RUN`` (unsupervised direction strips) and
``diffdrl edit RUN --factor NAME`` (a learned Asyrp edit, or classifier guidance). Parse, call
the library, say where the files went."""

from __future__ import annotations

import json
from pathlib import Path

from diffdrl.cli_args import at_least, count, run_dir, seed
from diffdrl.training.runs import WEIGHTS


def _folder(run) -> Path:
    return Path(run.path) / "hspace"


def cmd_hspace(args) -> None:
    from diffdrl.atomic import atomic_write_text
    from diffdrl.hspace.asymmetric import check_interval
    from diffdrl.training.runs import load_run
    from diffdrl.viz.hspace import check_methods, hspace_strips, save_strips

    methods = check_methods(args.methods.split(","))
    run = load_run(args.run, weights=args.weights)
    if args.t_edit is not None:
        check_interval(args.t_edit, -1, run.model.config.schedule.timesteps)
    _, images = run.sample(args.images + args.fit, args.seed)
    result = hspace_strips(
        run.model, images[: args.images], methods=methods, k=args.k, steps=args.steps,
        pca_images=images[args.images :], t_edit=args.t_edit, progress=not args.no_progress,
    )  # fmt: skip
    out = Path(args.out) if args.out else Path(run.path) / "samples"
    for path in save_strips(result, out):
        print(f"wrote {path}")
    summary = {
        "interval": result["interval"],
        "spectra": {m: e["spectrum"] for m, e in result["methods"].items()},
        "steps": args.steps,
    }
    atomic_write_text(out / "hspace.json", json.dumps(summary, indent=1))
    interval = result["interval"]
    print(f"t_edit {interval['t_edit']}, t_boost {interval['t_boost']}; wrote {out / 'hspace.json'}")


def cmd_edit(args) -> None:
    import torch

    from diffdrl.hspace import learned
    from diffdrl.hspace.asymmetric import check_interval
    from diffdrl.hspace.bottleneck import denoiser_of
    from diffdrl.hspace.directions import betas_of, sources
    from diffdrl.hspace.interval import measure_interval
    from diffdrl.training.runs import load_run
    from diffdrl.viz.hspace import save_rows

    run = load_run(args.run, weights=args.weights)
    what = "guidance" if args.method == "guidance" else "a learned edit"
    learned.require_factors(run.data, f"diffdrl edit ({what})")
    learned.check_factor(run.data, args.factor, args.value)
    model, folder, progress = run.model, _folder(run), not args.no_progress
    if args.t_edit is not None:
        check_interval(args.t_edit, -1, model.config.schedule.timesteps)
    _, images = run.sample(args.images, args.seed)
    src = sources(model, images, args.steps)
    budget = (args.classifier_steps, args.classifier_images)
    if args.method == "guidance":
        clf = learned.classifier_for(model, run.data, folder, "noisy", *budget, progress=progress)
        scales = [float(s) for s in args.scales.split(",")]
        rows = {f"img {i + 1}": [] for i in range(len(images))}
        for s in scales:
            out = learned.guidance_edit(model, src, clf, args.factor, args.value, s, args.steps)
            for i, img in enumerate(out):
                rows[f"img {i + 1}"].append(img)
        columns, title = (
            [f"s={s:g}" for s in scales],
            f"classifier guidance toward {args.factor}={args.value}",
        )
    else:
        clf = learned.classifier_for(model, run.data, folder, "clean", *budget, progress=progress)
        train_src = sources(model, run.sample(args.train_images, args.seed + 1)[1], args.steps)
        t_edit = args.t_edit
        if t_edit is None:  # the documented criterion, measured on the training images
            interval = measure_interval(
                denoiser_of(model, train_src.tokens), train_src.x0, betas_of(model), args.steps
            )
            t_edit = interval["t_edit"]
        block, info = learned.delta_for(
            model,
            train_src,
            clf,
            folder,
            args.factor,
            args.value,
            t_edit,
            steps=args.steps,
            progress=progress,
        )
        coefficients = [float(c) for c in args.coefficients.split(",")]
        rows = {f"img {i + 1}": [] for i in range(len(images))}
        for c in coefficients:
            out = learned.delta_edit(model, src, block, info, c, args.steps)
            for i, img in enumerate(out):
                rows[f"img {i + 1}"].append(img)
        columns = [f"c={c:g}" for c in coefficients]
        title = f"Asyrp DeltaBlock toward {args.factor}={args.value} (t_edit {info['t_edit']})"
    rows = {k: torch.stack(v) for k, v in rows.items()}
    name = f"edit_{args.method}_{args.factor}_{args.value}.png"
    path = save_rows(rows, Path(args.out) if args.out else Path(run.path) / "samples" / name, columns, title)
    print(f"wrote {path}")


def add_hspace_commands(sub) -> None:
    p = sub.add_parser("hspace", help="h-space PCA and Jacobian directions of a run, drawn as edit strips")
    p.add_argument("run", type=run_dir, help="run directory")
    p.add_argument(
        "--methods", default="pca,jacobian_x,jacobian_c", help="comma-separated (default: all three)"
    )
    p.add_argument("--k", type=count, default=3, help="directions per method (default 3)")
    p.add_argument("--images", type=count, default=2, help="source images per strip (default 2)")
    p.add_argument("--fit", type=count, default=32, help="images the directions are fitted on (default 32)")
    p.add_argument("--steps", type=count, default=20, help="DDIM steps (default 20)")
    p.add_argument("--t-edit", type=int, help="edit interval start (default: the documented criterion)")
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--weights", choices=WEIGHTS, default=WEIGHTS[0])
    p.add_argument("--out", help="folder for the PNGs and hspace.json (default RUN/samples)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_hspace)

    p = sub.add_parser(
        "edit", help="edit a ground-truth factor: learned Asyrp DeltaBlock or classifier guidance"
    )
    p.add_argument("run", type=run_dir, help="run directory (its dataset must have ground-truth factors)")
    p.add_argument("--factor", required=True, help="factor name (see 'diffdrl datasets info NAME')")
    p.add_argument("--value", type=at_least(0), default=0, help="target value of the factor (default 0)")
    p.add_argument("--method", choices=("delta", "guidance"), default="delta")
    p.add_argument(
        "--coefficients", default="-1,0,0.5,1,1.5", help="DeltaBlock strengths (negative reverses)"
    )
    p.add_argument("--scales", default="0,1,3,10", help="guidance scales")
    p.add_argument("--images", type=count, default=4, help="images to edit (default 4)")
    p.add_argument(
        "--train-images", type=count, default=32, help="images the DeltaBlock trains on (default 32)"
    )
    p.add_argument("--steps", type=count, default=20)
    p.add_argument("--t-edit", type=int, help="edit interval start (default: the documented criterion)")
    p.add_argument(
        "--classifier-steps",
        type=count,
        default=400,
        help="training steps of a classifier trained on first use",
    )
    p.add_argument("--classifier-images", type=count, default=4096, help="ground-truth images it trains on")
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--weights", choices=WEIGHTS, default=WEIGHTS[0])
    p.add_argument("--out", help="PNG path (default RUN/samples/edit_METHOD_FACTOR_VALUE.png)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_edit)
