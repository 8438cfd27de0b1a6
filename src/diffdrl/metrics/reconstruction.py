"""Reconstruction quality: compare images with their reconstructions (``viz.render.reconstruct``
encodes them and renders the units back: sampler, decoder or VAE decode, whatever the model has).

MSE and PSNR on [0, 1]; SSIM with a Gaussian window (11 x 11, sigma 1.5, constants K1 = 0.01,
K2 = 0.03 of Wang et al. 2004) per channel, averaged; the protocol of METRICS.md. The default
sampling follows EncDiff (DDIM, eta 1, from fresh noise: what the tokens alone carry).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).float()  # (size, size)


def ssim(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Per-image SSIM (B,) of images (B, C, H, W) in [0, data_range] ('valid' windows only)."""
    c = a.shape[1]
    w = _gaussian_window().to(a)[None, None].repeat(c, 1, 1, 1)  # (C, 1, 11, 11), depthwise
    if min(a.shape[2:]) < w.shape[-1]:
        raise ValueError(f"SSIM needs images of at least 11x11, got {tuple(a.shape[2:])}")

    def blur(x):
        return F.conv2d(x, w, groups=c)

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return s.mean(dim=(1, 2, 3))


def psnr(reference: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR (B,) in dB of images (B, ...) in [0, 1] (identical images: 100 dB)."""
    mse = (reference - output).square().flatten(1).mean(1)
    return 10 * torch.log10(1.0 / mse.clamp(min=1e-10))


def image_similarity(reference: torch.Tensor, output: torch.Tensor) -> dict[str, float]:
    """MSE, PSNR (dB) and SSIM of images in [0, 1], averaged over the batch."""
    mse = (reference - output).square().mean(dim=(1, 2, 3))
    return {
        "reconstruction.mse": float(mse.mean()),
        "reconstruction.psnr": float(psnr(reference, output).mean()),
        "reconstruction.ssim": float(ssim(reference, output).mean()),
    }
