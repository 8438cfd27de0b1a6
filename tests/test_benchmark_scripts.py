"""The benchmark scripts' own logic, on the tiny trained run (their full runs are benchmarks)."""

import argparse
import importlib.util
import json
import os
import subprocess
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


# -- gpu_check.sh: the prepared GPU run, proven on the CPU ----------------------------------------

STAGES = ["env", "checks", "tests", "ladder-paper", "ladder-paper-latent", "quality"]


def gpu_check(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(BENCHMARKS / "gpu_check.sh"), *args],
        env={**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1", **env},
        capture_output=True,
        text=True,
        timeout=1500,
    )


def stages_of(out: Path) -> dict:
    return {s["stage"]: s for s in map(json.loads, (out / "stages.jsonl").read_text().splitlines())}


def test_gpu_check_smoke_runs_every_stage_on_the_cpu(tmp_path):
    out = tmp_path / "out"
    done = gpu_check("--smoke", str(out))
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    stages = stages_of(out)
    assert list(stages) == STAGES
    assert {k: s["status"] for k, s in stages.items()} == {
        **dict.fromkeys(STAGES, "ok"),
        "ladder-paper-latent": "skipped",
    }
    # what the device tool brings back from $OUT: at most 8 files, no folders
    assert len(list(out.iterdir())) <= 8 and all(p.is_file() for p in out.iterdir())
    checks = json.loads((out / "checks.json").read_text())["checks"]
    assert [c["name"] for c in checks] == list(load_script("gpu_checks").TOLERANCES)
    assert all(c["passed"] and c["seconds"] > 0 for c in checks)
    tests = json.loads((out / "tests.json").read_text())
    assert tests["passed"] and tests["counts"]["skipped"] >= 3 and tests["counts"]["failure"] == 0
    env = json.loads((out / "env.json").read_text())
    assert env["smoke"] and env["device"] == "cpu" and env["measured_bf16_tflops"] > 0
    ladder = json.loads((out / "gpu_train-tiny-cpu-cpu.json").read_text())
    assert [r["variant"] for r in ladder["results"]] == ["fp32", "fast_path"]
    assert all(r["images_per_s"] > 0 and r["mfu_bf16_peak"] > 0 for r in ladder["results"])
    assert ladder["peak_bf16_tflops"] == pytest.approx(env["measured_bf16_tflops"], rel=0.01)
    points = json.loads((out / "gpu_quality-smoke.json").read_text())["points"]
    assert len(points) == 1 and 0 <= points[0]["dci_disentanglement"] <= 1
    table = done.stdout[done.stdout.index("gpu_check summary") :]
    for line in (
        "fp32_vs_bf16            pass",
        "tests (pytest -m gpu)   pass",
        "ladder tiny-cpu",
        "targets",
    ):
        assert line in table
    assert "gpu_check summary" in (out / "gpu_check.log").read_text()
    png = tmp_path / "gpu_check.png"
    drawn = subprocess.run(
        [sys.executable, str(BENCHMARKS / "gpu_summary.py"), str(out), "--plot", str(png)],
        capture_output=True,
        text=True,
    )
    assert drawn.returncode == 0, drawn.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_gpu_check_records_a_failing_stage_and_goes_on(tmp_path):
    out = tmp_path / "out"
    done = gpu_check("--smoke", "--stages", "quality,env", str(out), QUALITY_METRICS_PRESET="bogus")
    assert done.returncode == 1
    stages = stages_of(out)
    assert list(stages) == ["env", "quality"]  # the script's order, whatever the list's
    assert stages["env"]["status"] == "ok" and stages["quality"]["status"] == "failed"
    assert "invalid choice: 'bogus'" in (out / "gpu_check.log").read_text()
    assert "targets" in done.stdout  # the summary still prints


@pytest.mark.parametrize(
    "args, message",
    [
        (["--stages", "env,warp"], "unknown stage 'warp'"),
        (["--budget", "30"], "--budget must be whole seconds >= 60"),
        (["--frobnicate"], "unknown option --frobnicate"),
    ],
)
def test_gpu_check_refuses_bad_arguments(tmp_path, args, message):
    done = gpu_check("--smoke", *args, str(tmp_path / "out"))
    assert done.returncode == 2 and message in done.stderr
    assert not (tmp_path / "out").exists()


