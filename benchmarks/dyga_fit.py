"""Time of one DyGA refit, and of its batched EM against scikit-learn's GaussianMixture unit by unit.

Synthetic tokens with the structure DyGA meets in training: each unit takes a few discrete values
(plus noise), and a random per-unit ReLU MLP (the DyGA token bank, 1 -> 64 -> 128 -> d) maps them to
tokens, so every unit's tokens are clusters along a curve in R^d. Three timings:

- ``em``: ``anchoring.em`` on all units at once, K components, ``--iterations`` EM steps, from means at
  random tokens with identity covariances (DyGA's start), in the [-1, 0]-scaled space;
- ``sklearn``: ``GaussianMixture`` with the same K, start, iterations (tol=0), covariance type,
  reg_covar and dtype, one unit after another (it also runs one initial M-step and a final E-step);
- ``refit``: ``GaussianAnchors.fit``, the whole DyGA refit (EM, split rounds, filter, EM).

    python benchmarks/dyga_fit.py                      # 20 units x 48k tokens x d=32, CPU
    python benchmarks/dyga_fit.py --device cuda        # GPU (sklearn still on CPU)
    python benchmarks/dyga_fit.py --threads 1          # pin torch and BLAS threads (busy machines)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.mixture import GaussianMixture
from threadpoolctl import threadpool_limits

from diffdrl.models.anchoring import AnchoringConfig, GaussianAnchors
from diffdrl.models.mixture import em, initial_mixture
from diffdrl.models.token_bank import TokenBank, TokenBankConfig


def synthetic_tokens(units: int, tokens: int, dim: int, seed: int = 0) -> torch.Tensor:
    """(M, N, d) tokens: unit i takes 4 + i % 12 discrete values plus noise, through a ReLU MLP."""
    g = torch.Generator().manual_seed(seed)
    values = torch.tensor([4 + i % 12 for i in range(units)])
    codes = (torch.rand(tokens, units, generator=g) * values).floor() / values  # (M, N) in [0, 1)
    s = 4 * (codes - 0.5) + 0.05 * torch.randn(tokens, units, generator=g)
    torch.manual_seed(seed)
    bank = TokenBank(TokenBankConfig(hidden=(64, 128), activation="relu"), units, dim)
    with torch.no_grad():
        return torch.relu(bank(s))  # DyGA's tokens are non-negative


def mean_log_likelihood(mix, x: torch.Tensor) -> float:
    """Mean over units and tokens of log p(x), by torch.distributions in float64 (independent of EM)."""
    means, scales = mix.means.double(), mix.scales.double()
    if scales.dim() == 4:
        gaussians = torch.distributions.MultivariateNormal(means, scale_tril=scales)
    else:
        gaussians = torch.distributions.Independent(torch.distributions.Normal(means, scales), 1)
    weights = torch.distributions.Categorical(probs=mix.weights.double())
    mixture = torch.distributions.MixtureSameFamily(weights, gaussians)  # batch (N,)
    return float(mixture.log_prob(x.double().transpose(0, 1)).mean())  # (M, N) -> scalar


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--units", type=int, default=20)
    parser.add_argument("--tokens", type=int, default=48_000)
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--components", type=int, default=8)
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--covariance", default="full", choices=("full", "diag"))
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for torch and BLAS (0: default)")
    parser.add_argument("--skip-sklearn", action="store_true")
    parser.add_argument("--refit-only", action="store_true", help="time only GaussianAnchors.fit")
    parser.add_argument("--random-split", action="store_true", help="refit with the released split quirk")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(
        "cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()) else "cpu"
    )
    config = AnchoringConfig(
        enabled=True,
        covariance=args.covariance,
        init_components=args.components,
        em_iterations=args.iterations,
        random_split=args.random_split,
    )

    tokens = synthetic_tokens(args.units, args.tokens, args.dim).to(device)  # (M, N, d)
    c = tokens.transpose(0, 1).contiguous()  # (N, M, d)
    high, low = c.amax(dim=(1, 2), keepdim=True), c.amin(dim=(1, 2), keepdim=True)
    x = (c - high) / (high - low)  # [-1, 0] per unit, as GaussianAnchors.fit scales it
    g = torch.Generator().manual_seed(1)
    index = torch.rand(args.units, args.tokens, generator=g).topk(args.components).indices.to(device)
    start = initial_mixture(x, index, args.covariance == "full")

    result = {}
    if not args.refit_only:
        em(x[:, :1000], start, 1, config.reg_covar)  # warm-up (allocator, GPU kernels)
        sync(device)
        began = time.perf_counter()
        fitted = em(x, start, args.iterations, config.reg_covar)
        sync(device)
        em_seconds = time.perf_counter() - began
        print(f"batched EM: {em_seconds:.1f} s", file=sys.stderr)
        result |= {"em_seconds": em_seconds, "em_log_likelihood": mean_log_likelihood(fitted, x)}

    if not (args.skip_sklearn or args.refit_only):
        xs = x.cpu().numpy()
        means = start.means.cpu().numpy()
        eye = np.eye(args.dim) if args.covariance == "full" else np.ones(args.dim)
        sk_seconds, sk_scores = 0.0, []
        with threadpool_limits(args.threads or None), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ConvergenceWarning: a fixed number of steps on purpose
            for i in range(args.units):
                model = GaussianMixture(
                    args.components, covariance_type=args.covariance, max_iter=args.iterations, tol=0,
                    reg_covar=config.reg_covar, init_params="random_from_data", random_state=0,
                    weights_init=np.full(args.components, 1 / args.components), means_init=means[i],
                    precisions_init=np.stack([eye] * args.components),
                )  # fmt: skip
                began = time.perf_counter()
                model.fit(xs[i])
                sk_seconds += time.perf_counter() - began
                sk_scores.append(model.score(xs[i]))
        print(f"scikit-learn, unit by unit: {sk_seconds:.1f} s", file=sys.stderr)
        result |= {
            "sklearn_seconds": sk_seconds,
            "sklearn_log_likelihood": float(np.mean(sk_scores)),
            "speedup_vs_sklearn": sk_seconds / em_seconds,
        }

    sync(device)
    anchors = GaussianAnchors(config, args.units, args.dim).to(device)
    stats = anchors.fit(tokens, torch.Generator(device).manual_seed(2))
    result |= {"refit_" + k: v for k, v in stats.items()}

    report = {
        "host": {
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "load_average": os.getloadavg(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name() if device.type == "cuda" else None,
        },
        "device": device.type,
        "problem": {
            k: getattr(args, k)
            for k in ("units", "tokens", "dim", "components", "iterations", "covariance", "random_split")
        },
        "result": result,
    }
    print(json.dumps(report, indent=2))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=out, suffix=".tmp", delete=False) as f:
        json.dump(report, f, indent=2)
    suffix = "-random_split" if args.random_split else ""
    os.replace(f.name, out / f"dyga_fit-{device.type}{suffix}.json")


if __name__ == "__main__":
    main()
