"""The h-space commands of the CLI: ``diffdrl hspace RUN`` (unsupervised direction strips) and
``diffdrl edit RUN --factor NAME`` (a learned Asyrp edit, or classifier guidance). Parse, call
the library, say where the files went."""

from __future__ import annotations

from diffdrl.cli_args import at_least, count, run_dir, seed
from diffdrl.diffusion.sampling import STRIP_STEPS
from diffdrl.training.weights import WEIGHTS


def cmd_hspace(args) -> None:
    from diffdrl.training.runs import load_run
    from diffdrl.viz.hspace import check_methods, save_hspace

    methods = check_methods(args.methods.split(","))
    run = load_run(args.run, weights=args.weights)
    paths, summary, interval = save_hspace(
        run, args.out, methods=methods, k=args.k, images=args.images, fit=args.fit, steps=args.steps,
        t_edit=args.t_edit, seed=args.seed, progress=not args.no_progress,
    )  # fmt: skip
    for path in paths:
        print(f"wrote {path}")
    print(f"t_edit {interval['t_edit']}, t_boost {interval['t_boost']}; wrote {summary}")


def cmd_edit(args) -> None:
    from diffdrl.training.runs import load_run
    from diffdrl.viz.factor_edit import edit_factor

    run = load_run(args.run, weights=args.weights)
    given = args.scales if args.method == "guidance" else args.coefficients
    strengths = None if given is None else [float(s) for s in given.split(",")]
    path = edit_factor(
        run, args.factor, args.value, args.out, method=args.method,
        strengths=strengths, images=args.images,
        train_images=args.train_images, steps=args.steps, t_edit=args.t_edit,
        classifier_steps=args.classifier_steps, classifier_images=args.classifier_images, seed=args.seed,
        progress=not args.no_progress,
    )  # fmt: skip
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
    p.add_argument("--steps", type=count, default=STRIP_STEPS, help=f"DDIM steps (default {STRIP_STEPS})")
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
        "--coefficients",
        help="comma-separated DeltaBlock strengths, negative reverses (default: -1,0,0.5,1,1.5, "
        "viz.factor_edit.COEFFICIENTS)",
    )
    p.add_argument(
        "--scales", help="comma-separated guidance scales (default: 0,1,3,10, viz.factor_edit.SCALES)"
    )
    p.add_argument("--images", type=count, default=4, help="images to edit (default 4)")
    p.add_argument(
        "--train-images", type=count, default=32, help="images the DeltaBlock trains on (default 32)"
    )
    p.add_argument("--steps", type=count, default=STRIP_STEPS, help=f"DDIM steps (default {STRIP_STEPS})")
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
