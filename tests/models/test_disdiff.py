"""DisDiff (models/disdiff.py) and its parts: the PDAE coefficient, the disentangling loss, the
frozen pre-trained denoiser and the checks on the run that provides it."""

import io
import math

import numpy as np
import pytest
import torch
from PIL import Image

from diffdrl.cli import main
from diffdrl.data import make_dataset
from diffdrl.data.ground_truth import to_model_input
from diffdrl.diffusion.draws import StepDraws
from diffdrl.diffusion.schedule import alpha_bar_of, pdae_coefficient
from diffdrl.models import registry
from diffdrl.models.disentangling import disentangling_loss, disentangling_terms
from diffdrl.models.representation import representation, scored_representation, unit_width
from diffdrl.training.checkpoint import load_checkpoint
from diffdrl.training.config import load_config
from diffdrl.training.trainer import train
from helpers.resume import assert_resumes_bit_exactly
from helpers.tiny import TINY_DDPM, TINY_DISDIFF


def _images(n=4, resolution=16):
    return make_dataset("synth-shapes3d", None, resolution).sample(n, np.random.default_rng(0))[1]


# -- the PDAE coefficient ------------------------------------------------------------------------


def test_pdae_coefficient_by_hand():
    betas = np.array([0.1, 0.2, 0.3])  # alpha_bar = 0.9, 0.72, 0.504
    expected = [
        0.0,  # alpha_bar_{-1} = 1: no shift at t = 0
        -math.sqrt(0.8) * (1 - 0.9) / math.sqrt(1 - 0.72),
        -math.sqrt(0.7) * (1 - 0.72) / math.sqrt(1 - 0.504),
    ]
    np.testing.assert_allclose(pdae_coefficient(betas), expected, rtol=1e-12)


def test_pdae_coefficient_shifts_the_posterior_mean_by_its_variance_times_g():
    """What makes it PDAE's: with eps = eps_0 + k_t g, the DDPM posterior mean
    mu = (x_t - beta_t / sqrt(1 - abar_t) eps) / sqrt(alpha_t) moves by exactly beta~_t g."""
    betas = np.linspace(1e-4, 0.02, 50)
    abar = alpha_bar_of(betas)
    abar_prev = np.concatenate([[1.0], abar[:-1]])
    k = pdae_coefficient(betas)
    rng = np.random.default_rng(0)
    x_t, eps0, g = rng.normal(size=(3, 50))

    def mean(eps):
        return (x_t - betas / np.sqrt(1 - abar) * eps) / np.sqrt(1 - betas)

    variance = (1 - abar_prev) / (1 - abar) * betas
    np.testing.assert_allclose(mean(eps0 + k * g) - mean(eps0), variance * g, atol=1e-12)


# -- the disentangling loss ----------------------------------------------------------------------


def test_disentangling_cross_entropies_by_hand():
    # one image, N = 3 chunks of d = 1: z = 0; the unshifted prediction re-encodes to 1 everywhere;
    # chunk 1's field brings chunk 1 back to 0 and leaves the others
    z = torch.zeros(1, 3, 1)
    z_hat = torch.ones(1, 3, 1)
    z_hat_c = torch.tensor([[[1.0], [0.0], [1.0]]])
    target = torch.tensor([1])
    toward, moved = disentangling_terms(z, z_hat, z_hat_c, target)
    # both logits are (0, 1, 0): CE = -log(e / (2 + e))
    expected = math.log(2 + math.e) - 1
    assert toward.item() == pytest.approx(expected) and moved.item() == pytest.approx(expected)
    # the same field scored against chunk 0 is wrong: a larger loss
    wrong_toward, wrong_moved = disentangling_terms(z, z_hat, z_hat_c, torch.tensor([0]))
    assert wrong_toward.item() == pytest.approx(math.log(2 + math.e)) and wrong_moved > moved


