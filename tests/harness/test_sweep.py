import dataclasses
import json

import pytest

from diffdrl.cli import main
from diffdrl.harness import sweep as sweep_module
from diffdrl.harness.sweep import UNREACHABLE_STEPS, Cell, Sweep, read_cell, run_sweep
from diffdrl.training.checkpoint import checkpoints
from diffdrl.training.config import load_config
from diffdrl.training.trainer import NonFiniteLossError
from helpers.sweeps import sweep_argv
from helpers.tiny import TINY


@pytest.fixture
def train_calls(monkeypatch):
    """Counts the sweep's calls of ``train`` (seeds in order); the real trainer still runs."""
    calls = []
    real = sweep_module.train

    def counting(config, run_dir, **kwargs):
        calls.append(config.train.seed)
        return real(config, run_dir, **kwargs)

    monkeypatch.setattr(sweep_module, "train", counting)
    return calls


@pytest.fixture
def quick_scores(monkeypatch):
    """Scores without metrics: 0.1 * seed (the evaluation itself is tested in the first test)."""
    monkeypatch.setattr(
        sweep_module, "evaluate_run", lambda run, metrics, **kw: {"mig": 0.1 * run.config.train.seed}
    )


def test_sweep_trains_evaluates_and_a_rerun_skips_done_cells(tmp_path, train_calls, capsys):
    out = tmp_path / "sweep"
    assert main(sweep_argv(out)) == 0
    for seed in (0, 1):
        cell = Cell("synth-shapes3d", "encdiff", seed).directory(out)
        record = read_cell(cell)
        assert record["status"] == "done" and record["error"] is None
        assert record["step"] == 2 and record["train_seconds"] > 0
        assert record["preset"] == "tiny-cpu" and record["seed"] == seed
        assert record["overrides"][-2:] == ["data.name=synth-shapes3d", f"train.seed={seed}"]
        assert set(record["scores"]) == {"mig_fast"}  # the fast protocol, named as such
        assert 0.0 <= record["scores"]["mig_fast"] <= 1.0
        assert load_config(str(cell / "config.yaml")).train.seed == seed
    assert json.loads((out / "sweep.json").read_text())["seeds"] == [0, 1]
    printed = capsys.readouterr().out
    assert "[1/2] synth-shapes3d/encdiff/seed0: done (step 2" in printed
    assert "| encdiff | tiny-cpu | 2 |" in printed and "(2) |" in printed  # the summary table
    assert train_calls == [0, 1]

    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.safetensors")}
    assert main(sweep_argv(out)) == 0
    assert train_calls == [0, 1]  # nothing trained again
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.safetensors")} == stamps
    assert capsys.readouterr().out.count("done already, skipped") == 2


def test_failed_cell_is_recorded_others_complete_and_rerun_retries(
    tmp_path, monkeypatch, quick_scores, capsys
):
    out = tmp_path / "sweep"
    real = sweep_module.train

    def diverging(config, run_dir, **kwargs):
        if config.train.seed == 1:
            raise NonFiniteLossError("loss is nan at step 0; stopped without saving (no checkpoint yet)")
        return real(config, run_dir, **kwargs)

    monkeypatch.setattr(sweep_module, "train", diverging)
    assert main(sweep_argv(out, seeds="0,1,2")) == 1
    captured = capsys.readouterr()
    assert "seed1: FAILED: NonFiniteLossError: loss is nan at step 0" in captured.out
    assert "1 of 3 cells failed" in captured.err
    records = {s: read_cell(Cell("synth-shapes3d", "encdiff", s).directory(out)) for s in (0, 1, 2)}
    assert [records[s]["status"] for s in (0, 1, 2)] == ["done", "failed", "done"]  # the sweep went on
    assert records[1]["error"].startswith("NonFiniteLossError: loss is nan") and records[1]["scores"] == {}
    assert records[2]["scores"] == {"mig": pytest.approx(0.2)}

    monkeypatch.setattr(sweep_module, "train", real)
    assert main(sweep_argv(out, seeds="0,1,2")) == 0
    printed = capsys.readouterr().out
    assert "seed1: retrying" in printed and printed.count("done already, skipped") == 2
    assert read_cell(Cell("synth-shapes3d", "encdiff", 1).directory(out))["status"] == "done"


def test_config_error_fails_only_its_cells_and_scoped_overrides(tmp_path, quick_scores, capsys):
    out = tmp_path / "sweep"
    argv = sweep_argv(out, "dyga:model.nonexistent=1", methods="encdiff,dyga", seeds="0")
    assert main(argv) == 1
    encdiff = read_cell(Cell("synth-shapes3d", "encdiff", 0).directory(out))
    dyga = read_cell(Cell("synth-shapes3d", "dyga", 0).directory(out))
    assert encdiff["status"] == "done" and "model.nonexistent=1" not in encdiff["overrides"]
    assert dyga["status"] == "failed" and dyga["preset"] == "tiny-cpu-dyga"
    assert dyga["error"].startswith("ConfigError: unknown config key model.nonexistent")
    assert "dyga/seed0: failed: ConfigError" in capsys.readouterr().out  # listed under the summary


