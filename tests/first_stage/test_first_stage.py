import json

import pytest
import torch
from diffusers import AutoencoderKL, VQModel

from diffdrl.diffusion.draws import StepDraws
from diffdrl.models import registry
from diffdrl.models.first_stage import VQAutoencoder
from diffdrl.models.vq import QuantizerConfig, VectorQuantizer
from diffdrl.training.runs import load_model


def test_paper_shapes_map_64x64x3_to_3x16x16():
    from diffdrl.training.config import load_config

    config = load_config("first-stage-vq")
    model = registry.build(config.model, 64).eval()
    assert model.net.config.block_out_channels == (32, 64, 128)
    assert model.net.config.layers_per_block == 2
    assert model.quantizer.weight.shape == (2048, 3)
    with torch.no_grad():
        z = model.encode_latents(torch.zeros(1, 3, 64, 64))
        assert z.shape == (1, 3, 16, 16)
        assert model.decode_latents(z).shape == (1, 3, 64, 64)


@pytest.mark.parametrize("name", ["vq", "kl"])
def test_encode_decode_round_trip_shapes(stage_config, name):
    config = stage_config(resolution=32, kind=name)
    model = registry.build(config.model, 32, seed=0).eval()
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    z = model.encode_latents(x)
    assert z.shape == (2, 3, 8, 8) == (2, *model.latent_shape)
    assert model.decode_latents(z).shape == x.shape


def test_straight_through_gradients_reach_the_encoder(stage_config):
    for update in ("ema", "straight_through"):
        model = registry.build(stage_config(f"model.quantizer.update={update}").model, 16, seed=0)
        loss, _ = model(torch.rand(4, 3, 16, 16) * 2 - 1, StepDraws.seeded(0, 4))
        loss.backward()
        grads = [p.grad for p in model.net.encoder.parameters()]
        assert all(g is not None for g in grads)
        assert sum(float(g.abs().sum()) for g in grads) > 0
        codebook = model.quantizer.weight
        assert (codebook.grad is not None and codebook.grad.abs().sum() > 0) == (update == "straight_through")


def test_quantizer_snaps_to_the_nearest_code_with_straight_through_values():
    codebook = torch.nn.Embedding(3, 2)
    codebook.weight.data = torch.tensor([[0.0, 0.0], [1.0, 1.0], [-1.0, 2.0]])
    vq = VectorQuantizer(QuantizerConfig(restart_below=0.0), codebook).eval()
    z = torch.tensor([[0.9, 1.2], [-0.8, 1.7], [0.1, -0.1]]).T.reshape(1, 2, 3, 1)
    z_q, loss = vq(z.requires_grad_())
    assert torch.equal(z_q.detach().reshape(2, 3).T, codebook.weight.data[[1, 2, 0]])
    z_q.sum().backward()
    assert torch.equal(z.grad, torch.ones_like(z))  # the identity gradient of the straight-through estimator
    assert loss > 0


def test_dead_code_restarts_keep_the_codebook_in_use():
    torch.manual_seed(0)
    size = 64
    data = torch.randn(4, 2, 16, 16)  # 1024 vectors spread over the plane
    used = {}
    for restart_below in (0.0, 0.5):
        codebook = torch.nn.Embedding(size, 2)
        codebook.weight.data = torch.full((size, 2), 10.0) + 0.01 * torch.randn(size, 2)  # all far away
        vq = VectorQuantizer(QuantizerConfig(ema_decay=0.5, restart_below=restart_below), codebook).train()
        gen = torch.Generator().manual_seed(0)
        for _ in range(20):
            vq(data, gen)
        used[restart_below] = float(vq.last_stats["codebook_usage"])
    assert used[0.0] <= 2 / size  # collapse: the data all lands on one or two codes
    assert used[0.5] > 0.6  # restarted onto data vectors, most codes are in use


def test_restarts_are_reproducible_from_the_generator():
    def run(seed):
        codebook = torch.nn.Embedding(8, 2)
        codebook.weight.data.fill_(5.0)
        vq = VectorQuantizer(QuantizerConfig(), codebook).train()
        vq(
            torch.randn(2, 2, 4, 4, generator=torch.Generator().manual_seed(1)),
            torch.Generator().manual_seed(seed),
        )
        return codebook.weight.detach().clone()

    assert torch.equal(run(0), run(0))
    assert not torch.equal(run(0), run(1))