def test_disentangling_loss_weighs_each_image_and_trains_only_the_shifted_code():
    z = torch.zeros(2, 3, 1, requires_grad=True)
    z_hat = torch.ones(2, 3, 1, requires_grad=True)
    z_hat_c = torch.tensor([[[1.0], [0.0], [1.0]], [[0.0], [1.0], [1.0]]], requires_grad=True)
    chunk = torch.tensor([1, 0])
    weight = torch.tensor([2.0, 0.0])  # the second image's field moved nothing: it does not count
    loss = disentangling_loss(z, z_hat, z_hat_c, chunk, weight)
    each = math.log(2 + math.e) - 1
    assert loss.item() == pytest.approx(2.0 * 2 * each / 2)
    loss.backward()
    assert z.grad is None and z_hat.grad is None  # the encoder's code and z_hat: no gradient
    assert z_hat_c.grad[0].abs().sum() > 0 and z_hat_c.grad[1].abs().sum() == 0


# -- the model ------------------------------------------------------------------------------------


def test_fields_start_at_zero_so_disdiff_starts_as_the_pretrained_denoiser(disdiff_config):
    config = disdiff_config()
    model = registry.build(config.model, 16, seed=0).eval()
    x_t, t = torch.randn(2, 3, 16, 16), torch.tensor([5, 40])
    chunks = model.tokens(model.encode(_images(2)))
    expected = model.pretrained.unet(x_t, t).sample
    torch.testing.assert_close(model.denoise(x_t, t, chunks, model.k_t), expected, atol=1e-6, rtol=0)


def test_chunks_fold_into_the_batch_like_one_call_per_chunk(disdiff_config):
    """The vectorised decoder (N B rows) gives each chunk's field as a call on that chunk alone."""
    model = registry.build(disdiff_config().model, 16, seed=0).eval()
    torch.nn.init.normal_(model.decoder.conv_out.weight, std=0.1)
    from diffdrl.models.gradient_field import frozen_pass

    x_t, t = torch.randn(2, 3, 16, 16), torch.tensor([5, 40])
    chunks = torch.randn(2, 3, 2)
    frozen = frozen_pass(model.pretrained.unet, x_t, t)
    with torch.no_grad():
        summed = model.denoise(x_t, t, chunks, model.k_t) - frozen.eps
        each = [
            model.decoder(frozen.rows(torch.arange(2)), chunks[:, c], torch.full((2,), c)) for c in range(3)
        ]
    torch.testing.assert_close(summed, model.k_t[t].view(-1, 1, 1, 1) * sum(each), atol=1e-5, rtol=1e-5)


def test_frozen_encoder_copy_is_the_current_encoder_in_eval_mode_without_gradients(disdiff_config):
    model = registry.build(disdiff_config().model, 16, seed=0).train()
    x = to_model_input(_images(4)).requires_grad_()
    stats = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    z = model.frozen_encode(x)
    assert model.encoder.training  # left in the mode it was in
    for k, v in model.encoder.state_dict().items():
        assert torch.equal(v, stats[k]), k  # BatchNorm's running statistics untouched
    model.encoder.eval()
    torch.testing.assert_close(z, model.tokens(model.encoder(x)))
    z.sum().backward()
    assert x.grad is not None and all(p.grad is None for p in model.encoder.parameters())


def test_the_encoder_learns_from_the_diffusion_loss_only(disdiff_config):
    """With lambda 0 or 1000 the encoder's gradients are the same: the disentangling term moves
    the decoder only."""
    model = registry.build(disdiff_config().model, 16, seed=0).train()
    torch.nn.init.normal_(model.decoder.conv_out.weight, std=0.1)  # fields that move something
    x = to_model_input(_images(4))
    _, terms = model(x, draws=StepDraws.seeded(3, 4))
    assert terms["disentangling"] > 0
    heavy = registry.build(disdiff_config("model.disentangling_weight=1000").model, 16, seed=0).train()
    heavy.load_state_dict(model.state_dict())
    plain = registry.build(disdiff_config("model.disentangling_weight=0").model, 16, seed=0).train()
    plain.load_state_dict(model.state_dict())
    for m in (heavy, plain):
        loss, _ = m(x, draws=StepDraws.seeded(3, 4))
        loss.backward()
    for (name, a), b in zip(heavy.encoder.named_parameters(), plain.encoder.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, msg=name)
    assert any(
        not torch.allclose(a.grad, b.grad)
        for a, b in zip(heavy.decoder.parameters(), plain.decoder.parameters(), strict=True)
        if a.grad is not None
    )


