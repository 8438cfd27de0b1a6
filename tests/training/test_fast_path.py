"""The speed switches: resolved as documented, harmless on CPU, and explicit where they cannot apply."""

import json
import logging

import numpy as np
import pytest
import torch
from diffusers.models.attention_processor import AttnProcessor2_0

from diffdrl.data import make_dataset
from diffdrl.diffusion.draws import StepDraws
from diffdrl.models import registry
from diffdrl.training import batches, hardware
from diffdrl.training.batches import HostImages, RenderedImages, ResidentImages, image_source
from diffdrl.training.checkpoint import load_checkpoint
from diffdrl.training.config import ConfigError
from diffdrl.training.ema import EMA
from diffdrl.training.hardware import resolve_precision
from diffdrl.training.trainer import Trainer, lr_at, train


def same_checkpoints(a, b) -> None:
    (ta, sa), (tb, sb) = load_checkpoint(a.checkpoint), load_checkpoint(b.checkpoint)
    for part in ("model", "ema", "optimizer"):
        assert ta[part].keys() == tb[part].keys()
        assert all(torch.equal(ta[part][k], tb[part][k]) for k in ta[part]), part
    assert sa["loss"] == sb["loss"]


def test_fast_path_changes_nothing_on_cpu(tiny_config, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="diffdrl.training.trainer")
    fast = train(tiny_config("train.steps=2", "train.fast_path=true"), tmp_path / "fast", progress=False)
    plain = train(
        tiny_config("train.steps=2", "train.fast_path=false", "train.mixed_precision='no'"),
        tmp_path / "plain",
        progress=False,
    )
    same_checkpoints(fast, plain)
    settings = load_checkpoint(fast.checkpoint)[1]["settings"]
    assert (
        settings["mixed_precision"] == "no" and settings["mixed_precision_reason"] == "auto: float32 on cpu"
    )
    assert not (
        settings["channels_last"] or settings["fused_adamw"] or settings["tf32"] or settings["compile"]
    )
    assert "training on cpu" in caplog.text and "float32 (auto: float32 on cpu)" in caplog.text


def test_auto_precision_on_cuda(tiny_config, monkeypatch):
    cuda, tc = torch.device("cuda"), tiny_config().train
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Old GPU")
    monkeypatch.setattr(hardware, "_bf16_supported", lambda: True)
    assert resolve_precision(tc, cuda) == ("bf16", "auto: bf16 on CUDA")
    assert resolve_precision(tiny_config("train.fast_path=false").train, cuda)[0] == "no"
    assert resolve_precision(tiny_config("train.mixed_precision='no'").train, cuda)[0] == "no"
    monkeypatch.setattr(hardware, "_bf16_supported", lambda: False)
    assert resolve_precision(tc, cuda) == ("no", "auto: Old GPU has no native bf16")
    with pytest.raises(ValueError, match="'bf16' but Old GPU has no native bf16"):
        resolve_precision(tiny_config("train.mixed_precision=bf16").train, cuda)
    assert resolve_precision(tiny_config("train.mixed_precision=fp16").train, cuda)[0] == "fp16"


def test_fp16_off_cuda_is_an_error(tiny_config, tmp_path):
    with pytest.raises(ValueError, match="mixed_precision='fp16' needs a CUDA device"):
        Trainer(tiny_config("train.mixed_precision=fp16"), tmp_path / "run", progress=False)


def test_bf16_requested_on_cpu_runs_bf16_autocast(tiny_config, tmp_path):
    """An explicit request is honoured (torch's CPU autocast), in the same process as float32 runs."""
    trainer_ = Trainer(
        tiny_config("train.steps=2", "train.mixed_precision=bf16"), tmp_path / "run", progress=False
    )
    seen = []
    conv = trainer_.unwrapped.denoiser.unet.conv_in
    conv.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    result = trainer_.train()
    assert np.isfinite(result.loss) and seen and set(seen) == {torch.bfloat16}
    assert trainer_.settings["mixed_precision"] == "bf16"
    assert all(
        v.dtype == torch.float32 for v in trainer_.unwrapped.state_dict().values() if v.is_floating_point()
    )


def test_channels_last_on_cpu_trains(tiny_config, tmp_path):
    result = train(tiny_config("train.steps=1", "train.channels_last=true"), tmp_path / "run", progress=False)
    assert np.isfinite(result.loss)


def test_denoiser_attention_runs_through_pytorch_sdpa(tiny_config, monkeypatch):
    config = tiny_config()
    model = registry.build(config.model, config.data.resolution, seed=config.train.seed)
    processors = model.denoiser.unet.attn_processors
    assert processors and all(isinstance(p, AttnProcessor2_0) for p in processors.values())
    calls = []
    sdpa = torch.nn.functional.scaled_dot_product_attention
    monkeypatch.setattr(
        torch.nn.functional, "scaled_dot_product_attention", lambda *a, **k: calls.append(1) or sdpa(*a, **k)
    )
    model(torch.zeros(2, 3, 16, 16), draws=StepDraws.seeded(0, 2))
    assert len(calls) == len(processors)  # every self- and cross-attention, once


