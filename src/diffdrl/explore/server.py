"""``diffdrl explore RUN``: load the run, build the explorer, serve it with uvicorn until Ctrl-C."""

from __future__ import annotations

from pathlib import Path

from diffdrl.explore.app import create_app
from diffdrl.explore.session import Explorer
from diffdrl.training.runs import load_run

LOCAL = "127.0.0.1"


def check_port(port: int) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"port must be an integer in [0, 65535], got {port!r}")
    return port


def open_explorer(run_dir: str | Path, weights: str = "ema", device: str = "cpu", **options) -> Explorer:
    """The explorer of a run directory (``options``: ``Explorer``'s keyword arguments)."""
    return Explorer(load_run(run_dir, weights=weights, device=device), **options)


def serve(
    run_dir: str | Path, host: str = LOCAL, port: int = 8008, weights: str = "ema", device: str = "cpu"
) -> None:
    """Serve the explorer of ``run_dir`` on http://host:port/ (loopback unless ``host`` says otherwise)."""
    import uvicorn

    check_port(port)
    print(f"diffdrl explore: loading {run_dir} and fitting the unit labels ...", flush=True)
    explorer = open_explorer(run_dir, weights=weights, device=device)
    if host != LOCAL:
        print(f"diffdrl explore: serving on {host}, reachable from other machines; it has no authentication")
    print(f"diffdrl explore: open http://{host}:{port}/  (Ctrl-C stops)", flush=True)
    try:
        uvicorn.run(create_app(explorer), host=host, port=port, log_level="warning")
    finally:
        explorer.close()
