"""The benchmark scripts' own logic, on the tiny trained run (their full runs are benchmarks)."""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

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


def test_train_throughput_counts_training_flops_per_image_independent_of_batch(tiny_config, tmp_path):
    from diffdrl.training.trainer import Trainer

    script = load_script("train_throughput")
    per_image = [
        script.training_flops_per_image(Trainer(tiny_config(f"train.batch_size={b}"), tmp_path / f"b{b}"))
        for b in (4, 8)
    ]
    assert per_image[0] > 0
    assert per_image[0] == pytest.approx(per_image[1], rel=1e-6)  # FLOPs scale with the batch


def test_train_throughput_peak_is_a_matmul_rate():
    peak = load_script("train_throughput").matmul_peak(torch.float32, "cpu", n=256, seconds=0.05)
    assert 1e8 < peak < 1e14  # FLOP/s of any CPU


def test_denoising_by_t_knows_the_trivial_estimates_error(trained_tiny):
    from diffdrl.data.ground_truth import to_model_input

    script = load_script("denoising_by_t")
    model = trained_tiny.model
    _, images = trained_tiny.sample(8, seed=0)
    x0 = to_model_input(images)
    tokens = model.tokens(model.encode(x0))
    rows = script.denoising_errors(model, x0, tokens, [0, 25, 49])
    # x_t / sqrt(abar) - x0 = sqrt(1 / abar - 1) eps: its MSE is (1 / abar - 1) E[eps^2]
    abar = model.schedule.alpha_bar
    for r in rows:
        expected = float(1 / abar[r["t"]] - 1)
        assert r["trivial_x0_mse"] == pytest.approx(expected, rel=0.15)
    regen = script.regeneration(model, x0, tokens, [("ddim", 3, 1.0, True), ("dpm++", 3, 0.0, True)])
    assert [r["sampler"] for r in regen] == ["ddim", "dpm++"]
    assert all(r["mse"] > 0 and r["psnr"] == pytest.approx(-10 * np.log10(r["mse"]), abs=3) for r in regen)


def test_high_frequency_energy_sees_speckle_not_flat_colour():
    hf = load_script("denoising_by_t").high_frequency_energy
    flat = torch.full((2, 3, 16, 16), 0.3)
    assert hf(flat) == pytest.approx(0.0, abs=1e-12)
    noise = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    assert hf(flat + 0.1 * noise) == pytest.approx(0.01 * 8 / 9, rel=0.15)  # (1 - 1/9) of white noise