def test_gpu_check_never_writes_over_an_earlier_run(tmp_path):
    (tmp_path / "stages.jsonl").write_text("{}\n")
    done = gpu_check("--smoke", str(tmp_path))
    assert done.returncode == 2 and "already holds a run" in done.stderr
    assert (tmp_path / "stages.jsonl").read_text() == "{}\n"
    assert gpu_check("--smoke", OUT="").returncode == 2  # no folder at all


def test_gpu_checks_tolerances_fail_nan_and_respect_minimums():
    passes = load_script("gpu_checks").passes
    tolerance = {"loss_rel_diff": 1e-2, "grad_cosine_min": 0.99}
    assert passes({"loss_rel_diff": 1e-3, "grad_cosine": 0.995}, tolerance)
    assert not passes({"loss_rel_diff": 1e-3, "grad_cosine": 0.98}, tolerance)
    assert not passes({"loss_rel_diff": float("nan"), "grad_cosine": 1.0}, tolerance)
    assert not passes({"loss_rel_diff": 1e-3, "grad_cosine": float("nan")}, tolerance)


def test_gpu_train_speed_stops_at_its_time_limit(tmp_path):
    script = load_script("gpu_train")
    spec = {"variant": "fp32", "preset": "tiny-cpu", "device": "cpu", "batch_size": 2, "steps": 1, "set": []}
    assert script.measure_variant(spec, 0.01)["error"].startswith("timed out after")
    args = argparse.Namespace(
        variants="fp32,fast_path", time_limit=0.5, device="cpu", preset="tiny-cpu", peak_tflops=1.0,
        out=str(tmp_path), batch_size=2, steps=1, set=[],
    )  # fmt: skip
    script.speed(args)  # the limit is spent before the first variant could start: both skipped
    record = json.loads((tmp_path / "gpu_train-tiny-cpu-cpu.json").read_text())
    assert [r["error"] for r in record["results"]] == ["skipped: --time-limit spent"] * 2


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


def test_hspace_isometry_cost_times_a_step_with_and_without_the_regulariser(trained_tiny):
    cost = load_script("hspace").isometry_cost(trained_tiny, trained_tiny.data, batch=4, repeats=1)
    assert set(cost) == {"off", "x", "tokens"}
    assert all(v["seconds_per_step"] > 0 for v in cost.values())
    assert np.isfinite(cost["x"]["l_iso"]) and np.isfinite(cost["tokens"]["l_iso"])


def test_latent_cache_benchmark_times_the_cache_off_cold_and_warm(latent_config):
    from helpers.tiny import TINY_LATENT

    script = load_script("first_stage")
    assert script.full_hit_steps(1, 4, 5, seed=0) == 4  # one item: every batch after the first
    assert script.full_hit_steps(10**9, 4, 5, seed=0) == 0
    (row,) = script.hit_rows("tiny-cpu-latent", [1])
    assert (row["run_steps_fully_cached"], row["run_steps"], row["batch_size"]) == (599, 600, 64)
    stage = latent_config().model.first_stage.path
    row = script.cache_speed("tiny-cpu-latent", 3, [*TINY_LATENT, f"model.first_stage.path={stage}"])
    assert row["cache_batches"] == {"encoded": 3, "served": 2}  # warm-up and 2 cold; 2 warm
    assert set(row["seconds_per_step"]) == {"off", "off_first", "off_second", "encoder_alone", "cold", "warm"}
    assert all(v > 0 for v in row["seconds_per_step"].values())
    assert row["run_steps"] == 600 and row["run_steps_fully_cached"] == 0  # 480,000 items, 600 x 4 draws


def test_cpu_budget_extends_a_study_past_its_finished_chunks(tmp_path):
    """A longer budget on a study that has its first chunk: the finished chunk's trainer is built,
    found done and dropped, and the next chunks train (the process never locks itself out)."""
    from conftest import TINY

    script = load_script("cpu_budget")
    common = dict(
        preset="tiny-cpu",
        name="tiny",
        seed=0,
        every=1.0,
        steps_per_minute=2.0,  # chunk k trains to step 2 k
        metrics=["mig"],
        metrics_preset="fast",
        set=list(TINY),
        threads=torch.get_num_threads(),
        runs=str(tmp_path / "runs"),
        results=str(tmp_path / "results"),
    )
    script.run(argparse.Namespace(minutes=1.0, **common))
    script.run(argparse.Namespace(minutes=3.0, **common))
    result = json.loads((tmp_path / "results" / "tiny-seed0.json").read_text())
    assert [p["step"] for p in result["points"]] == [2, 4, 6]
    assert all(0.0 <= p["mig"] <= 1.0 for p in result["points"])
    assert not (tmp_path / "runs" / "tiny-seed0" / "train.lock").exists()


