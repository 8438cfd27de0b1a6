import numpy as np
import pytest
import torch

from diffdrl.data.ground_truth import to_model_input
from diffdrl.diffusion.schedule import ScheduleConfig, information_bottleneck_curve, make_betas
from diffdrl.metrics.reconstruction import image_similarity, psnr, ssim
from diffdrl.viz.attention import CrossAttentionCapture, attention_maps, save_attention
from diffdrl.viz.interchange import interchange, save_interchange, swap_units, unit_names
from diffdrl.viz.render import reconstruct
from diffdrl.viz.schedules import save_schedule_plot
from diffdrl.viz.traversal import interpolate, traverse, unit_ranges


def test_swap_units_replaces_exactly_one_unit():
    src, tgt = torch.zeros(2, 4), torch.ones(2, 4)
    units = swap_units(src, tgt)
    assert units.shape == (4, 2, 4)
    for i in range(4):
        assert torch.equal(units[i, :, i], torch.ones(2))
        assert units[i].sum() == 2


def test_interchange_with_itself_is_identity(trained_tiny, tmp_path):
    _, images = trained_tiny.sample(2, seed=1)
    result = interchange(trained_tiny.model, images, images, steps=4)
    assert result.swapped.shape == (3, 2, 16, 16, 3) and result.swapped.dtype == np.uint8
    for row in result.swapped:
        assert np.abs(row.astype(int) - result.reconstruction.astype(int)).max() <= 1
    assert save_interchange(result, tmp_path / "swap.png").read_bytes()[:4] == b"\x89PNG"


def test_interchange_changes_rows_when_units_differ(trained_tiny, monkeypatch):
    _, images = trained_tiny.sample(4, seed=2)
    model = trained_tiny.model
    fake_units = {images[:2].tobytes(): -4.0, images[2:].tobytes(): 4.0}  # far apart, so tokens differ
    monkeypatch.setattr(model, "encode", lambda x: torch.full((len(x), 3), fake_units[x.tobytes()]))
    result = interchange(model, images[:2], images[2:], steps=4)
    assert all(not np.array_equal(row, result.reconstruction) for row in result.swapped)


def test_unit_names_follow_importance():
    importance = np.array([[0.0, 0.9], [0.0, 0.0], [0.5, 0.1]])
    assert unit_names(3, importance, ("hue", "shape")) == ["unit 0: shape", "unit 1", "unit 2: hue"]


def test_traversal_and_interpolation_shapes(trained_tiny):
    _, images = trained_tiny.sample(3, seed=4)
    values = unit_ranges(trained_tiny.model.encode(images), num_values=5)
    assert values.shape == (3, 5) and torch.all(values[:, 1:] >= values[:, :-1])
    assert traverse(trained_tiny.model, images[0], values, steps=3).shape == (3, 5, 16, 16, 3)
    assert interpolate(trained_tiny.model, images[:1], images[1:2], 4, steps=3).shape == (1, 4, 16, 16, 3)


def test_traversal_and_interpolation_change_only_what_they_move(trained_tiny):
    """One x_T for the whole grid: a traversal through the image's own unit values draws the same
    picture everywhere, an interpolation of an image with itself too, and an interpolation starts
    at the first image's units and ends at the second's (the traversal's own-value picture).
    Pictures rendered in different batches may differ by rounding: at most 1 of 255."""

    def close(a, b):
        return np.abs(a.astype(int) - b.astype(int)).max() <= 1

    model = trained_tiny.model
    _, images = trained_tiny.sample(2, seed=4)
    own = model.encode(images[:1]).T  # (N, 1): each unit at the image's own value
    rows = traverse(model, images[0], own.repeat(1, 3), steps=3, seed=1)
    base = rows[0, 0]
    assert close(rows, base)
    assert close(interpolate(model, images[:1], images[:1], 3, steps=3, seed=1), base)
    ends = interpolate(model, images[:1], images[1:2], 3, steps=3, seed=1)
    assert close(ends[0, 0], base)
    other = traverse(model, images[1], model.encode(images[1:2]).T, steps=3, seed=1)
    assert close(ends[0, -1], other[0, 0])
    # a unit moved far from the image's value changes its own row's picture only
    moved = own.repeat(1, 2)
    moved[1, 1] += 8.0
    rows = traverse(model, images[0], moved, steps=3, seed=1)
    assert close(rows[[0, 2]], base) and close(rows[1, 0], base)
    assert not np.array_equal(rows[1, 1], base)


