"""A failed checkpoint write (disk full, no permission) removes its partial files, keeps the
previous checkpoint loadable, and is one line with exit status 1; resuming later is exact."""

import errno

import pytest

import diffdrl.training.checkpoint as checkpoint
from diffdrl.training.checkpoint import checkpoints, load_checkpoint
from helpers.reliability import RUN_ARGS, assert_same_run, leftovers, slow, train_cli


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    run = tmp_path_factory.mktemp("disk_full") / "reference"
    assert train_cli(run, *RUN_ARGS) == 0
    return run


@pytest.mark.parametrize(
    "code, text",
    [(errno.ENOSPC, "No space left on device"), pytest.param(errno.EACCES, "Permission denied", marks=slow)],
)
def test_failed_checkpoint_write_keeps_the_previous_one(code, text, reference, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    original = checkpoint._write_synced

    def failing(path, data):
        if "step_4" in path.parent.name and path.name == "ema.safetensors":
            path.write_bytes(data[: len(data) // 3])  # a partial file, as a full disk leaves
            raise OSError(code, text)
        original(path, data)

    monkeypatch.setattr(checkpoint, "_write_synced", failing)
    assert train_cli(run, *RUN_ARGS) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert f"could not write checkpoint {run}/checkpoints/step_4: [Errno {code}] {text}" in err[0]
    assert f"{run}/checkpoints/step_2 is intact" in err[0]
    assert [s for s, _ in checkpoints(run)] == [2]
    load_checkpoint(run / "checkpoints" / "step_2")  # loads, checksums and all
    assert leftovers(run) == []  # no partial write, no lock
    monkeypatch.undo()
    assert train_cli(run, "--resume") == 0
    assert_same_run(reference, run)
