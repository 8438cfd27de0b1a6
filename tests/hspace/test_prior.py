import numpy as np
import pytest
import torch

from diffdrl.data import make_dataset
from diffdrl.diffusion.samplers import sample
from diffdrl.diffusion.schedule import make_betas
from diffdrl.hspace.bottleneck import denoiser_of
from diffdrl.hspace.classifier import ClassifierConfig, FactorClassifier, load_classifier, save_classifier
from diffdrl.hspace.guidance import guided_denoise, guided_sample
from diffdrl.hspace.subspace import (
    choose_t1,
    divergence_sweep,
    down,
    project,
    sigma_perp,
    subspace_sample,
    up,
)


def _classifier(noisy=True, timesteps=50):
    torch.manual_seed(0)
    config = ClassifierConfig(("a", "b"), (3, 4), resolution=16, width=8, noisy=noisy, timesteps=timesteps)
    return FactorClassifier(config).eval()


@pytest.mark.parametrize("tiny_model", ["cross_attention"], indirect=True)
def test_guidance_with_scale_zero_is_the_unguided_sampler(tiny_model):
    betas = make_betas(tiny_model.config.schedule)
    x_T = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    tokens = tiny_model.tokens(tiny_model.encode(x_T))
    denoise = denoiser_of(tiny_model, tokens)
    clf = _classifier()
    plain = sample(denoise, x_T, betas, "ddim", steps=5)
    guided0 = guided_sample(denoise, clf, "b", 2, 0.0, x_T, betas, steps=5)
    assert torch.equal(plain, guided0)
    guided = guided_sample(denoise, clf, "b", 2, 50.0, x_T, betas, steps=5)
    assert not torch.allclose(plain, guided)


def test_guidance_moves_eps_along_the_classifier_gradient():
    clf = _classifier()
    betas = np.linspace(1e-3, 0.05, 50)
    x, t = torch.randn(3, 3, 16, 16), torch.tensor([10, 20, 49])
    guided = guided_denoise(lambda x, t: torch.zeros_like(x), clf, "a", 1, 2.0, betas)
    x_req = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(clf.log_prob(x_req, 0, torch.ones(3, dtype=torch.long), t).sum(), x_req)
    sigma = torch.from_numpy(np.sqrt(1 - np.cumprod(1 - betas))).float()[t].view(-1, 1, 1, 1)
    torch.testing.assert_close(guided(x, t), -2.0 * sigma * grad)


def test_guidance_bad_arguments_are_one_line_errors():
    betas = np.linspace(1e-3, 0.05, 50)
    eps = lambda x, t: x  # noqa: E731
    with pytest.raises(ValueError, match="unknown factor 'c' \\(factors: a, b\\)"):
        guided_denoise(eps, _classifier(), "c", 0, 1.0, betas)
    with pytest.raises(ValueError, match="must be in \\[0, 4\\)"):
        guided_denoise(eps, _classifier(), "b", 4, 1.0, betas)
    with pytest.raises(ValueError, match="noise-conditional"):
        guided_denoise(eps, _classifier(noisy=False), "a", 0, 1.0, betas)
    with pytest.raises(ValueError, match="trained for 50 timesteps"):
        guided_denoise(eps, _classifier(), "a", 0, 1.0, np.linspace(1e-3, 0.05, 20))


def test_classifier_round_trips_through_safetensors(tmp_path):
    clf = _classifier()
    save_classifier(clf, tmp_path / "clf", {"accuracy": {"a": 1.0}})
    back, meta = load_classifier(tmp_path / "clf")
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([1, 2])
    torch.testing.assert_close(back(x, t), clf(x, t))
    assert meta["accuracy"] == {"a": 1.0}
    with pytest.raises(FileNotFoundError, match="no classifier"):
        load_classifier(tmp_path / "missing")


def test_pooled_subspace_is_orthonormal_and_sigma_perp_is_the_rms_residual():
    gen = torch.Generator().manual_seed(0)
    y = torch.randn(2, 3, 4, 4, generator=gen)
    torch.testing.assert_close(down(up(y)), y)  # U^T U = I
    x = torch.randn(2, 3, 8, 8, generator=gen)
    torch.testing.assert_close(project(project(x)), project(x))
    assert torch.allclose((up(y) * (x - project(x))).sum(), torch.tensor(0.0), atol=1e-5)
    flat = torch.ones(4, 3, 8, 8)  # lies in the subspace
    assert sigma_perp(flat) == pytest.approx(0.0, abs=1e-7)
    assert sigma_perp(x) == pytest.approx(1.0, abs=0.15)  # white noise: unit variance everywhere


def test_divergence_sweep_falls_toward_pure_noise_and_picks_t1():
    data = make_dataset("synth-shapes3d", None, 16)
    _, images = data.sample(64, np.random.default_rng(0))
    x0 = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
    betas = make_betas(__import__("diffdrl.diffusion.schedule", fromlist=["ScheduleConfig"]).ScheduleConfig())
    sweep = divergence_sweep(x0, betas, steps=10)
    d = np.asarray(sweep["divergence"])  # noisiest first
    assert d[0] < d[-1]
    t1 = choose_t1(sweep, tol=float(d[0]) * 1.01)
    assert t1 in sweep["t"]
    with pytest.raises(ValueError, match="tol must be > 0"):
        choose_t1(sweep, 0.0)


@pytest.mark.parametrize("tiny_model", ["cross_attention"], indirect=True)
def test_subspace_sampling_below_the_grid_is_plain_ddim(tiny_model):
    betas = make_betas(tiny_model.config.schedule)
    x_T = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    denoise = denoiser_of(tiny_model, tiny_model.tokens(tiny_model.encode(x_T)))
    # t1 above every grid time: no subspace phase, but x_T re-assembled as U U^T x_T + n_perp
    out = subspace_sample(
        denoise, x_T, betas, t1=49, s_perp=0.3, steps=5, generator=torch.Generator().manual_seed(1)
    )
    assert out.shape == x_T.shape and torch.isfinite(out).all()
    sub = subspace_sample(
        denoise, x_T, betas, t1=0, s_perp=0.3, steps=5, generator=torch.Generator().manual_seed(1)
    )
    assert not torch.allclose(out, sub)
    with pytest.raises(ValueError, match="t1 must be in"):
        subspace_sample(denoise, x_T, betas, t1=50, s_perp=0.3)