def test_preview_sampling_measures_every_setting_and_picks_the_fastest_over_the_bar(trained_tiny):
    script = load_script("preview_sampling")
    _, images = trained_tiny.sample(4, 0)
    rows = script.measure(trained_tiny.model, images, ("ddim", "dpm++"), (2, 3), repeats=1)
    assert [(r["sampler"], r["steps"], r["start"]) for r in rows[:4]] == [
        ("ddim", 2, "inversion"),
        ("ddim", 2, "noise"),
        ("dpm++", 2, "inversion"),
        ("dpm++", 2, "noise"),
    ]
    assert len(rows) == 8 and all(r["psnr_p10"] <= r["psnr"] + 1e-6 for r in rows)
    for r in rows:  # a first render adds the inversion, from inversion only
        first = r["ms_one_image_first"] > r["ms_one_image"]
        assert first == (r["start"] == "inversion")
    assert script.first_stage_ceiling(trained_tiny.model, images) is None  # pixel space
    table = [
        {"sampler": "ddim", "steps": 10, "start": "inversion", "psnr": 24.0, "ms_one_image": 5.0},
        {"sampler": "dpm++", "steps": 20, "start": "noise", "psnr": 30.0, "ms_one_image": 1.0},
        {"sampler": "dpm++", "steps": 20, "start": "inversion", "psnr": 26.0, "ms_one_image": 9.0},
        {"sampler": "ddim", "steps": 20, "start": "inversion", "psnr": 25.5, "ms_one_image": 8.0},
        {"sampler": "ddim", "steps": 50, "start": "inversion", "psnr": 31.0, "ms_one_image": 20.0},
    ]
    assert script.choose(table, 25.0) == table[2]  # fewest steps over the bar, then the better
    assert script.choose(table, 40.0) is None


def test_dci_real_codes_scores_saved_codes_prints_a_table_and_reuses_sklearn(tmp_path, monkeypatch, capsys):
    """Issue 27's battery on a tiny saved case: both estimators at each seed, the range test, the
    JSON; a second run refits ours only and keeps scikit-learn's rows."""
    script = load_script("dci_real_codes")
    rng = np.random.default_rng(0)
    factors = rng.integers(0, 3, size=(90, 2))
    units = (factors @ rng.normal(size=(2, 4)) + 0.5 * rng.normal(size=(90, 4))).astype(np.float32)
    monkeypatch.setattr(script, "CODES", tmp_path)
    monkeypatch.setattr(script, "CASES", {"tiny case": (None, None, 60, 30)})
    monkeypatch.setattr(script, "SEEDS", range(2))  # the battery's five, shortened
    np.savez(script.codes_path("tiny case"), units=units, factors=factors.astype(np.int16))
    out = tmp_path / "battery.json"
    monkeypatch.setattr(sys, "argv", ["dci_real_codes.py", "--out", str(out)])
    script.main()
    printed = capsys.readouterr().out
    assert "| tiny case | 4 x 2 (3,3) | 60/30 |" in printed and script.HEADER in printed
    row = json.loads(out.read_text())["cases"]["tiny case"]
    assert len(row["sklearn"]["per_seed"]) == len(row["gbt"]["per_seed"]) == 2
    low, high = row["disentanglement"]["sklearn_range"]
    d0 = row["disentanglement"]["gbt_seed0"]
    assert row["disentanglement"]["gbt_seed0_within"] == (low - 0.003 <= d0 <= high + 0.003)
    script.main()
    again = json.loads(out.read_text())["cases"]["tiny case"]
    assert (
        again["sklearn"]["from_previous_run"] and again["sklearn"]["per_seed"] == row["sklearn"]["per_seed"]
    )
