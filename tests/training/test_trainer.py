import json
import math

import pytest
import torch

from diffdrl.api import load_model
from diffdrl.data import make_dataset
from diffdrl.data.ground_truth import to_model_input
from diffdrl.models.encdiff import EncDiff
from diffdrl.training.batches import EVAL_STREAM, batch_index, step_seed
from diffdrl.training.checkpoint import checkpoints, latest_checkpoint, load_checkpoint
from diffdrl.training.run_lock import RunBusyError
from diffdrl.training.side_jobs import held_out_loss
from diffdrl.training.trainer import NonFiniteLossError, Trainer, train
from helpers.resume import assert_resumes_bit_exactly


def test_one_training_step_changes_every_component(tiny_config, tmp_path):
    config = tiny_config("train.steps=1")
    trainer = Trainer(config, tmp_path / "run", progress=False)
    before = {k: v.clone() for k, v in trainer.unwrapped.state_dict().items()}
    result = trainer.train()
    assert result.step == 1 and math.isfinite(result.loss)
    after = trainer.unwrapped.state_dict()
    for part in ("encoder.head", "token_bank.weights", "denoiser.unet.conv_out"):
        keys = [k for k in after if k.startswith(part) and after[k].is_floating_point()]
        assert keys and any(not torch.equal(before[k], after[k]) for k in keys), part


def test_checkpoint_round_trip(tiny_config, tmp_path):
    config = tiny_config("train.steps=2")
    trainer = Trainer(config, tmp_path / "run", progress=False)
    trainer.train()
    path = latest_checkpoint(tmp_path / "run")
    assert path.name == "step_2"
    tensors, state = load_checkpoint(path)
    assert state["step"] == 2 and set(tensors) == {"model", "ema", "optimizer"}
    model = load_model(tmp_path / "run", weights="model")
    for k, v in trainer.unwrapped.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    ema = load_model(tmp_path / "run")
    assert not all(torch.equal(ema.state_dict()[k], v) for k, v in model.state_dict().items())