def test_inverted_start_retraces_the_images_under_their_own_units(trained_tiny):
    """From the DDIM-inverted x_T, the unedited reconstruction, traversal value and interchange row
    all return the input; from fresh noise they need not."""
    model = trained_tiny.model
    _, images = trained_tiny.sample(2, seed=6)
    x0 = to_model_input(images)
    back = reconstruct(model, images, steps=50, start="inversion")
    assert (back - x0).square().mean() < 1e-3
    assert (reconstruct(model, images, steps=50) - x0).square().mean() > 1e-2  # fresh noise, eta 1
    result = interchange(model, images, images, steps=50, start="inversion")
    assert np.abs(result.reconstruction.astype(int) - images.astype(int)).mean() < 3
    own = model.encode(images[:1])  # (1, K): a traversal whose values are the image's own units
    rows = traverse(model, images[0], own.T.repeat(1, 2), steps=50, start="inversion")
    assert np.abs(rows[:, 0].astype(int) - images[:1].astype(int)).mean() < 3
    with pytest.raises(ValueError, match="start must be one of"):
        traverse(model, images[0], own.T, steps=5, start="noisy")


def test_attention_capture_leaves_outputs_bit_identical(trained_tiny):
    model = trained_tiny.model
    _, images = trained_tiny.sample(2, seed=5)
    x0 = to_model_input(images)
    tokens = model.tokens(model.encode(x0))
    t = torch.tensor([10, 400])
    with torch.no_grad():
        plain = model.denoiser(x0, t, tokens)
        with CrossAttentionCapture(model.denoiser.unet) as maps:
            captured = model.denoiser(x0, t, tokens)
        after = model.denoiser(x0, t, tokens)
    assert torch.equal(plain, captured) and torch.equal(plain, after)
    assert maps and all(m.shape[0] == 2 and m.shape[-1] == 3 for m in maps)
    torch.testing.assert_close(maps[0].sum(-1), torch.ones_like(maps[0].sum(-1)))  # softmax over tokens


def test_attention_maps_are_normalised_per_token(trained_tiny, tmp_path):
    _, images = trained_tiny.sample(2, seed=6)
    maps = attention_maps(trained_tiny.model, images, timesteps=(10, 30))
    assert maps.shape == (2, 3, 16, 16) and torch.all(maps >= 0)
    torch.testing.assert_close(maps.sum(dim=(2, 3)), torch.ones(2, 3))
    assert save_attention(images, maps, tmp_path / "att.png").exists()


def test_information_bottleneck_rises_as_t_decreases(tmp_path):
    for name in ("linear", "sqrt_linear", "sqrt"):
        curve = information_bottleneck_curve(make_betas(ScheduleConfig(name=name)))
        assert np.all(np.diff(curve) < 0), name
    assert save_schedule_plot(tmp_path / "s.png").exists()


