"""The first-stage latent cache (training/latent_cache.py): the same training, fewer encodings."""

import json

import numpy as np
import pytest
import torch

from diffdrl.cli import main
from diffdrl.data.ground_truth import to_model_input
from diffdrl.training.config import ConfigError
from diffdrl.training.latent_cache import LatentCache
from diffdrl.training.runs import load_model
from diffdrl.training.trainer import Trainer

CACHE = "model.first_stage.cache_latents=true"


def _losses(run_dir) -> list[tuple[int, float]]:
    rows = (run_dir / "train_log.jsonl").read_text().splitlines()
    return [(r["step"], r["loss"]) for r in map(json.loads, rows)]


def _held_out(run_dir) -> list[float]:
    rows = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r["loss"] for r in map(json.loads, rows) if "loss" in r]


def _weights(run_dir, weights: str) -> dict[str, torch.Tensor]:
    return load_model(run_dir, weights=weights).state_dict()


SPEED = {"float32": [], "channels_last": ["train.channels_last=true"], "bf16": ["train.mixed_precision=bf16"]}


@pytest.mark.parametrize("speed", SPEED)
def test_cache_on_trains_exactly_as_off_and_resumes_exactly(latent_config, latent_folder, tmp_path, speed):
    folder = ["data.name=image-folder", f"data.path={latent_folder}", *SPEED[speed]]
    off = Trainer(latent_config(*folder, "train.steps=6"), tmp_path / "off", progress=False)
    off.train()
    on = Trainer(latent_config(*folder, "train.steps=6", CACHE), tmp_path / "on", progress=False)
    on.train()
    assert off.latent_cache is None and on.settings["latent_cache"].startswith("5 items x 3x16x16 on cpu")
    # 5 items in batches of 4: from step 1 on most batches are served from the cache alone
    cache = on.latent_cache
    assert cache.hits >= 2 and cache.hits + cache.encoded == 6 and cache.filled_count == 5
    assert cache.store.dtype == (torch.bfloat16 if speed == "bf16" else torch.float32)  # as the encoder gives
    Trainer(latent_config(*folder, "train.steps=3", CACHE), tmp_path / "resumed", progress=False).train()
    again = Trainer(
        latent_config(*folder, "train.steps=6", CACHE), tmp_path / "resumed", resume=True, progress=False
    )
    assert again.latent_cache.filled_count == 0  # not checkpointed: rebuilt from the frozen weights
    again.train()
    for run in ("on", "resumed"):
        assert _losses(tmp_path / run) == _losses(tmp_path / "off")
        assert _held_out(tmp_path / run) == _held_out(tmp_path / "off")
        for weights in ("model", "ema"):
            a, b = _weights(tmp_path / "off", weights), _weights(tmp_path / run, weights)
            assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), (run, weights)


@pytest.mark.parametrize("kind", ["vq", "kl"])
def test_repeated_items_skip_the_encoder_and_get_the_latents_it_would_give(
    trained_stage, stage_config, latent_folder, tmp_path, kind
):
    from diffdrl.data import make_dataset
    from diffdrl.models.latent_space import FrozenFirstStage
    from diffdrl.training.first_stage_export import export_untrained

    data = make_dataset("image-folder", str(latent_folder), 64)
    path = (
        trained_stage if kind == "vq" else export_untrained(stage_config(resolution=64, kind="kl"), tmp_path)
    )
    stage = FrozenFirstStage(path, 64)
    stage.calibrate(to_model_input(torch.as_tensor(data.images_at(np.arange(5)))))
    encoded_rows = []
    stage.net.encoder.register_forward_pre_hook(lambda _, args: encoded_rows.append(len(args[0])))
    cache = LatentCache(stage, len(data), 1.0, torch.device("cpu"))
    batches = [[0, 1, 2, 2], [2, 1, 0, 0], [0, 3, 1, 2], [3, 3, 1, 0], [2, 0, 1, 3]]
    for index in map(np.array, batches):
        x = to_model_input(torch.as_tensor(data.images_at(index)))
        z = cache(index, x)
        calls = len(encoded_rows)
        assert torch.equal(z, stage.encode(x))  # bit for bit what the encoder gives this batch
        del encoded_rows[calls:]  # the reference encoding above is not the cache's
    # only the batches with a new item (0 and 2) ran the encoder, on their whole batch of 4
    assert encoded_rows == [4, 4] and (cache.encoded, cache.hits) == (2, 3)
    assert cache.filled_count == 4 and not cache.filled[4]


def test_cache_settings_are_checked_in_one_line(latent_config, tiny_config, tmp_path, capsys):
    with pytest.raises(ConfigError, match="cache_latents needs model.first_stage.path"):
        tiny_config(CACHE)
    with pytest.raises(ConfigError, match=r"model.first_stage.cache_gib must be > 0, got 0.0"):
        latent_config(CACHE, "model.first_stage.cache_gib=0")
    with pytest.raises(ValueError, match="cannot be combined with train.compile"):
        Trainer(latent_config(CACHE, "train.compile=true"), tmp_path / "compiled", progress=False)
    # synth-shapes3d's 480,000 latents of 3x16x16 need 1.37 GiB
    small = ["train.steps=1", CACHE, "model.first_stage.cache_gib=0.5"]
    with pytest.raises(ValueError, match=r"latents need 1.37 GiB, more than model.first_stage.cache_gib=0.5"):
        Trainer(latent_config(*small), tmp_path / "small", progress=False)
    assert not (tmp_path / "small").exists() and not (tmp_path / "compiled").exists()
    stage = latent_config().model.first_stage.path
    argv = ["train", "--out", str(tmp_path / "cli"), "--config", "tiny-cpu-latent", "--no-progress"]
    assert main([*argv, f"model.first_stage.path={stage}", *small]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "raise it or set cache_latents=false" in err
