"""Several processes train what one process with the same global batch trains.

The end-to-end test runs two CPU processes (gloo, started as ``torchrun`` would: RANK, WORLD_SIZE,
MASTER_ADDR/PORT in the environment) for three steps and compares their final weights with a
single-process run. BatchNorm's batch statistics cannot be synchronised on CPU (torch's
SyncBatchNorm needs a GPU; the trainer converts to it on CUDA), so both runs swap the encoder's
BatchNorm for a per-sample norm; dropout is off in the tiny config.
"""

import json
import os
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from diffdrl.diffusion.draws import StepDraws, step_draws
from diffdrl.training.batches import DATA_STREAM, batch_index, step_rng
from diffdrl.training.checkpoint import checkpoints, load_checkpoint
from diffdrl.training.config import Config, from_dict, to_dict
from diffdrl.training.hardware import sync_batchnorm
from diffdrl.training.trainer import train


def per_sample_norm(channels: int, *args, **kwargs) -> nn.Module:
    return nn.GroupNorm(1, channels)


def test_ranks_share_one_global_batch_of_indices():
    whole = batch_index(1000, 12, seed=3, step=7)
    # a single process draws what it always drew
    np.testing.assert_array_equal(whole, step_rng(3, 7, DATA_STREAM).integers(0, 1000, size=12))
    shares = [batch_index(1000, 12, seed=3, step=7, rank=r, world=3) for r in range(3)]
    np.testing.assert_array_equal(np.concatenate(shares), whole)
    with pytest.raises(ValueError, match="divisible"):
        batch_index(1000, 10, seed=3, step=7, world=3)


def test_each_rank_draws_its_slice_of_the_global_batch():
    """Three processes with 2 rows each draw exactly the rows one process draws for 6."""

    def all_draws(d: StepDraws) -> list[torch.Tensor]:
        shared = torch.randn(7, generator=d.generator)  # not per sample: the same on every rank
        return [d.integers(0, 50), d.uniform(dtype=torch.float64), d.normal(3, 4, 4), d.normal(5), shared]

    whole = all_draws(StepDraws.seeded(5, 6))
    parts = [all_draws(StepDraws.seeded(5, 2, rank=rank, world=3)) for rank in range(3)]
    for i, expected in enumerate(whole[:-1]):
        assert torch.equal(torch.cat([p[i] for p in parts]), expected), i
    assert all(torch.equal(p[-1], whole[-1]) for p in parts)


def test_a_draw_of_the_local_batch_size_is_not_mistaken_for_a_batch():
    """A per-unit draw whose length happens to equal the local batch stays whole on every rank."""
    one = StepDraws.seeded(5, 20)
    ranks = [StepDraws.seeded(5, 20, rank=r, world=16) for r in range(2)]
    coins = [torch.rand(20, generator=d.generator) for d in (one, *ranks)]  # 20 units, batch 20
    assert torch.equal(coins[0], coins[1]) and torch.equal(coins[1], coins[2])


def test_draws_refuse_a_batch_they_were_not_made_for():
    with pytest.raises(ValueError, match="batch of 4"):
        step_draws(StepDraws.seeded(0, 4), 5)
    with pytest.raises(ValueError, match="rank"):
        StepDraws.seeded(0, 4, rank=2, world=2)


def test_batchnorm_becomes_sync_batchnorm_only_where_torch_can_sync():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    converted, note = sync_batchnorm(model, torch.device("cuda"), 2)  # conversion itself needs no GPU
    assert isinstance(converted[1], nn.SyncBatchNorm) and note == "on"
    assert converted.state_dict().keys() == model.state_dict().keys()  # checkpoints unchanged
    assert sync_batchnorm(model, torch.device("cuda"), 1) == (model, "not needed")
    with pytest.warns(UserWarning, match="per process"):
        kept, note = sync_batchnorm(model, torch.device("cpu"), 2)
    assert kept is model and "per-process" in note


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_train_what_one_process_trains(tiny_config, tmp_path, monkeypatch):
    overrides = ["train.steps=3", "train.batch_size=8", "train.eval_batch_size=4"]
    port = free_port()
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": "2"}
    env |= {"LOCAL_WORLD_SIZE": "2", "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    config = tiny_config(*overrides)
    mapping = json.dumps(to_dict(config))
    workers = [
        subprocess.Popen(
            [sys.executable, __file__, str(tmp_path / "two"), mapping],
            env={**env, "RANK": str(rank), "LOCAL_RANK": str(rank)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in range(2)
    ]
    try:
        monkeypatch.setattr(nn, "BatchNorm2d", per_sample_norm)
        one = train(config, tmp_path / "one", progress=False)  # meanwhile, in this process
        for worker in workers:
            output = worker.communicate(timeout=300)[0]
            assert worker.returncode == 0, output
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
    assert [s for s, _ in checkpoints(tmp_path / "two")] == [2, 3]  # written once, by rank 0
    assert not [p for p in (tmp_path / "two" / "checkpoints").iterdir() if p.name.startswith(".")]
    rows = [json.loads(r) for r in (tmp_path / "two" / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]
    single = [json.loads(r) for r in (tmp_path / "one" / "train_log.jsonl").read_text().splitlines()]
    np.testing.assert_allclose([r["loss"] for r in rows], [r["loss"] for r in single], rtol=1e-5)
    a, _ = load_checkpoint(one.checkpoint)
    b, state_two = load_checkpoint(tmp_path / "two" / "checkpoints" / "step_3")
    assert state_two["settings"]["processes"] == 2 and state_two["settings"]["batch_per_process"] == 4
    for part in ("model", "ema"):
        assert a[part].keys() == b[part].keys()
        for key in a[part]:
            torch.testing.assert_close(b[part][key], a[part][key], rtol=1e-4, atol=1e-5, msg=key)


def _worker(run_dir: str, mapping: str) -> None:
    """One process of the two-process run (started by the test above)."""
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    nn.BatchNorm2d = per_sample_norm
    train(from_dict(Config, json.loads(mapping)), Path(run_dir), progress=False)


if __name__ == "__main__":
    _worker(*sys.argv[1:3])