def test_unfinished_cell_resumes_from_its_checkpoint(tmp_path, monkeypatch, quick_scores, capsys):
    out = tmp_path / "sweep"
    real = sweep_module.train

    def interrupted(config, run_dir, **kwargs):  # trains half, then the user presses Ctrl-C
        real(dataclasses.replace(config, train=dataclasses.replace(config.train, steps=2)), run_dir, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(sweep_module, "train", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(Sweep(["encdiff"], ["synth-shapes3d"], [0], overrides=[*TINY, "train.steps=4"]), out)
    cell = Cell("synth-shapes3d", "encdiff", 0).directory(out)
    assert read_cell(cell)["status"] == "running" and [s for s, _ in checkpoints(cell)] == [2]

    monkeypatch.setattr(sweep_module, "train", real)
    lines = []
    (record,) = run_sweep(
        Sweep(["encdiff"], ["synth-shapes3d"], [0], overrides=[*TINY, "train.steps=4"]),
        out,
        echo=lines.append,
    )
    assert "resuming" in lines[0] and record["status"] == "done" and record["step"] == 4
    logged = [json.loads(r)["step"] for r in (cell / "train_log.jsonl").read_text().splitlines()]
    assert logged == [1, 2, 3, 4]  # continued, not restarted


def test_time_budget_ends_training(tmp_path, quick_scores):
    sweep = Sweep(["encdiff"], ["synth-shapes3d"], [0], budget_minutes=0.001, overrides=TINY)
    overrides = sweep.cell_overrides(Cell("synth-shapes3d", "encdiff", 0))
    assert overrides[-2:] == ["train.time_budget_minutes=0.001", f"train.steps={UNREACHABLE_STEPS}"]
    (record,) = run_sweep(sweep, tmp_path / "sweep", echo=lambda line: None)
    assert record["status"] == "done" and record["budget_minutes"] == 0.001
    assert 1 <= record["step"] < 1000 and record["train_seconds"] >= 0.06


def test_missing_presets_are_rejected_before_anything_trains(tmp_path, train_calls, capsys):
    out = tmp_path / "sweep"
    assert main(sweep_argv(out, methods="encdiff,nosuch,alsonot")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "missing presets: tiny-cpu-nosuch (method nosuch), tiny-cpu-alsonot (method alsonot)" in err
    assert train_calls == [] and not out.exists()


def test_a_cell_of_other_settings_is_rejected(tmp_path, quick_scores, capsys):
    out = tmp_path / "sweep"
    assert main(sweep_argv(out, seeds="0")) == 0
    assert main(sweep_argv(out, seeds="0", steps=3)) == 2
    err = capsys.readouterr().err
    assert "holds a cell of other settings" in err and "train.steps=3" in err


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"overrides": ["train.seed=3"]}, "set what the sweep sets per cell"),
        ({"overrides": ["train.steps=5"], "budget_minutes": 1.0}, "set what the sweep sets per cell"),
        ({"overrides": ["vae:model.beta=4"]}, "scoped to methods not in the sweep: ['vae']"),
        ({"seeds": [0, 0]}, "seeds lists 0 more than once"),
        ({"datasets": ["nope"]}, "unknown datasets ['nope']"),
        ({"metrics": ["nope"]}, "unknown metrics ['nope']"),
        ({"budget_minutes": 0}, "budget_minutes must be > 0"),
        ({"data_paths": {"shapes3d": "x.h5"}}, "datasets not in the sweep: ['shapes3d']"),
    ],
)
def test_invalid_sweeps_name_what_is_wrong(kwargs, message):
    args = {"methods": ["encdiff"], "datasets": ["synth-shapes3d"], "seeds": [0], **kwargs}
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        Sweep(**args)


def test_scoped_overrides_apply_to_their_method_only():
    sweep = Sweep(
        ["encdiff", "dyga"], ["synth-shapes3d"], [0], overrides=["train.lr=0.1", "dyga:train.lr=0.2"]
    )
    assert sweep.method_overrides("encdiff") == ["train.lr=0.1"]
    assert sweep.method_overrides("dyga") == ["train.lr=0.1", "train.lr=0.2"]  # later wins
    colon_in_value = Sweep(["encdiff"], ["synth-shapes3d"], [0], overrides=["train.device=a:b"])
    assert colon_in_value.method_overrides("encdiff") == ["train.device=a:b"]


def test_sweep_help_explains_methods_and_resuming(capsys):
    assert main(["sweep", "--help"]) == 0
    text = capsys.readouterr().out
    assert "'<preset>-M'" in text and "skips done cells" in text and "--budget-minutes" in text
