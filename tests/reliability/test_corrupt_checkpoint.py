"""A corrupt newest checkpoint stops ``--resume`` with its name and the ``--resume-from`` of the
newest valid one, changing nothing; that flag then continues exactly (the broken checkpoint is
moved aside, not deleted)."""

import hashlib
import json

import pytest

from diffdrl.training.checkpoint import checkpoints, load_checkpoint
from helpers.reliability import RUN_ARGS, assert_same_run, slow, train_cli


def digest(root):
    return {
        str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    run = tmp_path_factory.mktemp("corrupt") / "reference"
    assert train_cli(run, *RUN_ARGS) == 0
    return run


def truncate(path):
    path.write_bytes(path.read_bytes()[:100])


def flip_a_byte(path):
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF  # inside the tensor data: the safetensors header still parses
    path.write_bytes(bytes(data))


def break_state(path):
    path.write_text('{"step": 4, ')


def remove(path):
    path.unlink()


@pytest.mark.parametrize(
    "damage, file, text",
    [
        (truncate, "model.safetensors", "model.safetensors is corrupt"),
        pytest.param(
            flip_a_byte, "ema.safetensors", "ema.safetensors is corrupt: its sha256 differs", marks=slow
        ),
        pytest.param(break_state, "state.json", "state.json is corrupt", marks=slow),
        pytest.param(
            remove, "optimizer.safetensors", "is incomplete: optimizer.safetensors is missing", marks=slow
        ),
    ],
)
def test_corrupt_newest_checkpoint_is_named_and_resume_from_continues(
    damage, file, text, reference, tmp_path, capsys
):
    run = tmp_path / "run"
    assert train_cli(run, *RUN_ARGS, "train.steps=4") == 0
    damage(run / "checkpoints" / "step_4" / file)
    before = digest(run)
    assert train_cli(run, "--resume", "train.steps=8") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "step_4" in err[0] and text in err[0], err
    assert "the newest valid checkpoint is step_2: continue from it with --resume-from step_2" in err[0]
    assert digest(run) == before  # never a silent fallback, nothing touched

    assert train_cli(run, "--resume-from", "step_2", "train.steps=8") == 0
    assert (run / "checkpoints" / "abandoned" / "step_4" / file).exists() or file == "optimizer.safetensors"
    assert (run / "checkpoints" / "abandoned" / "step_4").is_dir()
    assert_same_run(reference, run)


def test_no_valid_checkpoint_says_so(tmp_path, capsys):
    run = tmp_path / "run"
    assert train_cli(run, *RUN_ARGS, "train.steps=2") == 0
    truncate(run / "checkpoints" / "step_2" / "model.safetensors")
    assert train_cli(run, "--resume") == 2
    err = capsys.readouterr().err
    assert "no checkpoint of the run loads" in err and "step_2" in err


def test_checkpoints_record_their_checksums(tmp_path):
    run = tmp_path / "run"
    assert train_cli(run, *RUN_ARGS, "train.steps=2") == 0
    path = checkpoints(run)[-1][1]
    files = json.loads((path / "state.json").read_text())["files"]
    assert set(files) == {"model.safetensors", "ema.safetensors", "optimizer.safetensors"}
    for name, entry in files.items():
        data = (path / name).read_bytes()
        assert entry == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    load_checkpoint(path)