def test_scored_by_each_chunks_pca1_and_the_raw_chunks_are_the_units(disdiff_config):
    model = registry.build(disdiff_config().model, 16, seed=0).eval()
    assert scored_representation(model) == "tokens" and unit_width(model) == 3 * 2
    data = make_dataset("synth-shapes3d", None, 16)
    images = _images(8)
    assert representation(model, data=data, fit_samples=64)(images).shape == (8, 3)  # PCA-1 per chunk
    assert representation(model, "units")(images).shape == (8, 6)


def test_generate_and_invert_under_edited_chunks(disdiff_config):
    model = registry.build(disdiff_config().model, 16, seed=0).eval()
    chunks = model.tokens(model.encode(_images(2)))
    images = model.generate(chunks, steps=3, seed=1)
    assert images.shape == (2, 3, 16, 16) and images.abs().max() <= 1
    torch.testing.assert_close(model.generate(chunks, steps=3, seed=1), images)
    x_T = model.invert(to_model_input(_images(2)), chunks, steps=3)
    assert x_T.shape == (2, 3, 16, 16) and torch.isfinite(x_T).all()


# -- training: the frozen denoiser, resume -------------------------------------------------------


def test_the_pretrained_denoiser_stays_bit_identical_through_training(
    disdiff_config, tiny_pretrained, tmp_path
):
    result = train(disdiff_config("train.steps=3"), tmp_path / "run", progress=False)
    pre, _ = load_checkpoint(sorted((tiny_pretrained / "checkpoints").iterdir())[-1])
    tensors, _ = load_checkpoint(result.checkpoint)
    frozen = {k: v for k, v in pre["ema"].items() if k.startswith("unet.")}
    assert frozen
    for part in ("model", "ema"):  # the run keeps its own copy, in both weights, unchanged
        for k, v in frozen.items():
            assert torch.equal(tensors[part][f"pretrained.{k}"], v), (part, k)
    # the optimiser holds state for the trained parameters only (the encoder and the decoder)
    model = registry.build(disdiff_config().model, 16)
    trained = sum(p.requires_grad for p in model.parameters())
    assert trained < len(list(model.parameters()))
    assert len({k.split(".")[0] for k in tensors["optimizer"]}) == trained


def test_disdiff_resume_is_bit_exact(disdiff_config, tmp_path):
    assert_resumes_bit_exactly(lambda steps: disdiff_config(f"train.steps={steps}"), tmp_path)


def test_ddpm_resume_is_bit_exact(tmp_path):
    assert_resumes_bit_exactly(
        lambda steps: load_config("tiny-cpu-ddpm", [*TINY_DDPM, f"train.steps={steps}"]), tmp_path
    )


# -- the pre-trained run: one-line errors ---------------------------------------------------------


def _disdiff(*overrides):
    return load_config("tiny-cpu-disdiff", [*TINY_DISDIFF, *overrides]).model


def test_disdiff_without_a_pretrained_path_says_how_to_make_one():
    with pytest.raises(ValueError, match="needs model.pretrained.path.*tiny-cpu-ddpm"):
        registry.build(_disdiff(), 16)


def test_pretrained_run_of_another_resolution_is_refused(tiny_pretrained):
    config = _disdiff(f"model.pretrained.path={tiny_pretrained}", "data.resolution=32")
    with pytest.raises(ValueError, match="trained on 16x16 images, but this run has 32x32"):
        registry.build(config, 32)


