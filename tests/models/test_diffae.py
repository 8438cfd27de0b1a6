"""Diff-AE and InfoDiffusion: the two-condition AdaGN, the MMD prior term, configs, resume, pictures."""

import copy
import math

import pytest
import torch
from diffusers.models.resnet import ResnetBlock2D

from diffdrl.cli import main
from diffdrl.data.ground_truth import to_model_input
from diffdrl.diffusion.draws import StepDraws
from diffdrl.models import registry
from diffdrl.models.code_modulation import CodeModulation, install_code_modulation
from diffdrl.models.vae_losses import mmd
from diffdrl.training.config import load_config
from diffdrl.training.trainer import train
from diffdrl.viz.attention import attention_unavailable
from helpers.resume import assert_resumes_bit_exactly
from helpers.tiny import TINY_CODE

PRESETS = {"diffae": "tiny-cpu-diffae", "infodiffusion": "tiny-cpu-infodiffusion"}


def tiny(name, *overrides):
    return load_config(PRESETS[name], [*TINY_CODE, *overrides])


# -- the MMD of InfoVAE's kernel k(x, y) = exp(-|x - y|^2 / d^2) --------------------------------


def test_mmd_matches_the_closed_form_on_small_inputs():
    # one point each, d = 2: k(a, b) = exp(-2 / 4), k(a, a) = k(b, b) = 1
    value = mmd(torch.tensor([[0.0, 0.0]]), torch.tensor([[1.0, 1.0]]))
    torch.testing.assert_close(value, torch.tensor(2.0 - 2.0 * math.exp(-0.5)))
    # two points each, d = 1: a = {0, 1}, b = {0, 2} gives (1 - e^-1) / 2 (the e^-4 terms cancel)
    value = mmd(torch.tensor([[0.0], [1.0]]), torch.tensor([[0.0], [2.0]]))
    torch.testing.assert_close(value, torch.tensor((1.0 - math.exp(-1.0)) / 2.0))
    a = torch.randn(5, 3)
    assert mmd(a, a).abs() < 1e-6  # identical samples: no discrepancy


# -- two-condition AdaGN -----------------------------------------------------------------------


@pytest.mark.parametrize("shift", [False, True])
def test_code_modulation_is_the_time_scale_shift_then_the_code_modulation(shift):
    torch.manual_seed(0)
    time_proj = torch.nn.Linear(6, 2 * 8)
    layer = CodeModulation(time_proj, code_dim=3, shift=shift)
    temb, z, gn = torch.randn(4, 6), torch.randn(4, 3), torch.randn(4, 8)  # gn: a normalised h
    scale, offset = layer(torch.nn.functional.silu(torch.cat([temb, z], 1))).chunk(2, 1)
    t_s, t_b = time_proj(torch.nn.functional.silu(temb)).chunk(2, 1)
    code = layer.code_proj(torch.nn.functional.silu(z))
    z_s, z_b = code.chunk(2, 1) if shift else (code, 0.0)
    expected = (gn * (1 + t_s) + t_b) * (1 + z_s) + z_b  # Diff-AE / InfoDiffusion, step by step
    torch.testing.assert_close(gn * (1 + scale) + offset, expected)


def test_a_zero_code_projection_leaves_the_res_block_as_it_was():
    torch.manual_seed(0)
    block = ResnetBlock2D(
        in_channels=8, out_channels=8, temb_channels=6, groups=4, time_embedding_norm="scale_shift"
    )
    plain = copy.deepcopy(block)
    holder = torch.nn.Module()
    holder.block, holder.time_embedding = block, torch.nn.Identity()
    install_code_modulation(holder, code_dim=3, shift=True)
    torch.nn.init.zeros_(block.time_emb_proj.code_proj.weight)
    torch.nn.init.zeros_(block.time_emb_proj.code_proj.bias)
    h, temb, z = torch.randn(2, 8, 4, 4), torch.randn(2, 6), torch.randn(2, 3)
    torch.testing.assert_close(block(h, torch.cat([temb, z], 1)), plain(h, temb))


# -- the models --------------------------------------------------------------------------------


@pytest.mark.parametrize("prior, term", [("mmd", "mmd"), ("kl", "kl")])
def test_infodiffusion_adds_its_weighted_prior_term(prior, term):
    images = to_model_input(torch.randint(0, 256, (4, 16, 16, 3), dtype=torch.uint8).numpy())
    key = f"model.{term}_weight"
    weighted = registry.build(tiny("infodiffusion", f"model.prior={prior}", f"{key}=0.5").model, 16, seed=0)
    plain = registry.build(tiny("infodiffusion", f"model.prior={prior}", f"{key}=0").model, 16, seed=0)
    loss, terms = weighted(images, StepDraws.seeded(3, 4))
    base, _ = plain(images, StepDraws.seeded(3, 4))
    assert terms[term] > 0
    torch.testing.assert_close(loss - base, 0.5 * terms[term])


def test_the_kl_variant_scores_the_posterior_mean():
    model = registry.build(tiny("infodiffusion", "model.prior=kl").model, 16, seed=0).eval()
    images = torch.randint(0, 256, (3, 16, 16, 3), dtype=torch.uint8).numpy()
    mu, _ = model.posterior(to_model_input(images))
    torch.testing.assert_close(model.encode(images), mu)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_diffusion_baselines_resume_bit_exactly(name, tmp_path):
    assert_resumes_bit_exactly(lambda steps: tiny(name, f"train.steps={steps}"), tmp_path)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_attention_maps_are_a_stated_skip(name):
    model = registry.build(tiny(name).model, 16, seed=0)
    reason = attention_unavailable(model)
    assert reason and "cross-attention" in reason


@pytest.mark.parametrize(
    "preset, override, message",
    [
        (
            "tiny-cpu-diffae",
            "model.denoiser.conditioning=cross_attention",
            "must be 'adagn_scale' for model 'diffae'",
        ),
        ("tiny-cpu-infodiffusion", "model.prior=vamp", "model.prior must be one of ('mmd', 'kl')"),
        ("tiny-cpu-infodiffusion", "model.mmd_weight=-1", "model.mmd_weight must be >= 0"),
        ("tiny-cpu-diffae", "model.encoder.attention=[true]", "encoder.attention needs one flag per level"),
    ],
)
def test_bad_settings_are_one_line_errors_with_exit_2(preset, override, message, capsys):
    assert main(["train", "--config", preset, "--dry-run", override]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_report_draws_the_pictures_and_states_the_skips(tmp_path):
    """Diff-AE's report (InfoDiffusion draws through the same CodeDiffusion path)."""
    run = tmp_path / "run"
    train(tiny("diffae", "train.steps=1"), run, progress=False)
    assert main(["report", str(run), "--out", str(tmp_path / "report"), "--pairs", "2", "--steps", "2"]) == 0
    page = (tmp_path / "report" / "report.html").read_text()
    for title in ("Unit embeddings", "Cross-attention maps"):  # no per-unit tokens to show
        assert f"<h2>{title}</h2><p>Does not apply: " in page, title
    assert "one-number token" in page
    for title in ("Latent interchange", "Traversals", "Reconstructions"):
        section = page.split(f"<h2>{title}</h2>")[1].split("<h2>")[0]
        assert "data:image/png;base64," in section and "Does not apply" not in section, title
