"""Diff-AE's latent DDIM: unconditional draws of z_sem, so a trained Diff-AE makes new images (FID).

Diff-AE (Preechakul et al., CVPR 2022, sec. 3.3) fits, after the autoencoder, a second diffusion
model on the z-normalised z_sem of the training images; a draw z ~ that model gives
z_sem = z std + mean, and the autoencoder's conditional DDIM turns z_sem into an image. The
reference (BASELINES.md): an MLP with skips, 10 layers x 2048, L1 on epsilon, T = 1000 with a
constant beta 0.008, sampled in 20 DDIM steps. Without the z-normalisation the draws miss the codes'
scale (phizaz/diffae #38).

    z = (z_sem - mean) / std                                 (per unit, over the fitted images)
    eps_phi(z_t, t): layer i  h = SiLU(W_i [h, z_t] (1 + s_i(t)))    (z_t skipped into each layer)
    loss = |eps - eps_phi(z_t, t)|

Deviations: a CPU-sized MLP by default (4 x 256; ``layers`` and ``width`` restore the reference);
the time embedding scales each layer (the reference's ``condition_bias`` 1 form); no LayerNorm
after each layer's scale: on a code of a few units it discards the code's norm, which the ideal
denoiser (for Gaussian codes, eps = sqrt(1 - abar_t) z_t) needs, and the draws come out too wide
(the reference's 512-d z_sem hides that).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from torch import nn

from diffdrl.atomic import atomic_write, atomic_write_text
from diffdrl.diffusion.samplers import sample


@dataclass
class LatentDDIMConfig:
    """The latent DDIM and how it is fitted (reference values in the module docstring)."""

    layers: int = 4  # Diff-AE: 10
    width: int = 256  # Diff-AE: 2048
    timesteps: int = 1000
    beta: float = 0.008  # constant
    train_steps: int = 2000
    batch_size: int = 256
    lr: float = 1.0e-3
    fit_images: int = 10_000  # images encoded once to fit on
    sample_steps: int = 20  # DDIM steps per draw

    def __post_init__(self):
        for key in (
            "layers",
            "width",
            "timesteps",
            "train_steps",
            "batch_size",
            "fit_images",
            "sample_steps",
        ):
            if getattr(self, key) < 1:
                raise ValueError(f"latent_ddim.{key} must be >= 1, got {getattr(self, key)}")
        if not 0.0 < self.beta < 1.0:
            raise ValueError(f"latent_ddim.beta must be in (0, 1), got {self.beta}")
        if not self.lr > 0:
            raise ValueError(f"latent_ddim.lr must be > 0, got {self.lr}")

    def betas(self) -> np.ndarray:
        return np.full(self.timesteps, self.beta, dtype=np.float64)


class LatentDenoiser(nn.Module):
    """eps_phi(z_t, t) for normalised codes (B, K): the skip MLP of the module docstring."""

    def __init__(self, config: LatentDDIMConfig, units: int):
        super().__init__()
        self.time_proj = Timesteps(64, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embedding = TimestepEmbedding(64, config.width)
        widths = [units, *[config.width + units] * (config.layers - 1)]
        self.linears = nn.ModuleList(nn.Linear(w, config.width) for w in widths)
        self.scales = nn.ModuleList(nn.Linear(config.width, config.width) for _ in widths)
        self.out = nn.Linear(config.width + units, units)

    def forward(self, z_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        temb = nn.functional.silu(self.time_embedding(self.time_proj(t).to(z_t.dtype)))  # (B, W)
        h = z_t
        for i, (linear, scale) in enumerate(zip(self.linears, self.scales, strict=True)):
            h = linear(h if i == 0 else torch.cat([h, z_t], 1))
            h = nn.functional.silu(h * (1 + scale(temb)))
        return self.out(torch.cat([h, z_t], 1))  # (B, K)


class LatentDDIM(nn.Module):
    """The fitted latent DDIM with its normalisation; ``draw(n)`` gives z_sem (n, K)."""

    def __init__(self, config: LatentDDIMConfig, units: int):
        super().__init__()
        self.config = config
        self.denoiser = LatentDenoiser(config, units)
        self.register_buffer("mean", torch.zeros(units))
        self.register_buffer("std", torch.ones(units))
        alpha_bar = np.cumprod(1.0 - config.betas())
        self.register_buffer("alpha_bar", torch.tensor(alpha_bar, dtype=torch.float32))

    def loss(self, z_sem: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """L1 on epsilon at uniform t for codes z_sem (B, K) (normalised here)."""
        z0 = (z_sem - self.mean) / self.std
        t = torch.randint(0, self.config.timesteps, (len(z0),), generator=generator, device=z0.device)
        eps = torch.randn(z0.shape, generator=generator, device=z0.device)
        abar = self.alpha_bar[t][:, None]
        z_t = abar.sqrt() * z0 + (1 - abar).sqrt() * eps
        return (self.denoiser(z_t, t) - eps).abs().mean()

    @torch.no_grad()
    def draw(self, n: int, seed: int = 0, steps: int | None = None) -> torch.Tensor:
        """n codes z_sem (n, K) from DDIM (eta 0) from N(0, I) drawn from ``seed``, de-normalised."""
        device = self.mean.device
        gen = torch.Generator(device).manual_seed(seed)
        z_T = torch.randn((n, len(self.mean)), generator=gen, device=device)
        steps = self.config.sample_steps if steps is None else steps
        z = sample(self.denoiser, z_T, self.config.betas(), "ddim", steps, 0.0, gen, clamp=False)
        return z * self.std + self.mean


def fit_latent_ddim(model, data, config: LatentDDIMConfig | None = None, seed: int = 0) -> LatentDDIM:
    """Fit the latent DDIM of a trained Diff-AE ``model`` on the codes of ``config.fit_images``
    images of the ground-truth dataset ``data`` (encoded once); in eval mode on the model's device."""
    from diffdrl.models.representation import encode_images

    config = config or LatentDDIMConfig()
    _, images = data.sample(config.fit_images, np.random.default_rng(seed))
    codes = torch.from_numpy(encode_images(model.eval(), images))  # (n, K)
    return fit_on_codes(codes.to(next(model.parameters()).device), config, seed)


