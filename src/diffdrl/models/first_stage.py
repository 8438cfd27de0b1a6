"""First-stage autoencoders for latent diffusion: a VQ (both papers' choice) and a KL variant,
trained here by the ordinary trainer (``model.name: vq | kl``; ``diffdrl train-autoencoder``).

The networks are diffusers' ``VQModel`` and ``AutoencoderKL`` (``self.net``), at the released
shapes (METHODS.md, "first stage"; LDM ``configs/autoencoder/*_vq_4_16.yaml``): ch 32, ch_mult
[1, 2, 4] -> ``channels`` (32, 64, 128), 2 res blocks, z 3 channels, embed_dim 3, codebook 2048;
two downsamplings, f = 4, so 64x64x3 -> 3x16x16. A trained net saves with ``save_pretrained``
(``training/first_stage_export.py``) and is what EncDiff's ``model.first_stage.path`` loads.

Loss, per image batch x and reconstruction x_hat:

    l1 |x - x_hat| + l2 |x - x_hat|^2 [+ lpips LPIPS(x, x_hat)]      (means over pixels)
    VQ: + codebook_weight (commitment [+ codebook]) (models/vq.py)
    KL: + kl_weight KL(q(z|x) || N(0, I)) / (C H W)    (LDM sums its losses over pixels; dividing the
        KL by the pixel count keeps LDM's kl_weight meaning with our per-pixel means)
    [+ adaptive adversarial term and the discriminator's hinge loss from ``discriminator.start``]

Deviations: LDM's VQ loss is L1 + LPIPS (VGG weights, downloaded) with the discriminator from step
0; here L1 + L2, LPIPS only from a user-supplied TorchScript/.pt2 network (``lpips.path``, the
same kind of file as ``metrics/generation.py``'s), and the discriminator optional. LDM keeps the
mid-block attention of its encoder and decoder (``attn_resolutions: []`` removes only the others);
so does ``mid_attention``. Latents for diffusion: VQ, the pre-quantisation output (LDM's
``VQModelInterface``), quantised again when decoding; KL, the posterior mean (LDM samples), so
that encoding is deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from diffusers import AutoencoderKL, VQModel
from torch import nn

from diffdrl.diffusion.draws import StepDraws, step_draws
from diffdrl.metrics.reconstruction import ssim
from diffdrl.models.patch_discriminator import DiscriminatorConfig, adversarial_terms, patch_discriminator
from diffdrl.models.vq import QuantizerConfig, VectorQuantizer


@dataclass
class LPIPSConfig:
    """A perceptual term from a user-supplied network ((x, y) in [-1, 1] -> distances (B,)); none
    is downloaded. ``path`` None: no LPIPS term."""

    path: str | None = None
    weight: float = 1.0

    def __post_init__(self):
        if not self.weight >= 0:
            raise ValueError(f"lpips.weight must be >= 0, got {self.weight}")


@dataclass
class AutoencoderConfig:
    """Shape and reconstruction loss shared by both kinds (defaults: the released f = 4 stage)."""

    name: str = "vq"
    channels: tuple[int, ...] = (32, 64, 128)  # one level per entry; f = 2^(levels - 1)
    layers_per_block: int = 2
    latent_channels: int = 3
    norm_groups: int = 32
    mid_attention: bool = True
    l1_weight: float = 1.0
    l2_weight: float = 1.0
    betas: tuple[float, ...] = (0.5, 0.9)  # Adam betas of VQGAN / LDM's first stage (and its discriminator)
    lpips: LPIPSConfig = field(default_factory=LPIPSConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)

    def __post_init__(self):
        if not self.channels or any(c < 1 or c % self.norm_groups for c in self.channels):
            raise ValueError(
                f"model.channels must be positive multiples of model.norm_groups={self.norm_groups}, "
                f"got {self.channels}"
            )
        for key in ("layers_per_block", "latent_channels"):
            if getattr(self, key) < 1:
                raise ValueError(f"model.{key} must be >= 1, got {getattr(self, key)}")
        if min(self.l1_weight, self.l2_weight) < 0 or self.l1_weight + self.l2_weight == 0:
            raise ValueError(
                f"model.l1_weight and model.l2_weight must be >= 0, not both 0; got "
                f"{self.l1_weight}, {self.l2_weight}"
            )
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"model.betas must be two numbers in [0, 1), got {self.betas}")

    @property
    def factor(self) -> int:
        return 2 ** (len(self.channels) - 1)

    def diffusers_shape(self, channels: int) -> dict:
        levels = len(self.channels)
        return dict(
            in_channels=channels,
            out_channels=channels,
            down_block_types=("DownEncoderBlock2D",) * levels,
            up_block_types=("UpDecoderBlock2D",) * levels,
            block_out_channels=tuple(self.channels),
            layers_per_block=self.layers_per_block,
            latent_channels=self.latent_channels,
            norm_num_groups=self.norm_groups,
            mid_block_add_attention=self.mid_attention,
        )


@dataclass
class VQAutoencoderConfig(AutoencoderConfig):
    name: str = "vq"
    codebook_size: int = 2048  # n_embed
    codebook_weight: float = 1.0
    quantizer: QuantizerConfig = field(default_factory=QuantizerConfig)

    def __post_init__(self):
        super().__post_init__()
        if self.name != "vq":
            raise ValueError(f"VQAutoencoderConfig.name must be 'vq', got {self.name!r}")
        if self.codebook_size < 2:
            raise ValueError(f"model.codebook_size must be >= 2, got {self.codebook_size}")
        if not self.codebook_weight >= 0:
            raise ValueError(f"model.codebook_weight must be >= 0, got {self.codebook_weight}")


@dataclass
class KLAutoencoderConfig(AutoencoderConfig):
    name: str = "kl"
    kl_weight: float = 1e-6  # LDM's kl-f4 / kl-f8 configs

    def __post_init__(self):
        super().__post_init__()
        if self.name != "kl":
            raise ValueError(f"KLAutoencoderConfig.name must be 'kl', got {self.name!r}")
        if not self.kl_weight >= 0:
            raise ValueError(f"model.kl_weight must be >= 0, got {self.kl_weight}")


NO_UNITS = (
    "a first-stage autoencoder ({name}) has no latent units, so metrics and unit pictures do not apply; "
    "`diffdrl report RUN` shows its reconstructions, and `model.first_stage.path=RUN` on an EncDiff "
    "run uses it"
)


class FirstStageAutoencoder(nn.Module):
    """Shared loss, discriminator and statistics; subclasses say how latents are made."""

    is_first_stage = True

    def __init__(self, config: AutoencoderConfig, resolution: int, channels: int = 3):
        super().__init__()
        self.config, self.resolution, self.channels = config, resolution, channels
        if resolution % config.factor:
            raise ValueError(
                f"data.resolution {resolution} is not divisible by the first stage's factor {config.factor}"
            )
        self.net = self._build_net(config.diffusers_shape(channels) | {"sample_size": resolution})
        self.discriminator = (
            patch_discriminator(config.discriminator, channels) if config.discriminator.enabled else None
        )
        self.lpips = None
        if config.lpips.path:
            from diffdrl.metrics.generation import load_feature_network

            self.lpips = [load_feature_network(config.lpips.path, "LPIPS")]  # a list: not our weights
            for p in self.lpips[0].parameters():
                p.requires_grad_(False)
        self.register_buffer("steps_seen", torch.zeros((), dtype=torch.long))  # the discriminator's clock

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        side = self.resolution // self.config.factor
        return (self.config.latent_channels, side, side)

    def encode(self, x):
        raise ValueError(NO_UNITS.format(name=self.config.name))

    def param_groups(self, lr: float) -> list[dict]:
        """Everything at ``lr`` with VQGAN's Adam betas (the trainer's AdamW otherwise)."""
        params = [p for p in self.parameters() if p.requires_grad]
        return [{"params": params, "lr": lr, "betas": tuple(self.config.betas)}]

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """x_hat of images (B, C, H, W) in [-1, 1] through the deterministic latents."""
        return self.decode_latents(self.encode_latents(x))

    def forward(
        self, x0: torch.Tensor, draws: StepDraws | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(loss, terms) for a batch x0 in [-1, 1]: the reconstruction and latent losses (and the
        adversarial ones once the discriminator has started); the terms, detached, include PSNR and
        SSIM of the reconstructions."""
        draws = step_draws(draws, len(x0), x0.device)
        x_hat, extra, terms = self._reconstruct_train(x0, draws)  # extra: the latent's own loss
        diff = (x0 - x_hat).float()
        cfg = self.config
        rec = cfg.l1_weight * diff.abs().mean() + cfg.l2_weight * diff.square().mean()
        terms |= {"l1": diff.abs().mean().detach(), "l2": diff.square().mean().detach()}
        if self.lpips is not None:
            perceptual = self.lpips[0](x0, x_hat).float().mean()
            rec = rec + cfg.lpips.weight * perceptual
            terms["lpips"] = perceptual.detach()
        loss = rec + extra
        adversarial = self.discriminator is not None and int(self.steps_seen) >= cfg.discriminator.start
        if adversarial and self.training and torch.is_grad_enabled():
            last = self.net.decoder.conv_out.weight
            parts = adversarial_terms(self.discriminator, x0, x_hat, rec, last, cfg.discriminator.weight)
            loss = loss + parts["adaptive_weight"] * parts["adversarial"] + parts["discriminator"]
            terms |= {k: v.detach() for k, v in parts.items()}
        if self.training:
            self.steps_seen += 1
        with torch.no_grad():
            a, b = ((v.float().clamp(-1, 1) + 1) / 2 for v in (x0, x_hat))
            mse = (a - b).square().mean(dim=(1, 2, 3))
            terms["psnr"] = (10 * torch.log10(1.0 / mse.clamp(min=1e-10))).mean()
            if min(a.shape[2:]) >= 11:
                terms["ssim"] = ssim(a, b).mean()
        return loss, terms


