import json

import numpy as np
import pytest
import torch

from diffdrl.models import registry
from diffdrl.training.runs import load_model, load_run
from diffdrl.training.trainer import Trainer, train


def test_latent_encdiff_diffuses_latents_and_its_encoder_reads_pixels(latent_config):
    model = registry.build(latent_config().model, 64, seed=0)
    assert model.noise_shape == (3, 16, 16)
    assert model.denoiser.unet.config.sample_size == 16 and model.denoiser.unet.config.in_channels == 3
    model.first_stage.calibrate(torch.rand(4, 3, 64, 64) * 2 - 1)
    units = model.encode(np.zeros((2, 64, 64, 3), np.uint8))
    assert units.shape == (2, 3)
    assert model.diffusion_input(torch.zeros(2, 3, 64, 64)).shape == (2, 3, 16, 16)


def test_scale_is_one_over_the_std_of_the_first_batch(latent_config, tmp_path):
    from diffdrl.data.ground_truth import to_model_input
    from diffdrl.training.batches import batch_index

    config = latent_config("train.steps=1")
    trainer = Trainer(config, tmp_path / "run", progress=False)
    index = batch_index(len(trainer.dataset), config.train.batch_size, config.train.seed, 0)
    x = to_model_input(torch.as_tensor(trainer.dataset.images_at(index)))
    stage = trainer.unwrapped.first_stage
    expected = 1.0 / float(stage.raw_latents(x).std())
    assert float(stage.scale) == pytest.approx(expected, rel=1e-6)
    assert float(trainer.ema.state_dict()["first_stage.scale"]) == float(stage.scale)


def test_frozen_first_stage_gets_no_gradient_and_does_not_change(latent_config, tmp_path):
    config = latent_config("train.steps=3")
    trainer = Trainer(config, tmp_path / "run", progress=False)
    stage = trainer.unwrapped.first_stage
    before = {k: v.clone() for k, v in stage.state_dict().items()}
    others = {k: v.clone() for k, v in trainer.unwrapped.denoiser.state_dict().items()}
    assert not any(p.requires_grad for p in stage.parameters())
    optimised = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    assert not optimised & {id(p) for p in stage.parameters()}
    trainer.train()
    trainer.unwrapped.train()  # what the trainer calls: the first stage stays in eval mode
    assert trainer.unwrapped.encoder.training and not stage.training and not stage.net.training
    assert all(p.grad is None for p in stage.parameters())
    after = stage.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert any(not torch.equal(others[k], v) for k, v in trainer.unwrapped.denoiser.state_dict().items())
    assert not load_model(tmp_path / "run").first_stage.training


def test_tiny_latent_encdiff_resumes_exactly_and_keeps_its_scale(latent_config, tmp_path):
    straight = train(latent_config("train.steps=4"), tmp_path / "a", progress=False)
    train(latent_config("train.steps=2"), tmp_path / "b", progress=False)
    scale_at_2 = float(load_model(tmp_path / "b").first_stage.scale)
    resumed = Trainer(latent_config("train.steps=4"), tmp_path / "b", resume=True, progress=False)
    assert float(resumed.unwrapped.first_stage.scale) == scale_at_2  # loaded, not measured again
    resumed.train()
    a, b = (load_model(tmp_path / r, weights="model").state_dict() for r in ("a", "b"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert float(a["first_stage.scale"]) == scale_at_2 > 0
    assert straight.step == 4


def test_latent_encdiff_generates_64x64_images_through_the_first_stage(latent_config, tmp_path):
    from diffdrl.viz.attention import attention_maps
    from diffdrl.viz.render import reconstruct, render_units, shared_start

    train(latent_config("train.steps=2"), tmp_path / "run", progress=False)
    run = load_run(tmp_path / "run")
    model = run.model
    _, images = run.sample(2)
    tokens = model.tokens(model.encode(images))
    out = model.generate(tokens, steps=3, seed=0)
    assert out.shape == (2, 3, 64, 64) and out.abs().max() <= 1.0
    torch.testing.assert_close(out, model.generate(tokens, steps=3, seed=0))
    x_T = shared_start(model, seed=0)
    assert x_T.shape == (1, 3, 16, 16)
    assert render_units(model, model.encode(images), x_T=x_T, steps=2).shape == (2, 3, 64, 64)
    assert reconstruct(model, images, steps=2).shape == (2, 3, 64, 64)
    x_T = model.invert(torch.as_tensor(images).permute(0, 3, 1, 2) / 127.5 - 1, tokens, steps=2)
    assert x_T.shape == (2, 3, 16, 16)
    maps = attention_maps(model, images, timesteps=(10,))
    assert maps.shape == (2, 3, 64, 64)  # 8x8 / 4x4 latent maps, upsampled to the image
    torch.testing.assert_close(maps.sum(dim=(2, 3)), torch.ones(2, 3))


def test_mismatched_first_stage_is_a_one_line_error(latent_config):
    with pytest.raises(
        ValueError, match="trained on 64x64 images with 3 channels, but this run has 32x32"
    ) as err:
        registry.build(latent_config("data.resolution=32").model, 32)
    assert "\n" not in str(err.value)


def test_missing_or_stale_first_stage_is_an_error(latent_config, trained_stage, tmp_path):
    with pytest.raises(FileNotFoundError, match="no first-stage run there"):
        registry.build(latent_config(f"model.first_stage.path={tmp_path / 'none'}").model, 64)
    stale = tmp_path / "stale"
    import shutil

    shutil.copytree(trained_stage, stale)
    shutil.copytree(stale / "checkpoints" / "step_2", stale / "checkpoints" / "step_9")
    with pytest.raises(ValueError, match="is from step 2 but the run's latest checkpoint is step 9"):
        registry.build(latent_config(f"model.first_stage.path={stale}").model, 64)


def test_cli_reports_a_mismatched_first_stage_in_one_line(trained_stage, tmp_path, capsys):
    from diffdrl.cli import main

    status = main(
        [
            "train",
            "--config",
            "tiny-cpu",
            "--out",
            str(tmp_path / "r"),
            f"model.first_stage.path={trained_stage}",
        ]
    )
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and "trained on 64x64" in err


def test_export_records_the_shapes(trained_stage):
    info = json.loads((trained_stage / "diffusers" / "first_stage.json").read_text())
    assert info["latent_shape"] == [3, 16, 16] and info["resolution"] == 64 and info["channels"] == 3