def fit_on_codes(codes: torch.Tensor, config: LatentDDIMConfig | None = None, seed: int = 0) -> LatentDDIM:
    """Fit a latent DDIM on codes (n, K): z-normalise them, then ``train_steps`` AdamW steps on
    batches drawn with replacement; returns it in eval mode on the codes' device."""
    config = config or LatentDDIMConfig()
    device = codes.device
    torch.manual_seed(seed)
    ddim = LatentDDIM(config, codes.shape[1]).to(device)
    ddim.mean.copy_(codes.mean(0))
    ddim.std.copy_(codes.std(0).clamp_min(1e-6))  # a dead unit stays put instead of dividing by 0
    optimizer = torch.optim.AdamW(ddim.denoiser.parameters(), lr=config.lr, weight_decay=0.0)
    gen = torch.Generator(device).manual_seed(seed)
    for _ in range(config.train_steps):
        batch = codes[torch.randint(0, len(codes), (config.batch_size,), generator=gen, device=device)]
        loss = ddim.loss(batch, gen)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return ddim.eval()


def save_latent_ddim(ddim: LatentDDIM, folder: str | Path) -> Path:
    """Write ``folder/latent_ddim.safetensors`` and its ``latent_ddim.json`` (config, units)
    atomically; the safetensors path."""
    from safetensors.torch import save

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in ddim.state_dict().items()}
    info = {"units": len(ddim.mean), "config": asdict(ddim.config)}
    atomic_write_text(folder / "latent_ddim.json", json.dumps(info, indent=1))
    return atomic_write(folder / "latent_ddim.safetensors", lambda f: f.write(save(tensors)))


def load_latent_ddim(folder: str | Path, device="cpu") -> LatentDDIM:
    """The latent DDIM ``save_latent_ddim`` wrote in ``folder``, in eval mode; a missing one is a
    ``FileNotFoundError`` naming how to make it."""
    from safetensors.torch import load_file

    folder = Path(folder)
    if not (folder / "latent_ddim.safetensors").is_file():
        raise FileNotFoundError(
            f"{folder} has no latent DDIM (latent_ddim.safetensors): fit one with "
            "diffdrl.models.latent_ddim.fit_latent_ddim and save_latent_ddim"
        )
    info = json.loads((folder / "latent_ddim.json").read_text())
    ddim = LatentDDIM(LatentDDIMConfig(**info["config"]), info["units"])
    ddim.load_state_dict(load_file(folder / "latent_ddim.safetensors"))
    return ddim.to(device).eval()


@torch.no_grad()
def unconditional_images(model, ddim: LatentDDIM, n: int, seed: int = 0, **sampling) -> torch.Tensor:
    """n new images (n, C, H, W) in [-1, 1] from a Diff-AE ``model`` and its latent DDIM: z_sem
    drawn from ``ddim`` (seed ``seed``), then the model's conditional sampler (``sampling``: its
    ``generate`` options, e.g. ``sampler``, ``steps``, ``eta``) from noise drawn from ``seed``."""
    return model.generate(model.tokens(ddim.draw(n, seed)), seed=seed, **sampling)
