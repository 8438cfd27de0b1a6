"""The EncDiff paper's ablations: AdaGN conditioning, EncDiff-V (vector tokens), EncDec w/o diffusion."""

import json

import numpy as np
import pytest
import torch
from diffusers.models.attention_processor import Attention

from diffdrl.api import load_run
from diffdrl.data import make_dataset
from diffdrl.data.ground_truth import to_model_input
from diffdrl.models.denoiser import Denoiser, DenoiserConfig
from diffdrl.models.encdec import EncDec
from diffdrl.models.encdiff import EncDiff
from diffdrl.models.registry import build
from diffdrl.models.token_bank import TokenBank, TokenBankConfig
from diffdrl.training.config import ConfigError, load_config
from diffdrl.training.trainer import Trainer, train
from diffdrl.viz.attention import attention_maps
from helpers.tiny import TINY

UNITS, TOKEN_DIM, RES = 3, 4, 16  # as in conftest's TINY


def tiny(preset: str, *overrides: str):
    """``preset`` at conftest's tiny size (EncDec: the denoiser's shape keys under ``decoder``)."""
    if preset.endswith("encdec"):
        small = [o.replace("model.denoiser.", "model.decoder.") for o in TINY if "schedule" not in o]
    else:
        small = TINY
    return load_config(preset, [*small, *overrides])


def tiny_adagn_denoiser() -> Denoiser:
    config = DenoiserConfig(
        channels=(8, 16),
        cross_attention=(False, True),
        heads=2,
        norm_groups=4,
        layers_per_block=1,
        conditioning="adagn",
    )
    return Denoiser(config, token_dim=TOKEN_DIM, resolution=RES, num_units=UNITS)