def test_a_run_that_is_not_an_unconditional_denoiser_is_refused(trained_tiny, tmp_path):
    with pytest.raises(ValueError, match="run of model 'encdiff', not an unconditional denoiser"):
        registry.build(_disdiff(f"model.pretrained.path={trained_tiny.path}"), 16)
    with pytest.raises(FileNotFoundError, match="no run there"):
        registry.build(_disdiff(f"model.pretrained.path={tmp_path}"), 16)


@pytest.mark.parametrize(
    "extra, message",
    [
        ((), "needs model.pretrained.path"),
        (("data.resolution=32",), "trained on 16x16 images"),
    ],
)
def test_cli_errors_are_one_line_exit_2(tiny_pretrained, tmp_path, capsys, extra, message):
    path = () if not extra else (f"model.pretrained.path={tiny_pretrained}",)
    args = ["train", "--config", "tiny-cpu-disdiff", "--out", str(tmp_path / "run"), "--no-progress"]
    overrides = [o for o in TINY_DISDIFF if not (extra and o.startswith("data.resolution"))]
    assert main([*args, *overrides, *path, *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err


def test_ddpm_has_no_units_to_evaluate(tiny_pretrained, capsys):
    assert main(["evaluate", str(tiny_pretrained), "--preset", "fast", "--metrics", "mig"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unconditional denoiser with no units" in err


# -- the sweep: every seed shares one pre-trained run ---------------------------------------------


def test_a_disdiff_sweep_without_its_pretrained_run_fails_before_training(tmp_path, capsys):
    out = tmp_path / "sweep"
    assert main(["sweep", "--methods", "disdiff", "--seeds", "0", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--set disdiff:model.pretrained.path=RUN" in err
    assert not out.exists()


def test_a_disdiff_sweep_trains_and_scores_on_the_shared_run(tiny_pretrained, tmp_path):
    import json

    out = tmp_path / "sweep"
    own = [f"disdiff:{o}" for o in [*TINY_DISDIFF, f"model.pretrained.path={tiny_pretrained}"]]
    argv = ["sweep", "--methods", "disdiff", "--seeds", "0", "--out", str(out), "--metrics", "mig"]
    assert main([*argv, "--metrics-preset", "fast", "--set", *own, "disdiff:train.steps=2"]) == 0
    cell = json.loads((out / "synth-shapes3d" / "disdiff" / "seed0" / "cell.json").read_text())
    assert cell["status"] == "done" and 0 <= cell["scores"]["mig_fast"] <= 1


def test_attention_maps_are_a_stated_skip_and_the_schedule_is_the_pretrained_runs(disdiff_config):
    from diffdrl.viz.attention import attention_unavailable

    model = registry.build(disdiff_config().model, 16, seed=0)
    assert "not available for model 'disdiff'" in attention_unavailable(model)
    assert model.schedule.config.timesteps == 50  # tiny_pretrained's, not a default of DisDiff's own


def test_the_explorer_renders_swaps_and_skips_attention_for_disdiff(disdiff_config, tmp_path):
    from diffdrl.explore.session import Explorer
    from diffdrl.training.runs import load_run
    from diffdrl.viz.interchange import interchange

    train(disdiff_config("train.steps=2"), tmp_path / "run", progress=False)
    ex = Explorer(load_run(tmp_path / "run"), cache_dir=tmp_path / "cache", reference=100, factor_samples=150)
    try:
        assert ex.num_units == 3 and ex.width == 6  # a slider per chunk, along its first principal axis
        a, b = ex.random_image(1), ex.random_image(2)
        grid = interchange(ex.model, a.pixels[None], b.pixels[None], steps=3, seed=4, start="inversion")
        for chunk in range(ex.num_units):  # the explorer edits from the image's inversion by default
            png = ex.swap(a.id, b.id, chunk, seed=4, sampler="ddim", steps=3)
            got = np.array(Image.open(io.BytesIO(png)).convert("RGB"))
            assert np.abs(got.astype(int) - grid.swapped[chunk, 0]).max() <= 1
        assert "not available for model 'disdiff'" in ex.info()["attention_reason"]
        with pytest.raises(ValueError, match="cross-attention"):
            ex.attention(a.id)
    finally:
        ex.close()
