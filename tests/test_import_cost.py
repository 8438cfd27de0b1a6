"""Small commands stay small: ``import diffdrl`` and building the command line's parser load no
torch, diffusers or matplotlib (benchmarks/cli_latency.py measures the time this saves)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
HEAVY = ("torch", "diffusers", "matplotlib", "sklearn", "numba")


def loaded_after(code: str) -> set[str]:
    """The top-level names of HEAVY that a fresh interpreter has imported after running ``code``."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True)
    modules = json.loads(out.stdout.splitlines()[-1])
    return {m.split(".")[0] for m in modules} & set(HEAVY)


@pytest.mark.parametrize(
    "code",
    [
        "import diffdrl",
        "from diffdrl.cli import build_parser; build_parser()",
        "from diffdrl.cli import main; main(['datasets', 'list'])",
        "from diffdrl.metrics import presets",
    ],
)
def test_loads_nothing_heavy(code):
    assert loaded_after(code) == set()


def test_the_package_facade_still_gives_its_names():
    import diffdrl

    assert callable(diffdrl.load_config) and callable(diffdrl.train) and callable(diffdrl.load_model)
    assert diffdrl.Config.__name__ == "Config" and isinstance(diffdrl.__version__, str)
    assert set(diffdrl.__all__) <= set(dir(diffdrl))
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        diffdrl.nothing  # noqa: B018
