"""Vector quantisation of a first stage's latents: nearest codebook entry, straight-through
gradients, a commitment loss, EMA or gradient codebook updates, and dead-code restarts.

van den Oord et al., "Neural Discrete Representation Learning" (VQ-VAE), NeurIPS 2017, eq. 3:

    z_q = e_k,  k = argmin_j |z - e_j|
    loss = |sg[z] - e|^2 (codebook; or the EMA updates below)  +  beta |z - sg[e]|^2 (commitment)
    forward passes z_q, backward copies the gradient of z_q onto z (straight-through estimator)

EMA updates (VQ-VAE appendix; VQ-VAE-2): per code k, n_k <- d n_k + (1 - d) count_k and
m_k <- d m_k + (1 - d) sum of its vectors; e_k = m_k / n_k with Laplace smoothing of n.

Dead-code restart (as in Jukebox / SoundStream): a code whose exponentially averaged share of the
assignments falls below ``restart_below`` times the uniform share 1/K is moved onto an encoder
output of the current batch drawn with the step's generator (so restarts are reproducible and a
resumed run makes the same ones). At the start every code is dead, so the first batch initialises
the codebook from data. With several processes the statistics are summed over processes and the
restart vectors come from rank 0's batch, so every process keeps the same codebook.

The codebook itself is the ``weight`` of an ``nn.Embedding`` owned by diffusers' ``VQModel``
(``quantize.embedding``), so a trained first stage saves and reloads with ``save_pretrained``;
diffusers' own quantiser (nearest entry by ``cdist``) then gives the same codes at inference.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

UPDATES = ("ema", "straight_through")


@dataclass
class QuantizerConfig:
    """How the codebook learns. ``update="ema"``: moving averages (no codebook gradient);
    ``"straight_through"``: the codebook loss |sg[z] - e|^2 by gradient (LDM's VQ)."""

    update: str = "ema"
    commitment: float = 0.25  # beta
    ema_decay: float = 0.99  # for the EMA updates and the usage statistics
    restart_below: float = 0.03  # a code is dead when its usage share < this x 1/K; 0 = no restarts
    epsilon: float = 1e-5  # Laplace smoothing of the EMA counts

    def __post_init__(self):
        if self.update not in UPDATES:
            raise ValueError(f"quantizer.update must be one of {UPDATES}, got {self.update!r}")
        if not self.commitment >= 0:
            raise ValueError(f"quantizer.commitment must be >= 0, got {self.commitment}")
        if not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"quantizer.ema_decay must be in (0, 1), got {self.ema_decay}")
        if not 0.0 <= self.restart_below < 1.0:
            raise ValueError(f"quantizer.restart_below must be in [0, 1), got {self.restart_below}")
        if not self.epsilon > 0:
            raise ValueError(f"quantizer.epsilon must be > 0, got {self.epsilon}")