@pytest.mark.parametrize(
    ("preset", "width"),
    [("tiny-cpu-adagn", UNITS), ("tiny-cpu-encdiffv", UNITS * TOKEN_DIM), ("tiny-cpu-encdec", UNITS)],
)
def test_each_variant_trains_through_the_trainer_and_encodes(preset, width, tmp_path):
    result = train(tiny(preset, "train.steps=3"), tmp_path / "run", progress=False)
    assert result.step == 3 and np.isfinite(result.loss)
    rows = [json.loads(r) for r in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert any("eval/token_reliance" in r for r in rows)  # every variant conditions on tokens
    run = load_run(tmp_path / "run")
    _, images = run.sample(5, seed=1)
    units = run.model.encode(images)
    assert units.shape == (5, width)
    assert run.model.tokens(units).shape == (5, UNITS, TOKEN_DIM)


def test_presets_differ_from_their_base_only_in_the_ablation():
    assert load_config("tiny-cpu-adagn").model.denoiser.conditioning == "adagn"
    assert load_config("tiny-cpu-encdiffv").model.token_bank.kind == "vector"
    assert load_config("paper-adagn").model.denoiser.conditioning == "adagn"
    assert load_config("paper-encdiffv").model.token_bank.kind == "vector"
    base, encdec = load_config("tiny-cpu"), load_config("tiny-cpu-encdec")
    assert encdec.model.name == "encdec" and encdec.train == base.train and encdec.data == base.data
    shape = ("channels", "cross_attention", "layers_per_block", "heads", "norm_groups", "dropout")
    for preset, base_name in (("tiny-cpu-encdec", "tiny-cpu"), ("paper-encdec", "paper")):
        model, denoiser = load_config(preset).model, load_config(base_name).model.denoiser
        assert {k: getattr(model.decoder, k) for k in shape} == {k: getattr(denoiser, k) for k in shape}


# -- AdaGN ----------------------------------------------------------------------------------------


def test_adagn_denoiser_reads_the_tokens_without_cross_attention():
    torch.manual_seed(0)
    net = tiny_adagn_denoiser().eval()
    attention = [m for m in net.modules() if isinstance(m, Attention)]
    assert attention and not any(m.is_cross_attention for m in attention)  # self-attention only
    assert net.unet.class_embedding.linear_1.in_features == UNITS * TOKEN_DIM
    x, t, tokens = torch.randn(2, 3, RES, RES), torch.tensor([3, 40]), torch.randn(2, UNITS, TOKEN_DIM)
    out = net(x, t, tokens)
    assert out.shape == x.shape
    for i in range(UNITS):  # every token reaches the output
        changed = tokens.clone()
        changed[:, i] += 1.0
        assert not torch.allclose(out, net(x, t, changed))


def test_adagn_trains_with_skip_dropout_and_anchoring(tmp_path):
    config = tiny(
        "tiny-cpu-adagn",
        "model.denoiser.skip_dropout.rate=0.5",
        "model.denoiser.skip_dropout.levels=[0]",
        "model.anchoring.enabled=true",
        "model.anchoring.init_components=2",
        "model.anchoring.refit_every=2",
        "model.anchoring.max_fit_tokens=32",
        "model.anchoring.min_cluster_size=1",
        "train.steps=3",
    )
    trainer = Trainer(config, tmp_path / "run", progress=False)
    assert trainer.unwrapped.denoiser.unet.up_blocks[-1]._forward_pre_hooks  # skip dropout on level 0
    result = trainer.train()
    assert result.step == 3 and np.isfinite(result.loss)
    assert trainer.unwrapped.anchors.fitted  # refitted at step 2, then anchored step 3's tokens


def test_attention_maps_refuse_adagn_with_the_reason(tiny_config):
    model = EncDiff(tiny_config("model.denoiser.conditioning=adagn").model, RES).eval()
    images = np.zeros((1, RES, RES, 3), np.uint8)
    with pytest.raises(ValueError, match="cross-attention.*adagn"):
        attention_maps(model, images, timesteps=(10,))


def test_adagn_needs_scale_shift_norm():
    with pytest.raises(ConfigError, match="model.denoiser.scale_shift_norm"):
        load_config("tiny-cpu-adagn", ["model.denoiser.scale_shift_norm=false"])


# -- EncDiff-V ------------------------------------------------------------------------------------


def test_vector_tokens_are_the_encoders_chunks(tiny_config):
    torch.manual_seed(0)
    model = EncDiff(tiny_config("model.token_bank.kind=vector").model, RES).eval()
    assert not list(model.token_bank.parameters())  # no per-unit MLP
    assert model.encoder.head.out_features == UNITS * TOKEN_DIM
    units = model.encode(torch.rand(2, 3, RES, RES) * 2 - 1)  # (B, N d)
    tokens = model.raw_tokens(units)
    assert tokens.shape == (2, UNITS, TOKEN_DIM)
    for i in range(UNITS):
        assert torch.equal(tokens[:, i], units[:, i * TOKEN_DIM : (i + 1) * TOKEN_DIM])
    assert torch.equal(model.tokens(units), tokens)  # no anchoring by default


def test_vector_bank_checks_its_input_and_has_no_unit_mlp():
    bank = TokenBank(TokenBankConfig(kind="vector"), num_units=UNITS, token_dim=TOKEN_DIM)
    with pytest.raises(ValueError, match=r"expected units \(\.\.\., 12\)"):
        bank(torch.zeros(2, UNITS))
    with pytest.raises(ValueError, match="no per-unit MLPs"):
        bank.unit_mlp(0)


def test_vector_tokens_can_be_anchored(tiny_config):
    config = tiny_config(
        "model.token_bank.kind=vector", "model.anchoring.enabled=true", "model.anchoring.init_components=2"
    ).model
    model = EncDiff(config, RES).eval()
    with torch.no_grad():
        tokens = model.raw_tokens(model.encode(torch.rand(16, 3, RES, RES) * 2 - 1))
        model.anchors.fit(tokens)
        assert model.tokens(model.encode(torch.rand(2, 3, RES, RES))).shape == (2, UNITS, TOKEN_DIM)


# -- EncDec ---------------------------------------------------------------------------------------


def test_encdec_loss_is_l2_reconstruction_and_falls_on_a_fixed_batch():
    torch.manual_seed(0)
    model = build(tiny("tiny-cpu-encdec").model, RES)
    assert isinstance(model, EncDec) and model.conditions_on_tokens
    _, images = make_dataset("synth-shapes3d", None, RES).sample(8, np.random.default_rng(0))
    x = to_model_input(images)
    model.eval()
    with torch.no_grad():
        expected = ((model.decode(model.tokens(model.encode(x))) - x) ** 2).mean()
        loss, terms = model(x)
        torch.testing.assert_close(loss, expected)
        assert terms == {}  # a plain reconstruction loss: no named parts
        assert model(x, shuffle_tokens=True)[0] != loss  # the tokens matter
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss, _ = model(x)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]


def test_encdec_decoder_cross_attends_to_the_tokens_and_has_no_timestep():
    model = build(tiny("tiny-cpu-encdec").model, RES)
    cross = [m for m in model.decoder.modules() if isinstance(m, Attention) and m.is_cross_attention]
    assert (
        len(cross) == 1 + 2
    )  # the bottleneck's and the attention level's two resnets (layers_per_block + 1)
    assert all(m.to_k.in_features == TOKEN_DIM for m in cross)
    assert not any("time" in name for name, _ in model.named_modules())
    assert model.decoder.start.shape == (16, RES // 2, RES // 2)  # the bottleneck of a 2-level U-Net


# -- validation -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("preset", "override", "key"),
    [
        ("tiny-cpu", "model.denoiser.conditioning=foo", "model.denoiser.conditioning"),
        ("tiny-cpu", "model.token_bank.kind=foo", "model.token_bank.kind"),
        ("tiny-cpu-encdec", "model.token_bank.kind=matrix", "model.token_bank.kind"),
        ("tiny-cpu-encdec", "model.decoder.heads=5", "model.decoder.heads"),
        ("tiny-cpu-encdec", "model.denoiser.heads=4", "model.denoiser"),
    ],
)
def test_invalid_values_name_their_key(preset, override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(preset, [override])
