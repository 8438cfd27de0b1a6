"""The pictures for every model: VAEs and EncDec decode units directly, EncDiff-V swaps whole tokens,
and what does not apply to a model is a one-line error (CLI exit 2) or a stated report section."""

import numpy as np
import pytest
import torch

from diffdrl.api import encode_images, load_run, representation, unit_width
from diffdrl.cli import main
from diffdrl.models.registry import build
from diffdrl.training.config import load_config
from diffdrl.training.trainer import train
from diffdrl.viz.attention import attention_maps
from diffdrl.viz.grid import to_uint8
from diffdrl.viz.interchange import interchange, swap_units
from diffdrl.viz.render import render_units, shared_start
from diffdrl.viz.traversal import traverse, unit_ranges
from diffdrl.viz.unit_factor import unit_factor_importance
from helpers.tiny import TINY

UNITS, TOKEN_DIM, RES = 3, 4, 16  # as in conftest's TINY
TRAIN = [o for o in TINY if o.startswith(("data.", "train."))]
# each model's own keys at tiny size (as tests/models/test_vae.py and test_ablations.py build them)
PRESETS = {
    "betavae": ("tiny-cpu-betavae", [*TRAIN, "model.units=3", "model.channels=[8,8]", "model.hidden=16"]),
    "encdec": (
        "tiny-cpu-encdec",
        [o.replace("model.denoiser.", "model.decoder.") for o in TINY if "schedule" not in o],
    ),
    "encdiffv": ("tiny-cpu-encdiffv", TINY),
}


def tiny(name: str, *overrides: str):
    preset, small = PRESETS[name]
    return load_config(preset, [*small, *overrides])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Run directories of the tiny VAE and EncDec, trained for two steps."""
    root = tmp_path_factory.mktemp("any_model")
    for name in ("betavae", "encdec"):
        train(tiny(name, "train.steps=2"), root / name, progress=False)
    return {name: root / name for name in ("betavae", "encdec")}


def decode_units(model, units: torch.Tensor) -> torch.Tensor:
    """What each deterministic model's decoder makes of units, written out by hand."""
    with torch.no_grad():
        out = model.decode(model.tokens(units)) if model.config.name == "encdec" else model.decode(units)
    return out.clamp(-1, 1)


