"""DisDiff's disentangling loss: the gradient field of chunk c should move the re-encoded
prediction in chunk c, and in chunk c only (Yang et al., NeurIPS 2023; BASELINES.md).

For one image, one chunk c drawn at random, the frozen model's x0 prediction re-encoded gives
z_hat, and the prediction shifted by chunk c's field alone, re-encoded, gives z_hat_c (both
(N, d), by a frozen copy of the encoder). With z the image's own chunks, two cross-entropies over
the N chunks, both with target c:

    logits_k = ||z_hat_k - z_k|| - ||z_hat_c,k - z_k||   chunk c's field brings chunk c nearest to z
    logits_k = ||z_hat_k - z_hat_c,k||                   chunk c's field changes chunk c most

each image weighted by w = mean((x0_hat - x0_hat_c)^2) (no gradient: how far the field moved its
prediction), and the batch mean scaled by lambda in the model.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def disentangling_terms(
    z: torch.Tensor, z_hat: torch.Tensor, z_hat_c: torch.Tensor, chunk: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The two cross-entropies (B,) each, for chunks z, z_hat, z_hat_c (B, N, d) and targets (B,)."""
    toward = (z_hat - z).norm(dim=-1) - (z_hat_c - z).norm(dim=-1)  # (B, N)
    moved = (z_hat - z_hat_c).norm(dim=-1)  # (B, N)
    return F.cross_entropy(toward, chunk, reduction="none"), F.cross_entropy(moved, chunk, reduction="none")


def disentangling_loss(
    z: torch.Tensor,
    z_hat: torch.Tensor,
    z_hat_c: torch.Tensor,
    chunk: torch.Tensor,
    weight: torch.Tensor,
) -> torch.Tensor:
    """Mean over the batch of w (CE_toward + CE_moved) (module docstring); ``z`` and ``z_hat`` carry
    no gradient (the encoder learns from the diffusion loss only), ``weight`` (B,) none either."""
    toward, moved = disentangling_terms(z.detach(), z_hat.detach(), z_hat_c, chunk)
    return (weight.detach() * (toward + moved)).mean()
