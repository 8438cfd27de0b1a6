import json
import math

import numpy as np
import pytest
import torch

from diffdrl.api import load_model
from diffdrl.data import make_dataset
from diffdrl.diffusion.draws import StepDraws
from diffdrl.models import registry
from diffdrl.models.vae import BetaVAE, FactorVAE
from diffdrl.models.vae_losses import bernoulli_nll, permute_dims, total_correlation
from diffdrl.training.config import ConfigError, load_config
from diffdrl.training.trainer import Trainer, train
from helpers.resume import assert_resumes_bit_exactly
from helpers.tiny import TINY

NAMES = ("betavae", "betatcvae", "factorvae")
# tiny-cpu's test overrides for data and training; the model keys there are EncDiff's
TRAIN = [o for o in TINY if o.startswith(("data.", "train."))]
SMALL = ["model.units=3", "model.channels=[8,8]", "model.hidden=16"]
SMALL_DISCRIMINATOR = ["model.discriminator_width=16", "model.discriminator_layers=2"]


def tiny_vae(name: str, *overrides: str):
    extra = SMALL_DISCRIMINATOR if name == "factorvae" else []
    return load_config(f"tiny-cpu-{name}", [*TRAIN, *SMALL, *extra, *overrides])


def images(n: int, resolution: int = 16, seed: int = 0) -> np.ndarray:
    return make_dataset("synth-shapes3d", None, resolution).sample(n, np.random.default_rng(seed))[1]


