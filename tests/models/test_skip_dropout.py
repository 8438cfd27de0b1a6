import copy

import pytest
import torch

from diffdrl.models.denoiser import Denoiser, DenoiserConfig
from diffdrl.models.skip_dropout import SkipDropoutConfig, install_skip_dropout

RES = 8


def tiny_unet():
    torch.manual_seed(0)
    config = DenoiserConfig(
        channels=(8, 16, 16), cross_attention=(False, True, False), heads=2, norm_groups=4, layers_per_block=1
    )
    return Denoiser(config, token_dim=4, resolution=RES).unet


def inputs(batch=2):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(batch, 3, RES, RES, generator=g)
    t = torch.randint(0, 1000, (batch,), generator=g)
    tokens = torch.randn(batch, 3, 4, generator=g)
    return x, t, tokens


def run(unet, x, t, tokens):
    return unet(x, t, encoder_hidden_states=tokens, return_dict=False)[0]


def capture_skips(unet, prepend):
    """Record the skips each up block receives, before (prepend) or after the installed hooks."""
    seen = {}
    for j, block in enumerate(unet.up_blocks):
        level = len(unet.up_blocks) - 1 - j

        def hook(module, args, kwargs, level=level):
            seen[level] = [s.clone() for s in kwargs["res_hidden_states_tuple"]]

        block.register_forward_pre_hook(hook, with_kwargs=True, prepend=prepend)
    return seen


def test_config_is_validated():
    with pytest.raises(ValueError, match="skip_dropout.rate"):
        SkipDropoutConfig(rate=1.0)
    with pytest.raises(ValueError, match="skip_dropout.levels"):
        SkipDropoutConfig(levels=(0, 0))
    with pytest.raises(ValueError, match="skip_dropout.levels"):
        install_skip_dropout(tiny_unet(), SkipDropoutConfig(rate=0.2, levels=(3,)))


def test_levels_are_resolutions_of_the_skips():
    unet = tiny_unet()
    seen = capture_skips(unet, prepend=False)
    run(unet, *inputs())
    for level, skips in seen.items():
        assert all(s.shape[-1] == RES // 2**level for s in skips)


def test_eval_mode_is_identical_to_an_unmodified_unet():
    plain = tiny_unet()
    dropped = copy.deepcopy(plain)
    assert len(install_skip_dropout(dropped, SkipDropoutConfig(rate=0.5, levels=(0, 1, 2)))) == 3
    plain.eval(), dropped.eval()
    with torch.no_grad():
        assert torch.equal(run(plain, *inputs()), run(dropped, *inputs()))


def test_training_drops_whole_channels_at_the_rate_on_the_chosen_levels_only():
    rate = 0.3
    unet = tiny_unet()
    install_skip_dropout(unet, SkipDropoutConfig(rate=rate, levels=(0, 1)))
    before, after = capture_skips(unet, prepend=True), capture_skips(unet, prepend=False)
    reference = tiny_unet()  # same weights, no skip dropout
    plain = capture_skips(reference, prepend=True)
    unet.train(), reference.train()
    torch.manual_seed(0)
    with torch.no_grad():
        run(unet, *inputs(batch=64))
        run(reference, *inputs(batch=64))
    dropped = []
    for level in (0, 1, 2):
        for orig, new, ref in zip(before[level], after[level], plain[level], strict=True):
            assert torch.equal(orig, ref)  # the down path itself is untouched
            if level == 2:
                assert torch.equal(orig, new)
                continue
            zero = (new == 0).flatten(2).all(-1)  # (B, C) whole channel zeroed
            dropped.append(zero.flatten())
            kept = ~zero
            torch.testing.assert_close(new[kept], orig[kept] / (1 - rate))
    fraction = torch.cat(dropped).float().mean().item()
    assert abs(fraction - rate) < 0.04, fraction  # 2560 channel draws: std 0.009


def test_rate_zero_installs_nothing():
    unet = tiny_unet()
    assert install_skip_dropout(unet, SkipDropoutConfig()) == []


def test_a_deep_copy_keeps_the_dropout():
    unet = tiny_unet()
    install_skip_dropout(unet, SkipDropoutConfig(rate=0.5, levels=(0,)))
    clone = copy.deepcopy(unet)
    after = capture_skips(clone, prepend=False)
    clone.train()
    with torch.no_grad():
        run(clone, *inputs(batch=8))
    assert any((s == 0).flatten(2).all(-1).any() for s in after[0])


def test_handles_remove_the_dropout():
    plain = tiny_unet()
    dropped = copy.deepcopy(plain)
    for handle in install_skip_dropout(dropped, SkipDropoutConfig(rate=0.5)):
        handle.remove()
    plain.train(), dropped.train()
    with torch.no_grad():
        assert torch.equal(run(plain, *inputs()), run(dropped, *inputs()))