def _all_sum(x: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(x)
    return x


class VectorQuantizer(nn.Module):
    """Quantises (B, D, h, w) latents onto ``codebook`` (K, D), updating it while training.

    Buffers (saved with the model, so a resumed run continues exactly): ``usage`` (K,), the EMA
    share of assignments; ``cluster_size`` (K,) and ``embed_sum`` (K, D), the EMA statistics.
    """

    def __init__(self, config: QuantizerConfig, codebook: nn.Embedding):
        super().__init__()
        self.config = config
        self.codebook = [codebook]  # a list: the embedding belongs to the VQModel, not to this module
        size, dim = codebook.weight.shape
        codebook.weight.requires_grad_(config.update == "straight_through")
        self.register_buffer("usage", torch.zeros(size))
        self.register_buffer("cluster_size", torch.zeros(size))
        self.register_buffer("embed_sum", torch.zeros(size, dim))
        self.last_stats: dict[str, torch.Tensor] = {}

    @property
    def weight(self) -> torch.Tensor:
        return self.codebook[0].weight

    def forward(
        self, z: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(z_q with straight-through gradients (B, D, h, w), the VQ loss). In training mode the
        codebook and its statistics are updated after the assignment (``generator`` draws the
        restart vectors)."""
        b, d, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, d).float()  # (B h w, D)
        e = self.weight.float()
        index = self._nearest(flat, e)  # (M,)
        z_q = e[index]  # (M, D)
        commit = self.config.commitment * (flat - z_q.detach()).square().mean()
        loss = commit
        if self.config.update == "straight_through":
            loss = loss + (z_q - flat.detach()).square().mean()
        counts = torch.bincount(index, minlength=len(e)).float()
        share = counts / counts.sum()
        self.last_stats = {
            "codebook_usage": (counts > 0).float().mean(),  # fraction of codes used in this batch
            "codebook_perplexity": torch.exp(-(share * share.clamp(min=1e-12).log()).sum()),
            "commitment": commit.detach(),
        }
        if self.training:
            with torch.no_grad():
                self.last_stats["codebook_restarts"] = self._update(flat.detach(), index, counts, generator)
        z_q = flat + (z_q - flat).detach()  # straight-through: gradients pass to z unchanged
        return z_q.reshape(b, h, w, d).permute(0, 3, 1, 2).to(z.dtype), loss

    @staticmethod
    def _nearest(flat: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        distance = flat.square().sum(1, keepdim=True) - 2 * flat @ e.T + e.square().sum(1)  # (M, K)
        return distance.argmin(1)

    @torch.no_grad()
    def quantize(self, z: torch.Tensor) -> torch.Tensor:
        """The nearest codebook entries of (B, D, h, w) latents; no statistics, no updates."""
        b, d, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, d).float()
        e = self.weight.float()
        return e[self._nearest(flat, e)].reshape(b, h, w, d).permute(0, 3, 1, 2).to(z.dtype)

    def _update(self, flat, index, counts, generator) -> torch.Tensor:
        """EMA codebook and usage statistics, then restarts; returns the number of codes restarted."""
        cfg = self.config
        counts = _all_sum(counts.clone())
        decay = cfg.ema_decay
        self.usage.lerp_(counts / counts.sum(), 1 - decay)
        if cfg.update == "ema":
            sums = torch.zeros_like(self.embed_sum).index_add_(0, index, flat)  # (K, D)
            sums = _all_sum(sums)
            self.cluster_size.lerp_(counts, 1 - decay)
            self.embed_sum.lerp_(sums, 1 - decay)
            n = self.cluster_size.sum()
            smoothed = (self.cluster_size + cfg.epsilon) / (n + len(counts) * cfg.epsilon) * n
            updated = self.embed_sum / smoothed[:, None]
            used = self.cluster_size > 0  # codes never assigned keep their entry until restarted
            self.weight.data[used] = updated[used].to(self.weight.dtype)
        restarts = torch.zeros((), device=flat.device)
        if cfg.restart_below > 0:
            dead = self.usage < cfg.restart_below / len(counts)  # (K,)
            restarts = dead.sum()
            if restarts > 0:
                self._restart(flat, dead, generator)
        return restarts.float()

    def _restart(self, flat: torch.Tensor, dead: torch.Tensor, generator) -> None:
        """Move the dead codes onto random vectors of the batch (rank 0's, on every process)."""
        size = len(dead)
        pick = torch.randint(len(flat), (size,), generator=generator, device=flat.device)
        fresh = flat[pick]  # (K, D): a candidate for every code, kept only for the dead ones
        if dist.is_available() and dist.is_initialized():
            dist.broadcast(fresh, src=0)
        mask = dead[:, None]
        self.weight.data.copy_(torch.where(mask, fresh.to(self.weight.dtype), self.weight.data))
        self.usage.copy_(torch.where(dead, torch.full_like(self.usage, 1.0 / size), self.usage))
        # the EMA statistics restart as if the code had its fair share of assignments at that vector
        fair = self.cluster_size.sum().clamp(min=1.0) / size
        self.cluster_size.copy_(torch.where(dead, fair, self.cluster_size))
        self.embed_sum.copy_(torch.where(mask, fresh * fair, self.embed_sum))
