import json

import torch

from diffdrl.api import load_model
from diffdrl.training.checkpoint import load_checkpoint
from diffdrl.training.trainer import Trainer, train
from helpers.resume import assert_resumes_bit_exactly

DYGA = [
    "model.anchoring.enabled=true",
    "model.anchoring.refit_every=2",
    "model.anchoring.max_fit_tokens=64",
    "model.anchoring.em_iterations=5",
    "model.denoiser.skip_dropout.rate=0.2",
    "model.denoiser.skip_dropout.levels=[0]",
]


def test_anchors_are_refit_on_schedule_and_logged(tiny_config, tmp_path):
    trainer = Trainer(tiny_config("train.steps=4", *DYGA), tmp_path / "run", progress=False)
    assert not trainer.unwrapped.anchors._is_fitted
    trainer.train()
    rows = [json.loads(r) for r in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    refits = [r for r in rows if "anchoring/components_mean" in r]
    assert [r["step"] for r in refits] == [2, 4]
    assert all(r["anchoring/tokens"] == 64 and len(r["anchoring/components"]) == 3 for r in refits)
    log = [json.loads(r) for r in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert "anchoring_lambda" not in log[0] and 0 <= log[-1]["anchoring_lambda"] <= 0.1
    # the EMA copy carries exactly the model's mixtures (never a blend of two fits)
    model_state = trainer.unwrapped.state_dict()
    for key, value in trainer.ema.state_dict().items():
        if key.startswith("anchors."):
            assert torch.equal(value, model_state[key]), key


def test_fitted_anchors_survive_checkpoints(tiny_config, tmp_path):
    result = train(tiny_config("train.steps=2", *DYGA), tmp_path / "run", progress=False)
    tensors, _ = load_checkpoint(result.checkpoint)
    assert bool(tensors["model"]["anchors.fitted"])
    model = load_model(tmp_path / "run")
    assert model.anchors._is_fitted
    images = torch.randint(0, 256, (4, 16, 16, 3), dtype=torch.uint8).numpy()
    raw = model.raw_tokens(model.encode(images))
    anchored = model.tokens(model.encode(images))
    assert not torch.equal(raw, anchored)  # anchoring is applied at evaluation and generation too


def test_resume_with_dyga_is_bit_exact(tiny_config, tmp_path):
    assert_resumes_bit_exactly(lambda steps: tiny_config(f"train.steps={steps}", *DYGA), tmp_path)
