"""``diffdrl hspace`` and ``diffdrl edit`` end to end on a tiny trained run, and their errors."""

import json

import numpy as np
import pytest
from PIL import Image

from diffdrl.cli import main
from helpers.tiny import TINY


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("hs") / "run"
    assert main(["train", "--out", str(run), "--no-progress", *TINY, "train.steps=2"]) == 0
    return run


def test_hspace_draws_every_method_and_records_the_interval(tiny_run, tmp_path):
    out = tmp_path / "strips"
    argv = ["hspace", str(tiny_run), "--k", "1", "--images", "1", "--fit", "3", "--steps", "3"]
    assert main([*argv, "--out", str(out), "--no-progress"]) == 0
    for method in ("pca", "jacobian_x", "jacobian_c"):
        assert (out / f"hspace_{method}.png").read_bytes()[:4] == b"\x89PNG"
    summary = json.loads((out / "hspace.json").read_text())
    assert 0 <= summary["interval"]["t_edit"] < 50
    assert set(summary["spectra"]) == {"pca", "jacobian_x", "jacobian_c"}


def test_edit_with_a_learned_block_and_with_guidance(tiny_run, tmp_path):
    common = ["--factor", "shape", "--value", "1", "--images", "1", "--steps", "3", "--no-progress"]
    common += ["--classifier-steps", "5", "--classifier-images", "32"]
    out = tmp_path / "delta.png"
    argv = [
        "edit",
        str(tiny_run),
        *common,
        "--train-images",
        "2",
        "--coefficients=-1,0,1",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    assert out.read_bytes()[:4] == b"\x89PNG"
    assert (tiny_run / "hspace" / "delta_shape_1.safetensors").is_file()
    assert (tiny_run / "hspace" / "classifier_clean.json").is_file()
    out = tmp_path / "guided.png"
    assert (
        main(["edit", str(tiny_run), *common, "--method", "guidance", "--scales", "0,5", "--out", str(out)])
        == 0
    )
    assert out.read_bytes()[:4] == b"\x89PNG"


def _one_line_error(capsys, argv, match):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and match in err, err


def test_bad_arguments_are_one_line_errors(tiny_run, tmp_path, capsys):
    _one_line_error(
        capsys, ["edit", str(tiny_run), "--factor", "colour"], "unknown factor 'colour' (factors: floor_hue"
    )
    _one_line_error(capsys, ["edit", str(tiny_run), "--factor", "shape", "--value", "9"], "must be in [0, 4)")
    _one_line_error(capsys, ["hspace", str(tiny_run), "--t-edit", "50"], "t_edit must be in [0, 50)")
    _one_line_error(
        capsys, ["edit", str(tiny_run), "--factor", "shape", "--t-edit", "-3"], "t_edit must be in"
    )
    _one_line_error(
        capsys, ["hspace", str(tiny_run), "--methods", "pca,ica"], "unknown h-space method(s) ica"
    )
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    run = tmp_path / "unlabelled"
    argv = ["train", "--out", str(run), "--no-progress", *TINY, "train.steps=1", "data.name=image-folder"]
    assert main([*argv, f"data.path={folder}"]) == 0
    _one_line_error(
        capsys, ["edit", str(run), "--factor", "shape"], "needs a dataset with ground-truth factors"
    )
    _one_line_error(
        capsys, ["edit", str(run), "--factor", "shape", "--method", "guidance"], "ground-truth factors"
    )
