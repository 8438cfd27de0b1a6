"""SIGKILL at the worst moments: before the first checkpoint (the run must resume with its own
config.yaml) and inside a checkpoint write (the previous checkpoint must survive, and the next run
must clean up what the killed one left). Each resumed run ends bit-identical to an uninterrupted one."""

import signal

import pytest

from helpers.reliability import RUN_ARGS, TrainProcess, assert_same_run, leftovers, slow, train_cli


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    run = tmp_path_factory.mktemp("kill") / "reference"
    assert train_cli(run, *RUN_ARGS) == 0
    return run


def test_killed_before_first_checkpoint_resumes_with_its_own_config(reference, tmp_path, capsys):
    run = tmp_path / "run"
    proc = TrainProcess(run, *RUN_ARGS, pause=30)
    proc.wait_for("diffdrl-checkpoint-write step_2 model.safetensors")  # inside the first write
    proc.proc.send_signal(signal.SIGKILL)
    proc.finish()
    assert not (run / "checkpoints" / "step_2").exists()
    assert (run / "train.lock").exists() and any(".tmp-step_2-" in p for p in leftovers(run))
    config = (run / "config.yaml").read_text()
    assert "units: 3" in config  # the run's overrides, not the preset's 20 units

    assert train_cli(run, "--resume") == 0  # no overrides: everything comes from RUN/config.yaml
    out, err = capsys.readouterr()
    assert "from the start (no checkpoint yet) (config: " in out
    assert "recovered the stale lock" in err and "that process is gone" in err
    assert (run / "config.yaml").read_text() == config
    assert leftovers(run) == []
    assert_same_run(reference, run)


@slow
@pytest.mark.parametrize("stage", ["optimizer.safetensors", "rename"])
def test_killed_inside_a_checkpoint_write_keeps_the_previous_one(stage, reference, tmp_path):
    run = tmp_path / "run"
    proc = TrainProcess(run, *RUN_ARGS, pause=0.2)
    proc.wait_for(f"diffdrl-checkpoint-write step_4 {stage}")
    proc.proc.send_signal(signal.SIGKILL)
    proc.finish()
    assert sorted(p.name for p in (run / "checkpoints").glob("step_*")) == ["step_2"]
    assert any(".tmp-step_4-" in p for p in leftovers(run))
    assert train_cli(run, "--resume") == 0
    assert leftovers(run) == []
    assert_same_run(reference, run)