class VQAutoencoder(FirstStageAutoencoder):
    """The papers' first stage: diffusers' ``VQModel`` with our quantiser on its codebook."""

    def _build_net(self, shape: dict) -> VQModel:
        cfg = self.config
        net = VQModel(**shape, num_vq_embeddings=cfg.codebook_size, vq_embed_dim=cfg.latent_channels)
        self.quantizer = VectorQuantizer(cfg.quantizer, net.quantize.embedding)
        return net

    def encode_latents(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-quantisation latents (B, D, h, w)."""
        return self.net.encode(x).latents

    def decode_latents(self, z: torch.Tensor) -> torch.Tensor:
        z_q = self.quantizer.quantize(z)
        return self.net.decode(z_q, force_not_quantize=True).sample

    def _reconstruct_train(self, x0, draws: StepDraws):
        h = self.net.encode(x0).latents
        z_q, vq_loss = self.quantizer(h, draws.generator)  # restarts: not one draw per sample
        x_hat = self.net.decode(z_q, force_not_quantize=True).sample
        terms = {k: v.detach() for k, v in self.quantizer.last_stats.items()}
        return x_hat, self.config.codebook_weight * vq_loss, terms


class KLAutoencoder(FirstStageAutoencoder):
    """The KL variant: diffusers' ``AutoencoderKL`` (a diagonal Gaussian posterior)."""

    def _build_net(self, shape: dict) -> AutoencoderKL:
        return AutoencoderKL(**shape)

    def encode_latents(self, x: torch.Tensor) -> torch.Tensor:
        """The posterior mean (B, D, h, w)."""
        return self.net.encode(x).latent_dist.mean

    def decode_latents(self, z: torch.Tensor) -> torch.Tensor:
        return self.net.decode(z).sample

    def _reconstruct_train(self, x0, draws: StepDraws):
        posterior = self.net.encode(x0).latent_dist
        if self.training:  # the reparameterised sample, eps drawn per sample from the step's draws
            eps = draws.normal(*posterior.mean.shape[1:]).to(posterior.mean)
            z = posterior.mean + posterior.std * eps
        else:
            z = posterior.mean
        x_hat = self.net.decode(z).sample
        kl = posterior.kl().mean() / x0[0].numel()  # per-pixel, see the module docstring
        return x_hat, self.config.kl_weight * kl, {"kl": kl.detach()}