@pytest.mark.parametrize("name", ["betavae", "encdec"])
def test_swap_and_traverse_commands_write_pictures(runs, name, tmp_path, capsys):
    run = str(runs[name])
    out = ["--out", str(tmp_path / "{}.png")]
    assert main(["swap", run, "--pairs", "2", out[0], out[1].format("swap")]) == 0
    assert main(["traverse", run, "--values", "3", "--reference", "50", out[0], out[1].format("t")]) == 0
    assert main(["interpolate", run, "--pairs", "1", "--values", "3", out[0], out[1].format("i")]) == 0
    for png in ("swap", "t", "i"):
        assert (tmp_path / f"{png}.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("name", ["betavae", "encdec"])
def test_swapping_unit_k_gives_the_decoding_of_the_swapped_units(runs, name):
    run = load_run(runs[name])
    model = run.model
    _, images = run.sample(6, seed=3)
    source, target = images[:3], images[3:]
    result = interchange(model, source, target)
    assert result.swapped.shape == (UNITS, 3, RES, RES, 3) and result.reconstruction.shape == source.shape
    s_src, s_tgt = model.encode(source), model.encode(target)
    for k in range(UNITS):
        units = s_src.clone()
        units[:, k] = s_tgt[:, k]
        expected = to_uint8(decode_units(model, units))
        assert np.abs(result.swapped[k].astype(int) - expected.astype(int)).max() <= 1, k
    own = to_uint8(decode_units(model, s_src))
    assert np.abs(result.reconstruction.astype(int) - own.astype(int)).max() <= 1
    grid = render_units(model, swap_units(s_src, s_tgt))  # (N, P, C, H, W) in one batch
    torch.testing.assert_close(grid[1], decode_units(model, swap_units(s_src, s_tgt)[1]))


def test_traversal_of_a_vae_sets_one_unit_per_row(runs):
    model = load_run(runs["betavae"]).model
    _, images = load_run(runs["betavae"]).sample(20, seed=4)
    values = unit_ranges(model.encode(images), 4)
    rows = traverse(model, images[0], values)
    assert rows.shape == (UNITS, 4, RES, RES, 3)
    units = model.encode(images[:1]).repeat(4, 1)
    units[:, 2] = values[2]
    assert np.abs(rows[2].astype(int) - to_uint8(decode_units(model, units)).astype(int)).max() <= 1


def test_attention_on_a_vae_exits_2_with_the_reason(runs, capsys):
    assert main(["attention", str(runs["betavae"]), "--num", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "cross-attention maps" in err and "'betavae'" in err and "no tokens" in err


def test_diffusion_options_are_errors_for_models_without_a_sampler(runs, capsys):
    run = str(runs["betavae"])
    for argv in (
        ["swap", run, "--steps", "5"],
        ["swap", run, "--start", "inversion"],
        ["traverse", run, "--start", "inversion"],
        ["sample", run, "--start", "inversion"],
        ["sample", run, "--sampler", "ddim", "--eta", "0"],
        ["attention", str(runs["encdec"]), "--timesteps", "10"],
    ):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "sampling options of diffusion models" in err, argv
        assert argv[2].lstrip("-") in err


@pytest.mark.parametrize("name", ["betavae", "encdec"])
def test_sample_reconstructs_by_decoding(runs, name, tmp_path, capsys):
    assert main(["sample", str(runs[name]), "--num", "2", "--out", str(tmp_path / "r.png")]) == 0
    out = capsys.readouterr().out
    assert "mse " in out and "ssim " in out and (tmp_path / "r.png").exists()


def test_encdec_attention_maps_come_from_its_decoder(runs):
    run = load_run(runs["encdec"])
    _, images = run.sample(2, seed=5)
    maps = attention_maps(run.model, images)
    assert maps.shape == (2, UNITS, RES, RES) and torch.all(maps >= 0)
    torch.testing.assert_close(maps.sum(dim=(2, 3)), torch.ones(2, UNITS))


def test_tokens_are_errors_for_a_vae(runs, capsys):
    run = load_run(runs["betavae"])
    with pytest.raises(ValueError, match="'tokens' representation: not available for model 'betavae'"):
        representation(run.model, "tokens", run.data)
    assert main(["embeddings", str(runs["betavae"]), "--num", "50"]) == 2
    assert "unit embeddings: not available for model 'betavae'" in capsys.readouterr().err


def test_report_on_a_vae_states_the_sections_that_do_not_apply(runs, tmp_path):
    assert main(["report", str(runs["betavae"]), "--out", str(tmp_path), "--pairs", "2"]) == 0
    page = (tmp_path / "report.html").read_text()
    for title in ("Unit embeddings", "Cross-attention maps", "Beta schedules"):
        assert f"<h2>{title}</h2><p>Does not apply: " in page, title
    assert "model &#x27;betavae&#x27;" in page
    for title in ("Unit-factor matrix", "Latent interchange", "Traversals", "Reconstructions"):
        section = page.split(f"<h2>{title}</h2>")[1].split("<h2>")[0]
        assert "data:image/png;base64," in section and "Does not apply" not in section, title
    assert not (tmp_path / "attention.png").exists()


# -- EncDiff-V: a unit is a whole token of d coordinates ------------------------------------------


def test_swap_units_moves_whole_groups_of_coordinates():
    src, tgt = torch.zeros(2, 6), torch.arange(12.0).view(2, 6)
    units = swap_units(src, tgt, num_units=3)
    assert units.shape == (3, 2, 6)
    for i in range(3):
        cut = slice(2 * i, 2 * i + 2)
        assert torch.equal(units[i, :, cut], tgt[:, cut]) and units[i].count_nonzero() <= 4
    with pytest.raises(ValueError, match="do not split into 4 units"):
        swap_units(src, tgt, num_units=4)


def test_vector_tokens_swap_and_traverse_as_one_unit_each():
    torch.manual_seed(0)
    model = build(tiny("encdiffv").model, RES).eval()
    assert unit_width(model) == UNITS * TOKEN_DIM
    assert encode_images(model, np.zeros((0, RES, RES, 3), np.uint8)).shape == (0, UNITS * TOKEN_DIM)
    images = np.random.default_rng(0).integers(0, 256, (24, RES, RES, 3), dtype=np.uint8)
    result = interchange(model, images[:2], images[2:4], steps=2)
    assert result.swapped.shape == (UNITS, 2, RES, RES, 3)
    values = unit_ranges(model.encode(images), 3, num_units=UNITS)
    assert values.shape == (UNITS, 3, TOKEN_DIM)
    rows = traverse(model, images[0], values, steps=2)
    assert rows.shape == (UNITS, 3, RES, RES, 3)
    units = model.encode(images[:1]).repeat(3, 1)
    units[:, TOKEN_DIM : 2 * TOKEN_DIM] = values[1]  # token 1 along its principal axis
    expected = render_units(model, units, x_T=shared_start(model, 0), steps=2)
    assert np.abs(rows[1].astype(int) - to_uint8(expected).astype(int)).max() <= 1


def test_vector_token_importances_are_one_row_per_unit(tmp_path):
    train(tiny("encdiffv", "train.steps=1"), tmp_path / "run", progress=False)
    run = load_run(tmp_path / "run")
    assert unit_factor_importance(run, num=300).shape == (UNITS, len(run.data.factor_names))
