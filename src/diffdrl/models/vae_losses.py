"""The VAE baselines' loss terms, each formula once: reconstruction, KL, total correlation (TC),
FactorVAE's dimension-wise permutation, and the MMD prior match InfoDiffusion takes from InfoVAE.

Shapes: codes ``z``, posterior means ``mu`` and log-variances ``logvar`` are (B, N). Every term is
computed in float32 whatever the network's precision.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LOG_2PI = math.log(2.0 * math.pi)


def bernoulli_nll(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """-log p(x | z) per image (B,), summed over pixels: a Bernoulli on x in [-1, 1] mapped to [0, 1],
    as disentanglement_lib's ``bernoulli_loss`` (its default, without subtracting the image entropy)."""
    target = (x.float() + 1.0) / 2.0
    nll = F.binary_cross_entropy_with_logits(logits.float(), target, reduction="none")
    return nll.flatten(1).sum(1)


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL( N(mu, exp(logvar)) || N(0, I) ) per sample (B,), summed over units (closed form)."""
    return 0.5 * (mu.square() + logvar.exp() - logvar - 1.0).sum(1)


def mmd(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """MMD^2 between the samples a (n, K) and b (m, K), a scalar: the biased (V-statistic) estimate
    mean k(a, a') + mean k(b, b') - 2 mean k(a, b), diagonals included, with InfoVAE's kernel
    k(x, y) = exp(-mean_d (x_d - y_d)^2 / K) (Zhao et al. 2019; InfoDiffusion's ``compute_mmd``):
    the squared distance divided by K^2, a bandwidth that grows with the code size."""
    a, b = a.float(), b.float()
    dim = a.shape[1]

    def kernel(x, y):  # (n, m)
        return torch.exp(-(x[:, None] - y[None]).square().sum(-1) / dim**2)  # exact, also at x = y

    return kernel(a, a).mean() + kernel(b, b).mean() - 2.0 * kernel(a, b).mean()


def gaussian_log_density(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mu, exp(logvar)) elementwise (broadcasting), not summed."""
    return -0.5 * (LOG_2PI + logvar + (z - mu).square() * torch.exp(-logvar))


def total_correlation(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Minibatch-weighted-sampling estimate of TC = KL( q(z) || prod_d q(z_d) ), a scalar in nats.

    Chen et al., "Isolating Sources of Disentanglement in VAEs", NeurIPS 2018 (MWS): the aggregate
    posterior q(z_i) and its marginals are estimated by averaging q(z_i | x_j) over the batch,

        TC ~ mean_i [ logsumexp_j log q(z_i | x_j) - sum_d logsumexp_j log q(z_id | x_jd) ] + (N - 1) log B.

    Deviation: the paper's normaliser log(dataset_size * B) is replaced by log B. The two differ by
    the constant (N - 1) log(dataset_size), so gradients are identical, but this value is the TC of
    the batch's aggregate posterior: about 0 for factorised codes, and it needs no dataset size.
    disentanglement_lib drops the normaliser altogether (another constant).
    """
    batch, units = z.shape
    log_q = gaussian_log_density(z[:, None, :], mu[None, :, :], logvar[None, :, :])  # (B, B, N): i, j, d
    log_q_joint = torch.logsumexp(log_q.sum(2), dim=1)  # (B,)
    log_q_marginals = torch.logsumexp(log_q, dim=1).sum(1)  # (B,)
    return (log_q_joint - log_q_marginals).mean() + (units - 1) * math.log(batch)


def permute_dims(z: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Shuffle each unit independently across the batch (FactorVAE, Kim & Mnih 2018, Alg. 1).

    Each column keeps its multiset of values, so the result samples prod_d q(z_d): the marginals
    survive, every dependence between units is broken. One argsort of random keys per column,
    no loop over units.
    """
    keys = torch.rand(z.shape, generator=generator, device=z.device)
    return z.gather(0, keys.argsort(dim=0))  # (B, N)
