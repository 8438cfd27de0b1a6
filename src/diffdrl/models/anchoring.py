"""Dynamic Gaussian Anchoring (DyGA): pull every token toward the mean of its unit's Gaussian cluster.

Jun et al., "Disentangling Disentangled Representations: Towards Improved Latent Units via Diffusion
Models", WACV 2025, and its released code (METHODS.md). Every ``refit_every`` training steps the trainer
calls ``fit`` on a sample of tokens; between refits ``forward`` anchors them:

    1. per unit i, scale its tokens to [-1, 0] with one scalar min/max:  x = (c - hi_i) / (hi_i - lo_i)
    2. Gaussian mixture on x: K = init_components means at random tokens, identity covariances, equal
       weights; em_iterations EM steps (+ reg_covar I on every covariance)
    3. up to max_splits split rounds: a cluster whose members (responsibility > 0.5) lie on average
       farther than split_threshold from its mean becomes a 2-component mixture fitted on its members
       (em_iterations steps), each child with half the parent's weight; K <= max_components
    4. filter: drop clusters with total responsibility < min_cluster_size; em_iterations more steps
    5. anchor: c' = lambda mu + (1 - lambda) c, mu the mean of c's most likely component, and
       lambda = 0.1 exp(-mean |(c - mu) / (c + 1e-6)|) (one scalar per batch) or ``fixed_lambda``

All units are fitted at once: mixtures share a padded component axis (N, K, ...) with an ``active`` mask
(active components first), and each E/M step is one batched tensor op over units and components, run in
chunks of tokens so that the (N, K, chunk, d) temporaries stay small. EM statistics are float32
(STYLE.md 11); sums are taken around the current means, which keeps the covariances accurate.

Deviations from the released code, on purpose:
- One space. The released code mixes mu from the normalised space with raw c in step 5. Here the mixture
  lives in the normalised space (so split_threshold keeps its meaning) and mu is mapped back to raw
  space, mu_raw = hi + (hi - lo) mu, before anchoring. The hard assignment is the same in either space
  because the map is affine with one scalar per unit.
- Splits follow the published distance rule; the released "split any cluster with probability 0.5" is
  ``random_split=True``. Clusters with fewer than 2 members are never split; when more clusters qualify
  than K_max leaves room for, the most spread-out ones split first.
- A split's 2-component fit starts at mu +- sqrt(l1) v1 along the parent's principal axis, with the
  parent's covariance (deterministic, no k-means).
- lambda is detached: gradients reach c through (1 - lambda) c only. With tokens near 0 (ELU tokens can be
  slightly negative) |(c - mu) / (c + 1e-6)| blows up and the published lambda goes to 0.
- HDDC's per-cluster intrinsic dimensions, computed but unused in the released code, are omitted.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from diffdrl.models.mixture import FitSettings, Mixture, Whitener, fit_mixtures, identity_scales

COVARIANCES = ("full", "diag")
LAMBDA_MODES = ("published", "fixed")


@dataclass
class AnchoringConfig:
    """DyGA settings (defaults: the released code, with anchoring off)."""

    enabled: bool = False
    covariance: str = "full"
    init_components: int = 8
    max_components: int = 32
    max_splits: int = 3
    split_threshold: float = 0.5  # mean member distance to the mean, in the [-1, 0]-scaled space
    random_split: bool = False  # released-code quirk: split each cluster with probability 0.5
    min_cluster_size: float = 10.0  # in tokens (total responsibility)
    em_iterations: int = 30
    reg_covar: float = 1e-6
    lambda_mode: str = "published"
    fixed_lambda: float = 0.1
    refit_every: int = 1000  # training steps (the paper refits every epoch: ~940 steps on Shapes3D)
    max_fit_tokens: int = 100_000  # the paper fits on all images up to 100k, else a random 10%

    def fit_settings(self) -> FitSettings:
        """The subset of these settings that the mixture fit reads."""
        return FitSettings(**{f: getattr(self, f) for f in FitSettings.__dataclass_fields__})

    def __post_init__(self):
        if self.covariance not in COVARIANCES:
            raise ValueError(f"anchoring.covariance must be one of {COVARIANCES}, got {self.covariance!r}")
        if self.lambda_mode not in LAMBDA_MODES:
            raise ValueError(f"anchoring.lambda_mode must be one of {LAMBDA_MODES}, got {self.lambda_mode!r}")
        if not 1 <= self.init_components <= self.max_components:
            raise ValueError(
                f"anchoring.init_components must be in [1, anchoring.max_components={self.max_components}], "
                f"got {self.init_components}"
            )
        for key in ("em_iterations", "refit_every", "max_fit_tokens"):
            if getattr(self, key) < 1:
                raise ValueError(f"anchoring.{key} must be >= 1, got {getattr(self, key)}")
        for key in ("max_splits", "min_cluster_size"):
            if getattr(self, key) < 0:
                raise ValueError(f"anchoring.{key} must be >= 0, got {getattr(self, key)}")
        for key in ("split_threshold", "reg_covar"):
            if not getattr(self, key) > 0:
                raise ValueError(f"anchoring.{key} must be > 0, got {getattr(self, key)}")
        if not 0.0 <= self.fixed_lambda <= 1.0:
            raise ValueError(f"anchoring.fixed_lambda must be in [0, 1], got {self.fixed_lambda}")


# ---------------------------------------------------------------------------------------------
# the module the model holds


class GaussianAnchors(nn.Module):
    """The fitted mixtures as buffers (saved in checkpoints) and the anchoring c -> c' (B, N, d)."""

    def __init__(self, config: AnchoringConfig, num_units: int, token_dim: int):
        super().__init__()
        self.config = config
        n, k, d = num_units, config.max_components, token_dim
        means = torch.zeros(n, k, d)
        # Saved in checkpoints only when anchoring is on: a plain EncDiff carries no mixture state.
        keep = config.enabled
        self.register_buffer("means", means, persistent=keep)  # normalised space
        scales = identity_scales(means, config.covariance == "full").contiguous()
        self.register_buffer("scales", scales, persistent=keep)
        self.register_buffer("weights", torch.zeros(n, k), persistent=keep)
        self.register_buffer("active", torch.zeros(n, k, dtype=torch.bool), persistent=keep)
        self.register_buffer("fitted", torch.tensor(False), persistent=keep)
        # x = (c - high) / span lies in [-1, 0]
        self.register_buffer("token_high", torch.zeros(n), persistent=keep)
        self.register_buffer("token_span", torch.ones(n), persistent=keep)
        self.register_load_state_dict_post_hook(lambda module, keys: module.sync_fitted())
        self._is_fitted = False  # host copy of ``fitted``: forward must not sync with the GPU

    def sync_fitted(self) -> None:
        """Refresh the host copy of ``fitted`` (done by load_state_dict; call it after editing buffers by
        hand, e.g. a broadcast from rank 0)."""
        self._is_fitted = bool(self.fitted)

    def should_refit(self, step: int) -> bool:
        """Whether the trainer refits after optimisation step ``step`` (1-based)."""
        return self.config.enabled and step > 0 and step % self.config.refit_every == 0

    def mixture(self) -> Mixture:
        return Mixture(self.means, self.scales, self.weights, self.active)

    def normalise(self, tokens: Tensor) -> Tensor:
        """Raw tokens (..., N, d) -> the [-1, 0]-scaled space the mixtures live in."""
        return (tokens.float() - self.token_high[:, None]) / self.token_span[:, None]

    @torch.no_grad()
    def fit(self, tokens: Tensor, generator: torch.Generator | None = None) -> dict:
        """Refit every unit's mixture on raw tokens (M, N, d), subsampled to ``max_fit_tokens``."""
        start = time.perf_counter()
        where = generator.device if generator is not None else None
        m, n, _ = tokens.shape
        if m < self.config.init_components:
            raise ValueError(
                f"fit needs >= anchoring.init_components={self.config.init_components} tokens, got {m}"
            )
        if m > self.config.max_fit_tokens:
            keep = torch.randperm(m, generator=generator, device=where)[: self.config.max_fit_tokens]
            tokens = tokens[keep.to(tokens.device)]
        c = tokens.to(self.means.device, torch.float32).transpose(0, 1)  # (N, M, d)
        high = c.amax(dim=(1, 2))
        span = (high - c.amin(dim=(1, 2))).clamp_min(1e-12)
        x = (c - high[:, None, None]) / span[:, None, None]
        draws = torch.rand(n, x.shape[1], generator=generator, device=where).to(x.device)
        init_index = draws.topk(self.config.init_components, dim=1).indices  # distinct random tokens
        mix, info = fit_mixtures(x, self.config.fit_settings(), init_index, generator)
        for name, value in (("means", mix.means), ("scales", mix.scales), ("weights", mix.weights)):
            getattr(self, name).copy_(value)
        self.active.copy_(mix.active)
        self.token_high.copy_(high)
        self.token_span.copy_(span)
        self.fitted.fill_(True)
        self._is_fitted = True
        components = mix.active.sum(1)
        return {
            "components": components.tolist(),
            "components_mean": float(components.float().mean()),
            "splits": info["splits"],
            "dropped": info["dropped"],
            "log_likelihood": float(info["log_likelihood"].mean()),  # per token, normalised space
            "tokens": x.shape[1],
            "fit_seconds": time.perf_counter() - start,
        }

    @torch.no_grad()
    def assign(self, tokens: Tensor) -> Tensor:
        """Index (B, N) of each token's most likely active component."""
        if not self._is_fitted:
            raise RuntimeError("GaussianAnchors.assign needs a fitted mixture: call fit first")
        _, log_p = Whitener(self.mixture())(self.normalise(tokens).transpose(0, 1))  # (N, K, B)
        return log_p.argmax(1).T

    def raw_means(self) -> Tensor:
        """Component means in the raw token space (N, K, d)."""
        return self.token_high[:, None, None] + self.token_span[:, None, None] * self.means

    def anchor(self, tokens: Tensor) -> tuple[Tensor, Tensor | None]:
        """(c' = lambda mu + (1 - lambda) c, lambda) for tokens c (B, N, d); (c, None) when disabled or
        not yet fitted. lambda is a detached scalar (what the trainer logs as ``anchoring_lambda``)."""
        if not (self.config.enabled and self._is_fitted):
            return tokens, None
        with torch.autocast(tokens.device.type, enabled=False):
            c = tokens.float()
            index = self.assign(c)  # (B, N)
            mu = self.raw_means()[torch.arange(c.shape[1], device=c.device), index]  # (B, N, d)
            if self.config.lambda_mode == "published":
                lam = 0.1 * torch.exp(-((c - mu) / (c + 1e-6)).abs().mean()).detach()
            else:
                lam = c.new_tensor(self.config.fixed_lambda)
            return (lam * mu + (1 - lam) * c).to(tokens.dtype), lam

    def forward(self, tokens: Tensor) -> Tensor:
        """The anchored tokens c' (B, N, d) of ``anchor``."""
        return self.anchor(tokens)[0]
