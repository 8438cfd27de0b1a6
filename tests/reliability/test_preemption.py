"""SIGTERM, SIGINT and SIGUSR1 make training checkpoint at the next step boundary and exit with
status 75; ``--resume`` then continues exactly. A second SIGINT stops at once (130)."""

import os
import signal

import pytest

from diffdrl.training.checkpoint import checkpoints
from diffdrl.training.trainer import Trainer
from helpers.reliability import RUN_ARGS, TrainProcess, assert_same_run, leftovers, slow, train_cli


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    run = tmp_path_factory.mktemp("preempt") / "reference"
    assert train_cli(run, *RUN_ARGS) == 0
    return run


def signal_during_step(monkeypatch, index: int, *signums: int) -> None:
    """Deliver ``signums`` to this process in the middle of optimisation step ``index``."""
    original = Trainer._step

    def step(self, i, *args, **kwargs):
        if i == index:
            for signum in signums:
                os.kill(os.getpid(), signum)
        return original(self, i, *args, **kwargs)

    monkeypatch.setattr(Trainer, "_step", step)


@pytest.mark.parametrize(
    "signum",
    [signal.SIGTERM, pytest.param(signal.SIGINT, marks=slow), pytest.param(signal.SIGUSR1, marks=slow)],
)
def test_signal_checkpoints_at_the_step_boundary_and_resume_is_exact(
    signum, reference, tmp_path, monkeypatch, capsys
):
    run = tmp_path / "run"
    previous = signal.getsignal(signum)
    signal_during_step(monkeypatch, 2, signum)  # during step index 2: stop after step 3
    assert train_cli(run, *RUN_ARGS) == 75
    err = capsys.readouterr().err
    name = signal.Signals(signum).name
    assert f"stopped by {name} at step 3" in err and "--resume" in err
    assert [s for s, _ in checkpoints(run)] == [2, 3]  # step 3 is off the every-2 schedule
    assert signal.getsignal(signum) == previous  # the handlers are put back
    assert leftovers(run) == []  # the lock is released
    monkeypatch.undo()
    assert train_cli(run, "--resume") == 0
    assert_same_run(reference, run)


def test_second_sigint_stops_at_once(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    signal_during_step(monkeypatch, 2, signal.SIGINT, signal.SIGINT)
    assert train_cli(run, *RUN_ARGS) == 130
    assert "interrupted" in capsys.readouterr().err
    assert [s for s, _ in checkpoints(run)] == [2]
    assert not (run / "train.lock").exists()


@slow
def test_sigterm_to_a_training_process_exits_75_and_a_second_trainer_is_refused(reference, tmp_path, capsys):
    run = tmp_path / "run"
    proc = TrainProcess(run, *RUN_ARGS, pause=1.0)
    proc.wait_for("diffdrl-checkpoint-write step_2 model.safetensors")
    # one run, one writer: while it trains, a second trainer is refused at once, changing nothing
    assert train_cli(run, "--resume") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"is being trained by pid {proc.proc.pid}" in err
    proc.proc.send_signal(signal.SIGTERM)  # inside step 2's write: it completes, and training stops there
    code, lines = proc.finish()
    assert code == 75, lines
    assert any("stopped by SIGTERM at step 2; checkpoint" in line for line in lines), lines
    assert [s for s, _ in checkpoints(run)] == [2]
    assert leftovers(run) == []
    assert train_cli(run, "--resume") == 0
    assert_same_run(reference, run)
