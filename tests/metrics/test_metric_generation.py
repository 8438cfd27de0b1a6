import warnings

import numpy as np
import pytest
import torch

from diffdrl.metrics.generation import fid, frechet_distance, load_feature_network, lpips


class MeanColour(torch.nn.Module):
    """A stand-in 'Inception': per-channel mean and std of a uint8 image."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float() / 255.0
        return torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3))], dim=1)


class L1Distance(torch.nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a - b).abs().mean(dim=(1, 2, 3))


def scripted(module, tmp_path, name):
    path = tmp_path / name
    with warnings.catch_warnings():  # TorchScript is deprecated in torch 2.13 but still what FID files are
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(module).save(str(path))
        return load_feature_network(path, name)


def test_exported_programs_load_too(tmp_path):
    path = tmp_path / "inception.pt2"
    torch.export.save(
        torch.export.export(MeanColour(), (torch.zeros(2, 3, 8, 8, dtype=torch.uint8),)), str(path)
    )
    net = load_feature_network(path, "Inception")
    assert net(torch.zeros(2, 3, 8, 8, dtype=torch.uint8)).shape == (2, 6)


def test_frechet_distance_closed_form():
    mu1, mu2 = np.zeros(3), np.array([1.0, 2.0, 0.0])
    cov1, cov2 = np.eye(3), 4 * np.eye(3)
    # |mu1 - mu2|^2 + tr(I + 4I - 2 * 2I) = 5 + 3
    assert frechet_distance(mu1, cov1, mu2, cov2) == pytest.approx(8.0)
    assert frechet_distance(mu1, cov1, mu1, cov1) == pytest.approx(0.0, abs=1e-9)


def test_fid_with_a_user_network(tmp_path):
    net = scripted(MeanColour(), tmp_path, "inception.pt")
    rng = np.random.default_rng(0)
    real = rng.integers(0, 200, (300, 8, 8, 3), dtype=np.uint8)
    same = rng.integers(0, 200, (300, 8, 8, 3), dtype=np.uint8)
    brighter = (same.astype(np.int32) + 50).clip(0, 255).astype(np.uint8)
    assert fid(net, real, same) < 0.01 < fid(net, real, brighter)


def test_lpips_with_a_user_network(tmp_path):
    net = scripted(L1Distance(), tmp_path, "lpips.pt")
    images = np.random.default_rng(0).integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
    assert lpips(net, images, images) == 0.0
    assert lpips(net, images, 255 - images) > 0.1
    with pytest.raises(ValueError, match="paired images"):
        lpips(net, images, images[:2])


def test_missing_or_wrong_weights_files_are_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="Inception weights not found"):
        load_feature_network(tmp_path / "nope.pt", "Inception")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a torchscript archive")
    with pytest.raises(ValueError, match="is not a TorchScript or torch.export Inception network"):
        load_feature_network(bad, "Inception")
