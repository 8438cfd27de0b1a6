"""Checkpoint files on their own: safetensors + JSON, optimizer state flattened and restored, pruning."""

import json

import pytest
import torch

from diffdrl.training.checkpoint import (
    checkpoints,
    latest_checkpoint,
    load_checkpoint,
    optimizer_from_tensors,
    optimizer_to_tensors,
    save_checkpoint,
)


def adam_state() -> dict:
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    return optimizer.state_dict()


def test_optimizer_state_survives_the_tensor_json_split():
    state = adam_state()
    tensors, meta = optimizer_to_tensors(state)
    back = optimizer_from_tensors(tensors, json.loads(json.dumps(meta)))  # meta must be plain JSON
    assert back["param_groups"] == json.loads(json.dumps(state["param_groups"]))  # tuples become lists
    for idx, slots in state["state"].items():
        for name, value in slots.items():
            assert torch.equal(torch.as_tensor(back["state"][idx][name]), torch.as_tensor(value)), (idx, name)


def test_save_load_round_trip_and_pruning(tmp_path):
    weights = {"w": torch.arange(6.0).view(2, 3)}
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, step, {"model": weights}, {"step": step}, keep=2)
    assert [s for s, _ in checkpoints(tmp_path)] == [2, 3]
    tensors, state = load_checkpoint(latest_checkpoint(tmp_path))
    assert state["step"] == 3 and set(state["files"]) == {"model.safetensors"}  # with their checksums
    assert torch.equal(tensors["model"]["w"], weights["w"])
    assert not [p for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith(".")]  # no leftovers


def test_resaving_a_step_replaces_it(tmp_path):
    save_checkpoint(tmp_path, 4, {"model": {"w": torch.zeros(1)}}, {"step": 4}, keep=3)
    save_checkpoint(tmp_path, 4, {"model": {"w": torch.ones(1)}}, {"step": 4}, keep=3)
    assert load_checkpoint(latest_checkpoint(tmp_path))[0]["model"]["w"].item() == 1.0


def test_incomplete_checkpoints_are_named(tmp_path):
    path = save_checkpoint(tmp_path, 1, {"model": {"w": torch.zeros(1)}}, {"step": 1}, keep=1)
    (path / "state.json").write_text("{not json")
    with pytest.raises(ValueError, match="state.json is corrupt"):
        load_checkpoint(path)
    (path / "state.json").unlink()
    with pytest.raises(ValueError, match="state.json is missing"):
        load_checkpoint(path)
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "nowhere")
