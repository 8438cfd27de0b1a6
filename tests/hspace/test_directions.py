"""The unsupervised direction methods on a tiny trained EncDiff: every edit at strength 0 is the
unedited resampling, the trajectory read-out lands on the DDIM grid, and strips stack the edits."""

import numpy as np
import pytest
import torch

from diffdrl.data.ground_truth import to_model_input
from diffdrl.hspace import directions as hd
from diffdrl.hspace.asymmetric import ddim_grid

STEPS = 4


@pytest.fixture(scope="module")
def src(trained_tiny):
    _, images = trained_tiny.sample(3, seed=11)
    return hd.sources(trained_tiny.model, images, STEPS)


def test_sources_hold_the_images_their_units_tokens_and_noise(trained_tiny, src):
    model = trained_tiny.model
    _, images = trained_tiny.sample(3, seed=11)
    torch.testing.assert_close(src.x0, to_model_input(images), rtol=0, atol=0)
    torch.testing.assert_close(src.units, model.encode(images))
    torch.testing.assert_close(src.tokens, model.tokens(src.units))
    assert src.x_T.shape == src.x0.shape and not torch.allclose(src.x_T, src.x0)


def test_trajectory_x_at_stops_at_the_first_grid_time_not_above(trained_tiny, src):
    grid = ddim_grid(hd.betas_of(trained_tiny.model), STEPS)[0]  # descending
    for t_stop in (int(grid[0]), int(grid[1]) + 1, int(grid[-1])):
        x, t = hd.trajectory_x_at(trained_tiny.model, src, t_stop, STEPS)
        assert t == max(g for g in grid if g <= t_stop)
        assert x.shape == src.x0.shape
    x_T, t = hd.trajectory_x_at(trained_tiny.model, src, int(grid[0]), STEPS)
    torch.testing.assert_close(x_T, src.x_T, rtol=0, atol=0)  # the first grid time: x_T itself


def test_every_method_at_strength_zero_is_the_unedited_resampling(trained_tiny, src):
    model = trained_tiny.model
    plain = hd.token_edit(model, src, src.tokens, STEPS)
    assert plain.shape == src.x0.shape and plain.abs().max() <= 1
    torch.testing.assert_close(hd.unit_edit(model, src, 1, src.units[:, 1], STEPS), plain)
    pca = hd.fit_pca(model, src, k=2, steps=STEPS)
    t_edit = int(ddim_grid(hd.betas_of(model), STEPS)[0][1])
    torch.testing.assert_close(hd.pca_edit(model, src, pca, 0, 0.0, t_edit, steps=STEPS), plain)
    d_c, _ = hd.jacobian_c(model, src, t_edit, rank=2, steps=STEPS)
    torch.testing.assert_close(hd.jacobian_c_edit(model, src, d_c, 0, 0.0, steps=STEPS), plain)
    d_x, t = hd.jacobian_x(model, src, t_edit, rank=2, steps=STEPS, iters=2)
    torch.testing.assert_close(hd.jacobian_x_edit(model, src, d_x, t, 0, 0.0, STEPS), plain)


def test_a_nonzero_token_edit_changes_the_images_and_std_is_per_direction(trained_tiny, src):
    model = trained_tiny.model
    t_edit = int(ddim_grid(hd.betas_of(model), STEPS)[0][1])
    d_c, _ = hd.jacobian_c(model, src, t_edit, rank=2, steps=STEPS)
    std = hd.token_direction_std(src, d_c)
    assert std.shape == (2,) and (std > 0).all()
    coords = src.tokens.flatten(1) @ d_c.inputs.flatten(1).T.to(src.tokens)
    torch.testing.assert_close(std, coords.std(0).clamp(min=1e-6))
    plain = hd.token_edit(model, src, src.tokens, STEPS)
    assert not torch.equal(hd.jacobian_c_edit(model, src, d_c, 0, 50.0, std, STEPS), plain)


def test_strip_stacks_one_edit_per_strength():
    gammas = [-1.0, 0.0, 2.0]
    out = hd.strip(lambda g: torch.full((2, 1, 3, 3), g), gammas)
    assert out.shape == (3, 2, 1, 3, 3)
    np.testing.assert_array_equal(out[:, 0, 0, 0, 0].numpy(), gammas)
