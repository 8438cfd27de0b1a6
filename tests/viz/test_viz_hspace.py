"""Edit strips of h-space directions on a tiny trained run: shapes, the unedited middle column, the
files and the summary that ``save_hspace`` writes."""

import json

import numpy as np
import pytest
import torch

from diffdrl.diffusion.sampling import STRIP_STEPS
from diffdrl.hspace import directions as hd
from diffdrl.viz.hspace import UNSUPERVISED, check_methods, hspace_strips, save_hspace, save_strips

STEPS = 3


def test_check_methods_names_the_valid_ones():
    assert check_methods(["pca"]) == ("pca",)
    with pytest.raises(ValueError, match="unknown h-space method.*jacobian_c"):
        check_methods(["pca", "ica"])


def test_strips_have_the_unedited_image_in_the_middle_column(trained_tiny, tmp_path):
    model = trained_tiny.model
    _, images = trained_tiny.sample(5, seed=2)
    gammas = (-2.0, 0.0, 2.0)
    result = hspace_strips(model, images[:2], k=1, gammas=gammas, steps=STEPS, pca_images=images[2:])
    assert set(result["methods"]) == set(UNSUPERVISED) and result["gammas"] == list(gammas)
    assert 0 <= result["interval"]["t_edit"] < model.config.schedule.timesteps
    src = hd.sources(model, images[:2], STEPS)
    plain = hd.token_edit(model, src, src.tokens, STEPS)
    for method, entry in result["methods"].items():
        strips = entry["images"]  # (k, G, B, C, H, W)
        assert strips.shape == (1, 3, 2, *plain.shape[1:]), method
        torch.testing.assert_close(strips[0, 1], plain, msg=method)  # gamma 0: no edit
        assert len(entry["spectrum"]) >= 1
    paths = save_strips(result, tmp_path)
    assert [p.name for p in paths] == [f"hspace_{m}.png" for m in result["methods"]]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in paths)


def test_save_hspace_writes_strips_and_summary(trained_tiny, tmp_path):
    paths, summary, interval = save_hspace(
        trained_tiny, tmp_path, methods=("pca",), k=1, images=1, fit=3, steps=STEPS, t_edit=10
    )
    assert [p.name for p in paths] == ["hspace_pca.png"]
    written = json.loads(summary.read_text())
    assert written["steps"] == STEPS and written["interval"]["t_edit"] == interval["t_edit"] == 10
    assert np.isfinite(written["spectra"]["pca"]).all()
    with pytest.raises(ValueError, match="t_edit"):
        save_hspace(trained_tiny, tmp_path, methods=("pca",), t_edit=10_000)
    assert STRIP_STEPS < trained_tiny.model.config.schedule.timesteps
