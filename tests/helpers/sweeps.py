"""The command line of a tiny sweep, shared by the local and the submitit sweep tests."""

from helpers.tiny import TINY

FAST_MIG = ["--metrics", "mig", "--metrics-preset", "fast"]


def sweep_argv(out, *extra, methods="encdiff", seeds="0,1", steps=2) -> list[str]:
    """``diffdrl sweep`` arguments for a tiny grid: fast MIG only, tiny models, ``steps`` steps."""
    return [
        "sweep",
        "--methods",
        methods,
        "--seeds",
        seeds,
        "--out",
        str(out),
        *FAST_MIG,
        "--set",
        *TINY,
        f"train.steps={steps}",
        *extra,
    ]
