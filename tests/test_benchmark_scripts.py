"""The benchmark scripts' own logic, on the tiny trained run (their full runs are benchmarks)."""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_factor_capture_reports_every_factor(trained_tiny):
    capture = load_script("factor_capture").factor_capture(trained_tiny, num=300, seed=0)
    names = list(trained_tiny.data.factor_names)
    assert capture["factors"] == names
    for key in ("accuracy", "chance", "captured", "top_unit_share", "top_unit"):
        assert len(capture[key]) == len(names)
    assert np.allclose(capture["chance"], 1 / np.array(trained_tiny.data.factor_sizes), atol=1e-4)
    assert all(0 <= s <= 1 for s in capture["top_unit_share"])
    assert all(c <= 1 for c in capture["captured"])
    assert all(0 <= u < trained_tiny.config.model.units for u in capture["top_unit"])


def test_factor_capture_cli_writes_json_and_refuses_bad_labels(trained_tiny, tmp_path, monkeypatch):
    script = load_script("factor_capture")
    out = tmp_path / "capture.json"
    args = ["factor_capture.py", str(trained_tiny.path), "--num", "300", "--untrained", "--out", str(out)]
    monkeypatch.setattr(sys, "argv", args)
    script.main()
    rows = json.loads(out.read_text())["rows"]
    assert [r["step"] for r in rows] == [0, 4]  # the untrained architecture first
    monkeypatch.setattr(sys, "argv", [*args[:2], "--labels", "a", "b"])
    with pytest.raises(SystemExit):
        script.main()


def test_factor_capture_reads_a_chosen_checkpoint(trained_tiny):
    script = load_script("factor_capture")
    assert script.parse_run("runs/a@400") == (Path("runs/a"), 400)
    assert script.parse_run("runs/a@b") == (Path("runs/a@b"), None)
    step, path = script.checkpoint_at(trained_tiny.path, 4)
    assert step == 4 and path.name == "step_4"
    assert script.checkpoint_at(trained_tiny.path, None)[0] == 4
    with pytest.raises(FileNotFoundError, match="no checkpoint at step 3"):
        script.checkpoint_at(trained_tiny.path, 3)
