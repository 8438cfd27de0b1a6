"""The ``explore`` command: a local web app to play with a run's units (``diffdrl.explore``)."""

from __future__ import annotations

import argparse

from diffdrl.cli_args import port, run_dir
from diffdrl.training.weights import WEIGHTS


def cmd_explore(args) -> None:
    try:
        from diffdrl.explore.server import serve
    except ImportError as err:
        raise ValueError(
            f"diffdrl explore needs the 'explore' extra: pip install 'diffdrl[explore]' ({err})"
        ) from None
    serve(args.run, host=args.host, port=args.port, weights=args.weights, device=args.device)


def add_explore_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("explore", help="a latent explorer in the browser (local web app)")
    p.add_argument("run", type=run_dir, help="run directory")
    p.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)"
    )
    p.add_argument("--port", type=port, default=8008, help="port (default 8008)")
    p.add_argument("--weights", choices=WEIGHTS, default=WEIGHTS[0])
    p.add_argument("--device", default="cpu", help="torch device of the model (default cpu)")
    p.set_defaults(func=cmd_explore)
