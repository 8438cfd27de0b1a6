import numpy as np
import pytest
import torch

from diffdrl.diffusion.schedule import make_betas
from diffdrl.hspace.asymmetric import edit_sample
from diffdrl.hspace.bottleneck import HSpace, denoiser_of, unet_of
from diffdrl.hspace.classifier import ClassifierConfig, FactorClassifier
from diffdrl.hspace.delta import DeltaBlock, batched, scaled, train_delta


def _setup(model):
    x_T = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    tokens = model.tokens(model.encode(x_T))
    clf = FactorClassifier(ClassifierConfig(("a", "b"), (3, 4), resolution=16, width=8)).eval()
    return x_T, tokens.detach(), clf


@pytest.mark.parametrize("tiny_model", ["cross_attention"], indirect=True)
def test_untrained_block_is_no_edit_and_coefficient_is_linear(tiny_model):
    x_T, tokens, _ = _setup(tiny_model)
    space, betas = HSpace(unet_of(tiny_model)), make_betas(tiny_model.config.schedule)
    block = DeltaBlock(16, groups=4)
    denoise = denoiser_of(tiny_model, tokens)
    with torch.no_grad():
        plain = edit_sample(space, denoise, x_T, betas, steps=5)
        zero = edit_sample(space, denoise, x_T, betas, scaled(block, 1.0, 5, 5), steps=5, t_edit=10)
    assert torch.equal(plain, zero)
    torch.nn.init.normal_(block.out.weight)
    h, t = torch.randn(2, 16, 8, 8), torch.tensor([3, 30])
    with torch.no_grad():
        torch.testing.assert_close(scaled(block, -1.0, 40, 20)(h, t), -2.0 * block(h, t))


@pytest.mark.parametrize("tiny_model", ["cross_attention"], indirect=True)
def test_training_raises_the_target_probability_and_checks_its_arguments(tiny_model):
    x_T, tokens, clf = _setup(tiny_model)
    space, betas = HSpace(unet_of(tiny_model)), make_betas(tiny_model.config.schedule)
    common = dict(t_edit=20, steps=5, batch_size=4)
    with torch.no_grad():
        p0 = clf.split(clf(x_T.clamp(-1, 1)))[1].softmax(1)[:, 3].mean()
    block, info = train_delta(
        space,
        batched(tiny_model, tokens),
        x_T,
        betas,
        clf,
        "b",
        3,
        epochs=15,
        lambda_recon=0.0,
        lr=1e-2,
        **common,
    )
    assert info.factor == "b" and info.value == 3 and np.isfinite(info.final_loss)
    assert info.final_target_prob > float(p0)
    with pytest.raises(ValueError, match="unknown factor 'z'"):
        train_delta(space, batched(tiny_model, tokens), x_T, betas, clf, "z", 0, **common)
    with pytest.raises(ValueError, match="t_edit must be in"):
        train_delta(space, batched(tiny_model, tokens), x_T, betas, clf, "a", 0, t_edit=99, steps=5)
    noisy = FactorClassifier(ClassifierConfig(("a",), (3,), resolution=16, width=8, noisy=True))
    with pytest.raises(ValueError, match="noise-free classifier"):
        train_delta(space, batched(tiny_model, tokens), x_T, betas, noisy, "a", 0, **common)
