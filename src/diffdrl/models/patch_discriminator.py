"""The patch discriminator of a first stage's adversarial loss (optional, after a start step).

Isola et al., "Image-to-Image Translation with Conditional Adversarial Networks" (pix2pix's
PatchGAN, 2017), as VQGAN / LDM use it (Esser et al., CVPR 2021): 4x4 convolutions, stride 2
``layers`` times then stride 1, BatchNorm and LeakyReLU(0.2), one logit per overlapping patch; a
hinge loss for the discriminator, -D(x_hat) for the autoencoder, weighted adaptively by the ratio
of the two losses' gradient norms at the decoder's last layer (VQGAN eq. 7).

Both parts train in the trainer's one optimiser step, as FactorVAE's discriminator does: the
autoencoder's term reads the discriminator through detached parameters, the discriminator's term
sees detached reconstructions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class DiscriminatorConfig:
    """``enabled`` switches the adversarial loss on from step ``start`` (the released config: start 0,
    weight 0.75, 3 layers of width 64)."""

    enabled: bool = False
    start: int = 0
    weight: float = 0.75
    layers: int = 3
    width: int = 64

    def __post_init__(self):
        if self.start < 0:
            raise ValueError(f"discriminator.start must be >= 0, got {self.start}")
        if not self.weight >= 0:
            raise ValueError(f"discriminator.weight must be >= 0, got {self.weight}")
        if self.layers < 1 or self.width < 1:
            raise ValueError(
                f"discriminator.layers and discriminator.width must be >= 1, got {self.layers}, {self.width}"
            )


def patch_discriminator(config: DiscriminatorConfig, channels: int = 3) -> nn.Sequential:
    """Images (B, C, H, W) -> patch logits (B, 1, h, w)."""
    w = config.width
    layers: list[nn.Module] = [nn.Conv2d(channels, w, 4, 2, 1), nn.LeakyReLU(0.2)]
    c = w
    for i in range(1, config.layers + 1):
        c_out = w * min(2**i, 8)
        stride = 2 if i < config.layers else 1
        layers += [nn.Conv2d(c, c_out, 4, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2)]
        c = c_out
    layers.append(nn.Conv2d(c, 1, 4, 1, 1))
    return nn.Sequential(*layers)


def hinge_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    return 0.5 * (F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean())


def adversarial_terms(
    discriminator: nn.Module,
    x: torch.Tensor,
    x_hat: torch.Tensor,
    reconstruction: torch.Tensor,
    last_layer: torch.Tensor,
    weight: float,
) -> dict[str, torch.Tensor]:
    """The autoencoder's weighted adversarial term and the discriminator's hinge loss."""
    frozen = {k: v.detach() for k, v in discriminator.named_parameters()}
    generator_loss = -torch.func.functional_call(discriminator, frozen, (x_hat,)).float().mean()
    g_rec = torch.autograd.grad(reconstruction, last_layer, retain_graph=True)[0]
    g_adv = torch.autograd.grad(generator_loss, last_layer, retain_graph=True)[0]
    adaptive = (g_rec.norm() / (g_adv.norm() + 1e-4)).clamp(0.0, 1e4).detach() * weight
    d_loss = hinge_loss(discriminator(x.detach()).float(), discriminator(x_hat.detach()).float())
    return {"adversarial": generator_loss, "adaptive_weight": adaptive, "discriminator": d_loss}
