"""Batched Gaussian mixtures: one mixture per latent unit, all fitted by the same tensor ops.

The EM, split and filter steps of Dynamic Gaussian Anchoring (``models.anchoring``) as functions of
tensors. Mixtures share a padded component axis (N, K, ...) with an ``active`` mask (active components
first); each E/M step is one batched op over units and components, run in chunks of tokens so that
the (N, K, chunk, d) temporaries stay small. Statistics are float32, accumulated around the current
means in whitened coordinates, which keeps the covariances accurate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

# elements of each (N, K, chunk, d) temporary of the E-step: cache-sized on CPU (measured fastest,
# benchmarks/dyga_fit.py), large on accelerators where kernel launches dominate small chunks
CHUNK_ELEMENTS = {"cpu": 2**19, "other": 2**25}


@dataclass(frozen=True)
class FitSettings:
    """What one refit needs: ``AnchoringConfig.fit_settings()`` makes it (its defaults and checks
    live there, so this module does not depend on the anchoring module that depends on it)."""

    covariance: str
    max_components: int
    max_splits: int
    split_threshold: float
    random_split: bool
    min_cluster_size: float
    em_iterations: int
    reg_covar: float


@dataclass
class Mixture:
    """N Gaussian mixtures on a shared, padded component axis; inactive components have weight 0."""

    means: Tensor  # (N, K, d)
    scales: Tensor  # (N, K, d, d) lower Cholesky factor of the covariance ("full"), (N, K, d) std ("diag")
    weights: Tensor  # (N, K), sums to 1 over the active components of each unit
    active: Tensor  # (N, K) bool

    def take(self, index: Tensor) -> Mixture:
        """Components ``index`` (N, K') of every unit."""

        def pick(t: Tensor) -> Tensor:
            return t.gather(1, index.view(*index.shape, *[1] * (t.dim() - 2)).expand(-1, -1, *t.shape[2:]))

        return Mixture(pick(self.means), pick(self.scales), pick(self.weights), pick(self.active))

    def compact(self, size: int | None = None) -> Mixture:
        """Active components first, the axis cut to ``size`` (default: the most any unit has) or padded
        with inactive copies of a component (any valid parameters will do)."""
        order = torch.argsort((~self.active).to(torch.int8), dim=1, stable=True)
        k, size = order.shape[1], size or int(self.active.sum(1).max())
        mix = self.take(torch.cat([order, order.new_zeros(order.shape[0], max(0, size - k))], 1)[:, :size])
        mix.active[:, k:], mix.weights[:, k:] = False, 0.0
        return mix


@dataclass
class _Sums:
    """What one E-step pass accumulates, in whitened coordinates y = L^-1 (x - mu) of each component
    (so the sums are centred and well scaled: the M-step maps them back with L)."""

    counts: Tensor  # (N, K) total responsibility
    first: Tensor  # (N, K, d) sum_m r y
    second: Tensor  # (N, K, d, d) sum_m r y y^T, or (N, K, d) its diagonal
    log_likelihood: Tensor  # (N,) sum over tokens of log p(x)
    members: Tensor  # (N, K) tokens with r > 0.5
    member_distance: Tensor  # (N, K) their summed Euclidean distance to mu
    best: Tensor  # (N, M) the component with r > 0.5 of each token, -1 if none


def identity_scales(means: Tensor, full: bool) -> Tensor:
    if full:
        return torch.eye(means.shape[-1], dtype=means.dtype, device=means.device).expand(*means.shape, -1)
    return torch.ones_like(means)


def initial_mixture(x: Tensor, index: Tensor, full: bool) -> Mixture:
    """Means at tokens ``index`` (N, K) of x (N, M, d), identity covariances, equal weights."""
    means = x.gather(1, index[..., None].expand(-1, -1, x.shape[-1]))  # (N, K, d)
    k = index.shape[1]
    return Mixture(means, identity_scales(means, full), means.new_full(index.shape, 1 / k), index >= 0)


class Whitener:
    """x (N, c, d) -> y = L^-1 (x - mu) (N, K, c, d) for every component, and log w_k N(x | mu_k, Sigma_k)."""

    def __init__(self, mix: Mixture):
        n, k, d = mix.means.shape
        self.full = mix.scales.dim() == 4
        if self.full:  # all K whitenings as one (d, K d) matrix per unit: x -> x L_k^-T, one GEMM
            eye = torch.eye(d, dtype=mix.scales.dtype, device=mix.scales.device)
            inverse = torch.linalg.solve_triangular(mix.scales, eye.expand_as(mix.scales), upper=False)
            self.matrix = inverse.mT.permute(0, 2, 1, 3).reshape(n, d, k * d)
            self.offset = (inverse @ mix.means[..., None])[..., 0]  # (N, K, d) L^-1 mu
            half_log_det = mix.scales.diagonal(dim1=-2, dim2=-1).log().sum(-1)  # (N, K)
        else:
            self.inverse, self.means = mix.scales.reciprocal(), mix.means
            half_log_det = mix.scales.log().sum(-1)
        const = mix.weights.log() - half_log_det - 0.5 * d * math.log(2 * math.pi)
        self.const = const.masked_fill(~mix.active, -math.inf)  # (N, K)

    def __call__(self, x: Tensor) -> tuple[Tensor, Tensor]:
        n, c, d = x.shape
        k = self.const.shape[1]
        if self.full:
            xw = (x @ self.matrix).view(n, c, k, d).permute(0, 2, 1, 3)  # (N, K, c, d)
            y = torch.sub(xw, self.offset[:, :, None], out=x.new_empty(n, k, c, d))
        else:
            y = (x[:, None] - self.means[:, :, None]) * self.inverse[:, :, None]  # (N, K, c, d)
        log_p = self.const[..., None] - 0.5 * torch.linalg.vector_norm(y, dim=-1).square()  # (N, K, c)
        return y, log_p


def _e_pass(
    x: Tensor, mix: Mixture, groups: tuple[Tensor, Tensor] | None = None, members: bool = False
) -> _Sums:
    """E-step over x (N, M, d) in chunks. ``groups`` = (token group (N, M), component group (N, K)):
    a token then only belongs to the components of its own group (the split step's sub-mixtures).
    ``members``: also count each component's members (r > 0.5) and their distances (split step)."""
    n, m, d = x.shape
    k = mix.means.shape[1]
    full = mix.scales.dim() == 4
    zeros = x.new_zeros
    second = zeros(n, k, d, d) if full else zeros(n, k, d)
    best = torch.full((n, m if members else 0), -1, dtype=torch.long, device=x.device)
    sums = _Sums(zeros(n, k), zeros(n, k, d), second, zeros(n), zeros(n, k), zeros(n, k), best)
    budget = CHUNK_ELEMENTS["cpu" if x.device.type == "cpu" else "other"]
    chunk = max(1, budget // (n * k * d))
    whiten = Whitener(mix)
    for start in range(0, m, chunk):
        xc = x[:, start : start + chunk]  # (N, c, d)
        y, log_p = whiten(xc)  # (N, K, c, d), (N, K, c)
        if groups is not None:
            token_group = groups[0][:, None, start : start + chunk]  # (N, 1, c)
            log_p = log_p.masked_fill(token_group != groups[1][..., None], -math.inf)
        top = log_p.amax(1, keepdim=True)  # softmax over K by hand: one exp for r and log p(x)
        top = torch.where(torch.isfinite(top), top, 0.0)  # tokens outside every group get r = 0
        p = (log_p - top).exp()  # (N, K, c)
        total = p.sum(1, keepdim=True)
        r = p / total.clamp_min(torch.finfo(p.dtype).tiny)
        sums.counts += r.sum(-1)
        sums.first += (r[..., None, :] @ y)[..., 0, :]
        ry = y * r[..., None]  # (N, K, c, d)
        sums.second += ry.mT @ y if full else (ry * y).sum(2)
        sums.log_likelihood += torch.where(total > 0, top + total.log(), 0.0).sum((1, 2))
        if members:
            member = r > 0.5
            sums.members += member.sum(-1)
            distance = torch.linalg.vector_norm(xc[:, None] - mix.means[:, :, None], dim=-1)  # (N, K, c)
            sums.member_distance += (member * distance).sum(-1)
            sums.best[:, start : start + chunk] = torch.where(member.any(1), r.argmax(1), -1)
    return sums


def _m_step(
    mix: Mixture, sums: _Sums, reg_covar: float, groups: tuple[Tensor, Tensor] | None = None
) -> Mixture:
    """New means, covariances (+ reg_covar I) and weights; weights normalise within each group."""
    counts = sums.counts + 10 * torch.finfo(sums.counts.dtype).eps  # as scikit-learn: no empty component
    shift = sums.first / counts[..., None]  # (N, K, d) new mean - old mean, whitened
    spread = (
        sums.second / counts[..., None, None] if mix.scales.dim() == 4 else sums.second / counts[..., None]
    )
    if mix.scales.dim() == 4:
        lower = mix.scales
        means = mix.means + (lower @ shift[..., None])[..., 0]
        cov = lower @ (spread - shift[..., :, None] * shift[..., None, :]) @ lower.mT
        cov = cov + reg_covar * torch.eye(cov.shape[-1], dtype=cov.dtype, device=cov.device)
        scales, info = torch.linalg.cholesky_ex(cov)
        if bool((info > 0).any()):  # float32 rounding; float64 saves nearly singular ones
            scales = torch.linalg.cholesky(cov.double()).to(cov.dtype)
    else:
        means = mix.means + mix.scales * shift
        scales = (mix.scales.square() * (spread - shift.square()) + reg_covar).clamp_min(reg_covar).sqrt()
    counts = counts * mix.active
    if groups is None:
        weights = counts / counts.sum(1, keepdim=True)
    else:
        same = (groups[1][:, :, None] == groups[1][:, None, :]).to(counts.dtype)  # (N, K, K)
        weights = counts / (same @ counts[..., None])[..., 0]
    keep = mix.active[..., None]
    return Mixture(
        torch.where(keep, means, mix.means),
        torch.where(keep[..., None] if scales.dim() == 4 else keep, scales, mix.scales),
        torch.where(mix.active, weights, 0.0),
        mix.active,
    )


def em(x: Tensor, mix: Mixture, iterations: int, reg_covar: float, groups=None) -> Mixture:
    """``iterations`` EM steps (E with the current parameters, then M) of all units at once."""
    for _ in range(iterations):
        mix = _m_step(mix, _e_pass(x, mix, groups), reg_covar, groups)
    return mix


def split(x: Tensor, mix: Mixture, config: FitSettings, generator: torch.Generator | None = None):
    """One split round (step 3). Returns the new mixture and how many clusters were split."""
    n, k, d = mix.means.shape
    sums = _e_pass(x, mix, members=True)
    spread = sums.member_distance / sums.members.clamp_min(1)  # (N, K)
    if config.random_split:
        coin = torch.rand(n, k, generator=generator, device=generator.device if generator else None)
        wanted = coin.to(x.device) < 0.5
    else:
        wanted = spread > config.split_threshold
    wanted &= mix.active & (sums.members >= 2)
    room = config.max_components - mix.active.sum(1)  # (N,)
    rank = torch.argsort(torch.argsort(torch.where(wanted, spread, -1.0), dim=1, descending=True), dim=1)
    chosen = wanted & (rank < room[:, None])  # (N, K)
    s = int(chosen.sum(1).max())
    if s == 0:
        return mix, 0
    parent = torch.argsort((~chosen).to(torch.int8), dim=1, stable=True)[:, :s]  # (N, S) chosen first
    valid = torch.arange(s, device=x.device) < chosen.sum(1, keepdim=True)  # (N, S)
    parents = mix.take(parent)
    # children 2j, 2j+1 of parent j start at mu +- sqrt(l1) v1, with the parent's covariance
    if mix.scales.dim() == 4:
        eigval, eigvec = torch.linalg.eigh(parents.scales @ parents.scales.transpose(-1, -2))
        axis = eigvec[..., -1] * eigval[..., -1:].clamp_min(0).sqrt()  # (N, S, d)
    else:
        top = parents.scales.argmax(-1, keepdim=True)
        axis = torch.zeros_like(parents.means).scatter(-1, top, parents.scales.gather(-1, top))
    children = Mixture(
        torch.stack([parents.means + axis, parents.means - axis], 2).flatten(1, 2),  # (N, 2S, d)
        parents.scales.repeat_interleave(2, dim=1),
        torch.full((n, 2 * s), 0.5, dtype=x.dtype, device=x.device),
        valid.repeat_interleave(2, dim=1),
    )
    slot_of = torch.full((n, k), -1, dtype=torch.long, device=x.device)  # component -> its parent slot j
    slot_of.scatter_(1, parent, torch.where(valid, torch.arange(s, device=x.device).expand(n, s), -1))
    token_group = torch.where(sums.best >= 0, slot_of.gather(1, sums.best.clamp_min(0)), -1)  # (N, M)
    child_group = torch.arange(s, device=x.device).repeat_interleave(2).expand(n, -1)  # (N, 2S)
    children = em(x, children, config.em_iterations, config.reg_covar, (token_group, child_group))
    # child 2j replaces parent j; child 2j+1 goes to a new slot after the unit's active components
    # (mix is compact, so compact() only pads and every slot keeps its index)
    grown = mix.compact(int((mix.active.sum(1) + chosen.sum(1)).max()))
    rows = torch.arange(n, device=x.device)[:, None].expand(n, s)[valid]
    new_slot = (mix.active.sum(1, keepdim=True) + torch.arange(s, device=x.device))[valid]
    half = (parents.weights / 2)[valid]
    for slot, c in ((parent[valid], 0), (new_slot, 1)):
        grown.means[rows, slot] = children.means[:, c::2][valid]
        grown.scales[rows, slot] = children.scales[:, c::2][valid]
        grown.weights[rows, slot] = half
        grown.active[rows, slot] = True
    return grown, int(chosen.sum())


def drop_small(x: Tensor, mix: Mixture, min_size: float) -> tuple[Mixture, int]:
    """Step 4's filter: remove components with total responsibility < min_size (keeps each unit's
    heaviest one), renormalise the weights and compact. Returns the mixture and how many were dropped."""
    counts = _e_pass(x, mix).counts.masked_fill(~mix.active, -1.0)
    keep = mix.active & (counts >= min_size)
    heaviest = torch.nn.functional.one_hot(counts.argmax(1), counts.shape[1]).bool()
    keep |= heaviest & ~keep.any(1, keepdim=True)
    weights = mix.weights * keep
    dropped = int((mix.active & ~keep).sum())
    return Mixture(mix.means, mix.scales, weights / weights.sum(1, keepdim=True), keep).compact(), dropped


def fit_mixtures(x: Tensor, config: FitSettings, init_index: Tensor, generator=None) -> tuple[Mixture, dict]:
    """Steps 2-4 on normalised tokens x (N, M, d) from initial means at tokens ``init_index`` (N, K0).
    Returns mixtures padded to ``max_components`` and counts of what happened."""
    full = config.covariance == "full"
    mix = em(x, initial_mixture(x, init_index, full), config.em_iterations, config.reg_covar)
    splits = 0
    for _ in range(config.max_splits):
        mix, done = split(x, mix, config, generator)
        splits += done
        if done == 0:
            break
    mix, dropped = drop_small(x, mix, config.min_cluster_size)
    mix = em(x, mix, config.em_iterations, config.reg_covar)
    log_likelihood = _e_pass(x, mix).log_likelihood / x.shape[1]  # (N,) mean per token
    return mix.compact(config.max_components), {
        "splits": splits,
        "dropped": dropped,
        "log_likelihood": log_likelihood,
    }