def test_training_logs_psnr_ssim_and_codebook_statistics(stage_config, tmp_path):
    from diffdrl.training.trainer import train

    train(stage_config("train.steps=2"), tmp_path / "run", progress=False)
    row = json.loads((tmp_path / "run" / "train_log.jsonl").read_text().splitlines()[-1])
    for key in ("psnr", "ssim", "codebook_usage", "codebook_perplexity", "codebook_restarts", "l1", "l2"):
        assert key in row
    assert 1.0 <= row["codebook_perplexity"] <= 16.0
    evaluation = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert "eval/psnr" in evaluation


def test_first_stage_resumes_exactly(stage_config, tmp_path):
    from diffdrl.training.trainer import train

    train(stage_config("train.steps=4"), tmp_path / "a", progress=False)
    train(stage_config("train.steps=2"), tmp_path / "b", progress=False)
    train(stage_config("train.steps=4"), tmp_path / "b", resume=True, progress=False)
    a, b = (load_model(tmp_path / r, weights="model").state_dict() for r in ("a", "b"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_discriminator_joins_after_its_start_step(stage_config):
    model = registry.build(
        stage_config(
            "model.discriminator.enabled=true",
            "model.discriminator.start=1",
            "model.discriminator.width=8",
            "model.discriminator.layers=1",
        ).model,
        16,
        seed=0,
    ).train()
    x = torch.rand(4, 3, 16, 16) * 2 - 1
    loss, terms = model(x)
    loss.backward()
    assert "adversarial" not in terms
    assert all(p.grad is None for p in model.discriminator.parameters())
    loss, terms = model(x)
    loss.backward()
    assert {"adversarial", "discriminator", "adaptive_weight"} <= set(terms)
    assert all(p.grad is not None for p in model.discriminator.parameters())


def test_lpips_needs_a_network_file(stage_config, tmp_path):
    with pytest.raises(FileNotFoundError, match="LPIPS weights not found"):
        registry.build(stage_config(f"model.lpips.path={tmp_path / 'none.pt'}").model, 16)


def test_lpips_term_from_a_user_network(stage_config, tmp_path):
    class Distance(torch.nn.Module):  # any TorchScript (x, y) -> (B,) network stands in for LPIPS
        def forward(self, x, y):
            return (x - y).abs().mean(dim=(1, 2, 3))

    path = tmp_path / "lpips.pt"
    torch.jit.script(Distance()).save(str(path))
    model = registry.build(stage_config(f"model.lpips.path={path}").model, 16, seed=0)
    _, terms = model(torch.rand(2, 3, 16, 16) * 2 - 1)
    assert terms["lpips"] > 0
    assert not any(k.startswith("lpips") for k in model.state_dict())


def test_units_are_refused_in_one_line(stage_config):
    model = registry.build(stage_config().model, 16)
    with pytest.raises(ValueError, match="has no latent units"):
        model.encode(torch.zeros(1, 3, 16, 16))


@pytest.mark.parametrize("kind", ["vq", "kl"])
def test_diffusers_save_pretrained_round_trip(stage_config, tmp_path, kind):
    from diffdrl.training.first_stage_export import export_first_stage
    from diffdrl.training.trainer import train

    run = tmp_path / kind
    train(stage_config("train.steps=2", kind=kind), run, progress=False)
    export = export_first_stage(run)
    ours = load_model(run)
    cls = VQModel if kind == "vq" else AutoencoderKL
    theirs = cls.from_pretrained(str(export), local_files_only=True).eval()
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        z = ours.encode_latents(x)
        latents = theirs.encode(x).latents if kind == "vq" else theirs.encode(x).latent_dist.mean
        torch.testing.assert_close(latents, z)
        torch.testing.assert_close(theirs.decode(z).sample, ours.decode_latents(z), atol=1e-5, rtol=1e-5)
    info = json.loads((export / "first_stage.json").read_text())
    assert info["latent_shape"] == [3, 4, 4] and info["step"] == 2 and info["kind"] == kind


def test_train_autoencoder_refuses_other_models(tmp_path):
    from diffdrl.training.config import load_config
    from diffdrl.training.first_stage_export import train_autoencoder

    with pytest.raises(ValueError, match="trains first stages"):
        train_autoencoder(load_config("tiny-cpu"), tmp_path / "run", progress=False)


def test_vq_model_class_is_registered():
    assert registry.MODELS["vq"][1] is VQAutoencoder