def test_lr_scaling(tiny_config, tmp_path):
    config = tiny_config("train.batch_size=8", "train.lr=1e-3")
    assert config.train.effective_lr == 1e-3
    linear = tiny_config(
        "train.batch_size=8", "train.lr=1e-3", "train.lr_scaling=linear", "train.reference_batch_size=2"
    )
    assert linear.train.effective_lr == pytest.approx(4e-3)
    sqrt = tiny_config(
        "train.batch_size=8", "train.lr=1e-3", "train.lr_scaling=sqrt", "train.reference_batch_size=2"
    )
    assert sqrt.train.effective_lr == pytest.approx(2e-3)
    assert lr_at(0, sqrt) == pytest.approx(1e-3) and lr_at(5, sqrt) == pytest.approx(2e-3)  # warm-up 2
    with pytest.raises(ConfigError, match="train.lr_scaling='linear' needs train.reference_batch_size"):
        tiny_config("train.lr_scaling=linear")
    with pytest.raises(ConfigError, match="train.lr_scaling must be one of"):
        tiny_config("train.lr_scaling=cubic")
    run = Trainer(
        tiny_config("train.steps=3", "train.lr_scaling=sqrt", "train.reference_batch_size=1"),
        tmp_path / "run",
        progress=False,
    )
    run.train()
    rows = [json.loads(r) for r in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert rows[-1]["lr"] == pytest.approx(2 * run.config.train.lr)  # batch 4 / reference 1
    assert run.optimizer.param_groups[0]["lr"] == pytest.approx(2 * run.config.train.lr)
    assert run.settings["lr"] == pytest.approx(2 * run.config.train.lr)


def test_ema_foreach_equals_the_per_tensor_update(tiny_config):
    config = tiny_config()
    model = registry.build(config.model, config.data.resolution, seed=config.train.seed)
    ema = EMA(model, 0.99)
    reference = {k: v.clone() for k, v in ema.state_dict().items()}
    for step in range(3):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
            model.encoder.features[1].num_batches_tracked += 1
        ema.update(model, step)
        d = min(0.99, (1 + step) / (10 + step))
        for k, v in model.state_dict().items():
            if v.is_floating_point():
                reference[k].lerp_(v, 1 - d)
            else:
                reference[k].copy_(v)
    assert all(torch.equal(ema.state_dict()[k], reference[k]) for k in reference)


def write_arrays(path):
    """A 2 x 3 grid of random 16 x 16 images (labelled-arrays format)."""
    rng = np.random.default_rng(0)
    np.savez(
        path,
        images=rng.integers(0, 256, (6, 16, 16, 3), dtype=np.uint8),
        factors=np.stack(np.unravel_index(np.arange(6), (2, 3)), -1),
        factor_names=np.array(["a", "b"]),
        factor_sizes=np.array([2, 3]),
    )
    return path


def test_image_sources_give_the_same_images(tmp_path):
    cpu, index = torch.device("cpu"), np.array([5, 0, 3, 3])
    shapes = make_dataset("synth-shapes3d", None, 16)
    arrays = make_dataset("labelled-arrays", str(write_arrays(tmp_path / "a.npz")), 16)
    for data, on_device in ((shapes, RenderedImages), (arrays, ResidentImages)):
        host = image_source(data, cpu, "auto")
        assert isinstance(host, HostImages) and isinstance(image_source(data, cpu, "never"), HostImages)
        device = image_source(data, cpu, "always")
        assert isinstance(device, on_device)
        assert torch.equal(device(index), host(index)) and device(index).dtype == torch.uint8


def test_auto_data_placement_on_cuda(tmp_path, monkeypatch):
    cuda = torch.device("cuda")
    assert isinstance(image_source(make_dataset("synth-shapes3d", None, 16), cuda, "auto"), RenderedImages)
    arrays = make_dataset("labelled-arrays", str(write_arrays(tmp_path / "a.npz")), 16)
    fits = batches.fits_on_device
    monkeypatch.setattr(batches, "fits_on_device", lambda nbytes, device: False)
    source = image_source(arrays, cuda, "auto")
    assert isinstance(source, HostImages) and source.pin and "does not fit" in source.where
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (60 * 2**30, 80 * 2**30))
    assert fits(20 * 2**30, cuda) and not fits(21 * 2**30, cuda)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (30 * 2**30, 80 * 2**30))
    assert not fits(16 * 2**30, cuda)


@pytest.mark.parametrize("dataset", ["synth-shapes3d", "labelled-arrays"])
def test_data_on_device_trains_the_same_run(tiny_config, tmp_path, dataset):
    data = [f"data.name={dataset}"]
    if dataset == "labelled-arrays":
        data.append(f"data.path={write_arrays(tmp_path / 'a.npz')}")
    runs = [
        train(
            tiny_config("train.steps=2", *data, f"train.data_on_device={mode}"),
            tmp_path / mode,
            progress=False,
        )
        for mode in ("never", "always")
    ]
    same_checkpoints(*runs)


@pytest.mark.gpu
def test_fast_path_on_cuda_takes_every_switch(tiny_config, tmp_path):
    trainer_ = Trainer(tiny_config("train.steps=2", "train.device=cuda"), tmp_path / "run", progress=False)
    result = trainer_.train()
    s = trainer_.settings
    assert (s["mixed_precision"], s["mixed_precision_reason"]) == ("bf16", "auto: bf16 on CUDA")
    assert s["channels_last"] and s["fused_adamw"] and s["tf32"] and not s["compile"]
    assert s["data"].startswith("rendered on cuda") and np.isfinite(result.loss)
    weights = load_checkpoint(result.checkpoint)[0]["model"]
    assert all(v.dtype == torch.float32 for v in weights.values() if v.is_floating_point())


@pytest.mark.gpu
def test_fp16_on_cuda_trains_with_a_saved_loss_scale(tiny_config, tmp_path):
    result = train(
        tiny_config("train.steps=2", "train.device=cuda", "train.mixed_precision=fp16"),
        tmp_path / "run",
        progress=False,
    )
    state = load_checkpoint(result.checkpoint)[1]
    assert np.isfinite(result.loss) and state["settings"]["mixed_precision"] == "fp16"
    assert state["grad_scaler"]["scale"] > 0