def test_information_bottleneck_matches_a_monte_carlo_estimate():
    betas = make_betas(ScheduleConfig(timesteps=100))
    abar = np.cumprod(1 - betas)
    t = 40
    rng = np.random.default_rng(0)
    x0, eps = rng.normal(size=200_000), rng.normal(size=200_000)
    x_t = np.sqrt(abar[t]) * x0 + np.sqrt(1 - abar[t]) * eps
    mu = (np.sqrt(abar[t - 1]) * betas[t] * x0 + np.sqrt(1 - betas[t]) * (1 - abar[t - 1]) * x_t) / (
        1 - abar[t]
    )
    var = (1 - abar[t - 1]) / (1 - abar[t]) * betas[t]
    kl = 0.5 * (var - 1 - np.log(var) + mu**2)
    assert information_bottleneck_curve(betas)[t - 1] == pytest.approx(kl.mean(), rel=1e-2)


def test_ssim_and_similarity_known_answers():
    rng = torch.Generator().manual_seed(0)
    a = torch.rand(2, 3, 16, 16, generator=rng)
    torch.testing.assert_close(ssim(a, a), torch.ones(2))
    noisy = (a + 0.2 * torch.randn(a.shape, generator=rng)).clamp(0, 1)
    assert torch.all(ssim(a, noisy) < 0.9)
    torch.testing.assert_close(ssim(a, noisy), ssim(noisy, a))
    scores = image_similarity(a, a)
    assert scores["reconstruction.mse"] == 0 and scores["reconstruction.ssim"] == pytest.approx(1.0)
    half = image_similarity(torch.zeros(1, 1, 11, 11), torch.full((1, 1, 11, 11), 0.1))
    assert half["reconstruction.psnr"] == pytest.approx(20.0, rel=1e-4)
    per_image = psnr(torch.zeros(2, 4, 4, 3), torch.stack([torch.full((4, 4, 3), 0.1), torch.zeros(4, 4, 3)]))
    torch.testing.assert_close(per_image, torch.tensor([20.0, 100.0]))  # any layout; identical: 100 dB


def test_report_has_every_section(trained_tiny, tmp_path):
    from diffdrl.viz.report import build_report

    page = build_report(trained_tiny, tmp_path / "report", steps=2, pairs=2).read_text()
    for title in (
        "Training",
        "Evaluations over training",
        "Unit-factor matrix",
        "Unit embeddings",
        "Latent interchange",
        "Traversals",
        "Cross-attention maps",
        "Reconstructions",
        "Beta schedules",
        "Config",
        "h-space: PCA directions",
        "h-space: Jacobian dh/dx directions",
        "h-space: Jacobian dh/dc token directions",
    ):
        assert f"<h2>{title}</h2>" in page, title
    assert page.count("data:image/png;base64,") == 12
    for png in (
        "training",
        "metrics",
        "unit_factor",
        "unit_embeddings",
        "interchange",
        "traversal",
        "attention",
        "reconstruction",
        "schedules",
        "hspace_pca",
        "hspace_jacobian_x",
        "hspace_jacobian_c",
    ):
        assert (tmp_path / "report" / f"{png}.png").exists()


def test_unit_embeddings_draw_fitted_mixtures(tiny_config, tmp_path):
    from diffdrl.api import load_run
    from diffdrl.training.trainer import train
    from diffdrl.viz.unit_embeddings import project, save_unit_embeddings

    dyga = [
        "model.anchoring.enabled=true",
        "model.anchoring.refit_every=1",
        "model.anchoring.max_fit_tokens=64",
        "model.anchoring.em_iterations=3",
        "train.steps=1",
    ]
    train(tiny_config(*dyga), tmp_path / "run", progress=False)
    run = load_run(tmp_path / "run")
    assert run.model.anchors._is_fitted
    path = save_unit_embeddings(run, tmp_path / "emb.png", num=300, units=[0, 2])
    assert path.read_bytes()[:4] == b"\x89PNG"
    xy, linear = project(np.random.default_rng(0).normal(size=(50, 4)))
    assert xy.shape == (50, 2) and linear.shape == (3, 4)
    np.testing.assert_allclose(linear[:2] @ linear[:2].T, np.eye(2), atol=1e-10)
    with pytest.raises(ValueError, match="method must be one of"):
        project(xy, method="tsne")