def test_resume_is_bit_exact(tiny_config, tmp_path):
    resumed = assert_resumes_bit_exactly(lambda steps: tiny_config(f"train.steps={steps}"), tmp_path)
    # the logs hold each step once, as if never interrupted
    rows = [json.loads(r) for r in (resumed / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]


def test_existing_run_is_not_overwritten(tiny_config, tmp_path):
    train(tiny_config("train.steps=2"), tmp_path / "run", progress=False)
    with pytest.raises(FileExistsError, match="--resume"):
        Trainer(tiny_config("train.steps=2"), tmp_path / "run", progress=False)


def test_the_lock_is_held_by_train_only(tiny_config, tmp_path):
    """Building a trainer writes nothing and takes no lock, so trainers built and dropped never lock
    their process out; ``train`` holds the lock and refuses to write a run that moved on."""
    fresh = Trainer(tiny_config("train.steps=2"), tmp_path / "new", progress=False)
    assert not (tmp_path / "new").exists() and fresh.step == 0
    run = tmp_path / "run"
    train(tiny_config("train.steps=2"), run, progress=False)
    stale = Trainer(tiny_config("train.steps=4"), run, resume=True, progress=False)
    assert not (run / "train.lock").exists()
    assert Trainer(tiny_config("train.steps=4"), run, resume=True, progress=False).train().step == 4
    with pytest.raises(RunBusyError, match="changed after this trainer loaded it.*step_4.*step_2"):
        stale.train()
    assert not (run / "train.lock").exists() and latest_checkpoint(run).name == "step_4"
    rows = [json.loads(r) for r in (run / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]  # the refused trainer cut no log back


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tiny_config, tmp_path, monkeypatch):
    config = tiny_config("train.steps=6")
    calls = {"n": 0}
    original = EncDiff.forward

    def poisoned(self, *args, **kwargs):
        loss, terms = original(self, *args, **kwargs)
        if self.training:
            calls["n"] += 1
            if calls["n"] == 4:  # step index 3, after the step-2 checkpoint
                return loss * float("nan"), terms
        return loss, terms

    monkeypatch.setattr(EncDiff, "forward", poisoned)
    with pytest.raises(NonFiniteLossError, match="loss is nan at step 3.*step_2"):
        train(config, tmp_path / "run", progress=False)
    assert [step for step, _ in checkpoints(tmp_path / "run")] == [2]
    tensors, _ = load_checkpoint(latest_checkpoint(tmp_path / "run"))
    assert all(torch.isfinite(v).all() for v in tensors["model"].values() if v.is_floating_point())


def test_old_checkpoints_are_pruned(tiny_config, tmp_path):
    train(
        tiny_config("train.steps=6", "train.checkpoint_every=1", "train.keep_checkpoints=2"),
        tmp_path / "run",
        progress=False,
    )
    assert [s for s, _ in checkpoints(tmp_path / "run")] == [5, 6]


def test_corrupt_checkpoint_is_reported(tiny_config, tmp_path):
    train(tiny_config("train.steps=2"), tmp_path / "run", progress=False)
    (latest_checkpoint(tmp_path / "run") / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="model.safetensors is corrupt"):
        load_model(tmp_path / "run")


def test_mismatched_checkpoint_is_reported(tiny_config, tmp_path):
    train(tiny_config("train.steps=2"), tmp_path / "run", progress=False)
    with pytest.raises(ValueError, match="does not match"):
        Trainer(tiny_config("train.steps=4", "model.units=5"), tmp_path / "run", resume=True, progress=False)


def test_evaluation_logs_token_reliance(tiny_config, tmp_path):
    train(tiny_config("train.steps=2"), tmp_path / "run", progress=False)
    rows = [json.loads(r) for r in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 2
    assert {"eval/loss", "eval/loss_shuffled_tokens", "eval/token_reliance"} <= set(rows[-1])
    # the values: the held-out loss of the step-2 weights on the fixed evaluation batch and draws, with
    # the tokens as they are and shuffled across the batch; the reliance is the relative rise
    config = tiny_config("train.steps=2")
    seed, size = config.train.seed, config.train.eval_batch_size
    data = make_dataset(config.data.name, config.data.path, config.data.resolution)
    x = to_model_input(torch.as_tensor(data.images_at(batch_index(len(data), size, seed, 0, EVAL_STREAM))))
    model = load_model(tmp_path / "run", weights="model")
    expected = held_out_loss(model, x, step_seed(seed, 0, EVAL_STREAM))
    for key in ("eval/loss", "eval/loss_shuffled_tokens", "eval/token_reliance"):
        assert rows[-1][key] == expected[key], key
    assert rows[-1]["eval/loss"] > 0
    assert rows[-1]["eval/token_reliance"] == pytest.approx(
        rows[-1]["eval/loss_shuffled_tokens"] / rows[-1]["eval/loss"] - 1.0, rel=1e-12
    )


def test_metrics_run_on_schedule(tiny_config, tmp_path):
    config = tiny_config("train.steps=4", "train.metrics=[mig]", "train.metrics_every=2")
    train(config, tmp_path / "run", progress=False)
    rows = [json.loads(r) for r in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    mig_rows = [r for r in rows if "mig_fast" in r]
    assert [r["step"] for r in mig_rows] == [2, 4]
    assert all(0.0 <= r["mig_fast"] <= 1.0 for r in mig_rows)


def test_unknown_training_metric_is_rejected(tiny_config, tmp_path):
    with pytest.raises(ValueError, match="train.metrics: unknown"):
        Trainer(tiny_config("train.metrics=[mgi]"), tmp_path / "run", progress=False)


def test_compiled_training_keeps_plain_checkpoint_keys(tiny_config, tmp_path, monkeypatch):
    compile_ = torch.compile
    monkeypatch.setattr(torch, "compile", lambda model: compile_(model, backend="eager"))  # no codegen: fast
    trainer = Trainer(tiny_config("train.steps=1", "train.compile=true"), tmp_path / "run", progress=False)
    assert trainer.unwrapped is not trainer.model
    assert not any(k.startswith("_orig_mod") for k in trainer.unwrapped.state_dict())


def test_time_budget_stops_training_and_resumes_with_a_larger_one(tiny_config, tmp_path, monkeypatch):
    import diffdrl.training.clock as clock_module

    clock = iter(range(0, 10**6, 30))  # every perf_counter call advances 30 s
    monkeypatch.setattr(clock_module.time, "perf_counter", lambda: float(next(clock)))
    config = tiny_config("train.steps=1000", "train.time_budget_minutes=1.5", "train.eval_every=1000")
    first = train(config, tmp_path / "run", progress=False)
    assert 1 <= first.step < 1000 and first.checkpoint.name == f"step_{first.step}"
    _, state = load_checkpoint(first.checkpoint)
    assert state["train_seconds"] >= 90
    # the same budget again: nothing more to do; a larger one continues from the checkpoint
    again = train(config, tmp_path / "run", resume=True, progress=False)
    assert again.step == first.step
    longer = train(
        tiny_config("train.steps=1000", "train.time_budget_minutes=3", "train.eval_every=1000"),
        tmp_path / "run",
        resume=True,
        progress=False,
    )
    assert first.step < longer.step < 1000
    rows = [json.loads(r) for r in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [first.step, longer.step]  # evaluated at each stop
    assert rows[-1]["train_seconds"] >= 180


def test_encoder_lr_scale_gives_the_encoder_its_own_rate(tiny_config, tmp_path):
    plain = Trainer(tiny_config("train.warmup_steps=0"), tmp_path / "a", progress=False)
    assert len(plain.optimizer.param_groups) == 1  # the paper's setting: one group, old checkpoints load
    trainer = Trainer(
        tiny_config("model.encoder_lr_scale=3", "train.warmup_steps=4", "train.steps=2"),
        tmp_path / "b",
        progress=False,
    )
    own, rest = trainer.optimizer.param_groups
    model = trainer.unwrapped
    assert {id(p) for p in own["params"]} == {
        id(p) for p in [*model.encoder.parameters(), *model.token_bank.parameters()]
    }
    assert len(own["params"]) + len(rest["params"]) == len(list(model.parameters()))
    trainer.train()  # the warm-up scales both groups alike
    assert own["lr"] == pytest.approx(3 * rest["lr"]) and rest["lr"] == pytest.approx(2 / 4 * 1e-3)
    resumed = train(
        tiny_config("model.encoder_lr_scale=3", "train.warmup_steps=4", "train.steps=3"),
        tmp_path / "b",
        resume=True,
        progress=False,
    )
    assert resumed.step == 3


def test_encoder_lr_scale_must_be_positive(tiny_config):
    with pytest.raises(ValueError, match="encoder_lr_scale must be > 0"):
        tiny_config("model.encoder_lr_scale=0")