def as_input(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(x).permute(0, 3, 1, 2).float() / 127.5 - 1


# -- presets and architecture -----------------------------------------------------------------


def test_presets_carry_the_literature_defaults():
    expected = {"betavae": ("beta", 4.0), "betatcvae": ("beta", 6.0), "factorvae": ("gamma", 10.0)}
    for name, (key, value) in expected.items():
        tiny, paper = load_config(f"tiny-cpu-{name}"), load_config(f"paper-{name}")
        for config in (tiny, paper):
            assert config.model.name == name and config.model.units == 10
            assert getattr(config.model, key) == value
            assert (config.train.batch_size, config.train.lr, config.train.ema_decay) == (64, 1e-4, 0.0)
        assert (tiny.data.resolution, paper.data.resolution) == (32, 64)
        assert paper.train.steps == 300_000
    factor = load_config("paper-factorvae").model
    assert (factor.discriminator_lr, factor.discriminator_betas) == (1e-4, (0.5, 0.9))


def _layers(net, kind):
    return [(m.in_channels, m.out_channels) for m in net if isinstance(m, kind)]


def test_architecture_matches_disentanglement_lib_at_64():
    model = registry.build(load_config("paper-factorvae").model, resolution=64)
    convs = [m for m in model.encoder if isinstance(m, torch.nn.Conv2d)]
    assert all(c.kernel_size == (4, 4) and c.stride == (2, 2) for c in convs)
    assert _layers(model.encoder, torch.nn.Conv2d) == [(3, 32), (32, 32), (32, 64), (64, 64)]
    linears = [(m.in_features, m.out_features) for m in model.encoder if isinstance(m, torch.nn.Linear)]
    assert linears == [(1024, 256), (256, 20)]
    assert _layers(model.decoder, torch.nn.ConvTranspose2d) == [(64, 64), (64, 32), (32, 32), (32, 3)]
    linears = [(m.in_features, m.out_features) for m in model.discriminator if isinstance(m, torch.nn.Linear)]
    assert linears == [(10, 1000)] + [(1000, 1000)] * 5 + [(1000, 2)]
    slopes = [m.negative_slope for m in model.discriminator if isinstance(m, torch.nn.LeakyReLU)]
    assert slopes == [0.2] * 6
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    assert model.encode(x).shape == (2, 10) and model.decode(torch.zeros(2, 10)).shape == x.shape


def test_32x32_drops_the_first_conv_and_keeps_the_bottleneck():
    model = registry.build(load_config("tiny-cpu-betavae").model, resolution=32)
    assert _layers(model.encoder, torch.nn.Conv2d) == [(3, 32), (32, 64), (64, 64)]
    assert _layers(model.decoder, torch.nn.ConvTranspose2d) == [(64, 64), (64, 32), (32, 3)]
    assert model.encode(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("resolution", [4, 24, 128])
def test_unsupported_resolutions_are_rejected(resolution):
    with pytest.raises(ValueError, match=f"data.resolution .* got {resolution}"):
        registry.build(load_config("tiny-cpu-betavae").model, resolution=resolution)


# -- the model contract -------------------------------------------------------------------------


def test_encode_accepts_uint8_images_and_checks_shape():
    model = registry.build(tiny_vae("betavae").model, resolution=16).eval()
    x = images(3)
    units = model.encode(x)
    assert units.shape == (3, 3)
    torch.testing.assert_close(units, model.encode(as_input(x)))
    with pytest.raises(ValueError, match="expected images of shape"):
        model.encode(x[:, :8])
    recon = model.reconstruct(x)
    assert recon.shape == (3, 3, 16, 16) and recon.min() >= -1 and recon.max() <= 1


@pytest.mark.parametrize("name", NAMES)
def test_loss_is_reproducible_with_a_generator_and_reports_its_terms(name):
    model = registry.build(tiny_vae(name).model, resolution=16)
    x = as_input(images(8))
    a, parts = model(x, draws=StepDraws.seeded(1, len(x)))
    terms = {k: v.item() for k, v in parts.items()}
    b, _ = model(x, draws=StepDraws.seeded(1, len(x)))
    c, _ = model(x, draws=StepDraws.seeded(2, len(x)))
    assert a.item() == b.item() != c.item()
    expected = {"betavae": set(), "betatcvae": {"tc"}, "factorvae": {"tc", "discriminator"}}[name]
    assert set(terms) == {"reconstruction", "kl"} | expected
    assert terms["reconstruction"] > 0 and terms["kl"] >= 0


def test_beta_scales_the_kl_only():
    x = as_input(images(4))
    losses = {}
    for beta in (0.0, 3.0):
        torch.manual_seed(0)
        model = BetaVAE(tiny_vae("betavae", f"model.beta={beta}").model, resolution=16)
        loss, terms = model(x, draws=StepDraws.seeded(0, len(x)))
        losses[beta] = loss.item()
    assert losses[3.0] - losses[0.0] == pytest.approx(3.0 * terms["kl"].item(), rel=1e-4)


@pytest.mark.parametrize("name", NAMES)
def test_loss_falls_on_a_fixed_batch(name):
    torch.manual_seed(0)
    model = registry.build(tiny_vae(name).model, resolution=16)
    groups = model.param_groups(1e-2) if hasattr(model, "param_groups") else model.parameters()
    optimizer = torch.optim.AdamW(groups, lr=1e-2, weight_decay=0.0)
    x = as_input(images(16))
    p = ((x + 1) / 2).clamp(1e-6, 1 - 1e-6)
    floor = bernoulli_nll(torch.log(p / (1 - p)), x).mean().item()  # perfect Bernoulli reconstruction
    losses = []
    for step in range(30):
        loss, _ = model(x, draws=StepDraws.seeded(step, len(x)))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item() - floor)
    assert np.mean(losses[-5:]) < 0.9 * np.mean(losses[:5])  # what is left to learn shrinks


# -- the estimators -----------------------------------------------------------------------------


def test_total_correlation_of_known_distributions():
    g = torch.Generator().manual_seed(0)
    batch, units = 2000, 4
    zero = torch.zeros(batch, units)
    # independent units: q(z) = N(0, 2I) factorises, TC = 0
    mu = torch.randn(batch, units, generator=g)
    independent = total_correlation(mu + torch.randn(mu.shape, generator=g), mu, zero)
    # every unit's mean is one shared variable: q(z) = N(0, I + 11^T), TC = (N log 2 - log(1 + N)) / 2
    shared = torch.randn(batch, 1, generator=g).expand(batch, units)
    correlated = total_correlation(shared + torch.randn(mu.shape, generator=g), shared, zero)
    # duplicated units (posterior std 0.01): TC is as large as a batch can show
    tight = torch.full((batch, units), math.log(1e-4))
    duplicated = total_correlation(shared + 0.01 * torch.randn(mu.shape, generator=g), shared, tight)
    assert abs(independent.item()) < 0.02
    assert correlated.item() == pytest.approx((units * math.log(2) - math.log(1 + units)) / 2, abs=0.03)
    assert duplicated.item() > 10.0


def test_permutation_keeps_each_column_and_breaks_dependence():
    a = torch.randn(1000, 1, generator=torch.Generator().manual_seed(0))
    z = torch.cat([a, a, 2 * a], dim=1)  # (B, 3), perfectly correlated columns
    permuted = permute_dims(z, torch.Generator().manual_seed(1))
    assert torch.equal(permuted.sort(0).values, z.sort(0).values)  # same multiset per column
    corr = torch.corrcoef(permuted.T)
    assert corr[0, 1].abs() < 0.1 and corr[0, 2].abs() < 0.1 and corr[1, 2].abs() < 0.1
    assert torch.equal(permuted, permute_dims(z, torch.Generator().manual_seed(1)))


def _grads(module):
    return [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in module.parameters()]


def test_factorvae_tc_term_trains_the_vae_only_and_the_discriminator_loss_the_discriminator_only():
    model = registry.build(tiny_vae("factorvae").model, resolution=16)
    z = torch.randn(8, 3, requires_grad=True)
    tc = model.tc_estimate(z)
    grads = torch.autograd.grad(tc, [z, *model.discriminator.parameters()], allow_unused=True)
    assert grads[0].abs().sum() > 0 and all(g is None for g in grads[1:])
    assert torch.autograd.grad(model.discriminator_loss(z), z, allow_unused=True) == (None,)
    # in the full loss, gamma changes the encoder's gradient but not the discriminator's
    x = as_input(images(8))
    seen = {}
    for gamma in (0.0, 10.0):
        model.config.gamma = gamma
        model.zero_grad()
        model(x, draws=StepDraws.seeded(0, len(x)))[0].backward()
        seen[gamma] = _grads(model.discriminator), _grads(model.encoder)
    assert all(torch.equal(a, b) for a, b in zip(seen[0.0][0], seen[10.0][0], strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(seen[0.0][1], seen[10.0][1], strict=True))


def test_factorvae_parameter_groups():
    model = FactorVAE(tiny_vae("factorvae").model, resolution=16)
    vae, discriminator = model.param_groups(3e-4)
    assert vae["lr"] == 3e-4 and "betas" not in vae
    assert discriminator["betas"] == (0.5, 0.9) and discriminator["weight_decay"] == 0.0
    assert discriminator["lr"] == 1e-4
    ids = [id(p) for g in (vae, discriminator) for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())


# -- configs ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, override, key",
    [
        ("betavae", "model.beta=-1", "model.beta"),
        ("betavae", "model.units=0", "model.units"),
        ("betavae", "model.channels=[]", "model.channels"),
        ("betavae", "model.hidden=0", "model.hidden"),
        ("betatcvae", "model.beta=-0.5", "model.beta"),
        ("factorvae", "model.gamma=-1", "model.gamma"),
        ("factorvae", "model.discriminator_lr=0", "model.discriminator_lr"),
        ("factorvae", "model.discriminator_betas=[0.5]", "model.discriminator_betas"),
        ("factorvae", "model.discriminator_layers=0", "model.discriminator_layers"),
        ("betavae", "model.gamma=1", "model.gamma"),  # unknown for beta-VAE
    ],
)
def test_invalid_values_name_the_key(name, override, key):
    with pytest.raises(ConfigError, match=key):
        load_config(f"tiny-cpu-{name}", [override])


# -- through the trainer --------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_baselines_train_and_load_back(name, tmp_path):
    result = train(tiny_vae(name, "train.steps=3"), tmp_path / "run", progress=False)
    assert result.step == 3 and math.isfinite(result.loss)
    rows = [json.loads(r) for r in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert {"reconstruction", "kl"} <= set(rows[-1])
    model = load_model(tmp_path / "run")
    units = model.encode(images(5))
    assert units.shape == (5, 3) and torch.isfinite(units).all()
    # ema_decay 0 in the presets: the EMA weights are the trained weights
    raw = load_model(tmp_path / "run", weights="model")
    assert all(torch.equal(v, raw.state_dict()[k]) for k, v in model.state_dict().items())


def test_trainer_gives_the_discriminator_its_own_optimiser_settings(tmp_path):
    trainer = Trainer(tiny_vae("factorvae", "train.steps=1"), tmp_path / "run", progress=False)
    vae, discriminator = trainer.optimizer.param_groups
    assert vae["betas"] == (0.9, 0.999) and discriminator["betas"] == (0.5, 0.9)
    assert (vae["base_lr"], discriminator["base_lr"]) == (1e-4, 1e-4)


def test_factorvae_resume_is_bit_exact(tmp_path):
    assert_resumes_bit_exactly(lambda steps: tiny_vae("factorvae", f"train.steps={steps}"), tmp_path)
