"""Gradient-boosted trees for DCI: scikit-learn's default ``GradientBoostingClassifier``, batched.

DCI's canonical estimator (disentanglement_lib) is ``GradientBoostingClassifier()`` with default
settings, fitted once per factor. This module fits the same model, written from the algorithm's
definition (Friedman 2001, "Greedy function approximation", Algorithm 6 with K trees per round),
for every factor at once, in one of two backends (``backend``) that grow the same trees, to the
bit on CPU (but for the one validity rule that differs, in "Ties" below):

- ``"torch"`` (``gbt_torch``): a few large torch ops per tree level (branch and bound over blocks
  of sorted positions) that run unchanged on CPU or CUDA; the only backend on CUDA.
- ``"numba"`` (``gbt_numba``): fused, parallel CPU kernels, one pass per (tree, feature) pair and
  level over the presorted samples; faster on a CPU (measured in ``benchmarks/dci_speed.py``).
The split rules they share (which nodes may split, ties, importances) are ``gbt_splits``; this
module holds the API and the boosting state (init, rounds, importances, accuracies).
- ``"auto"`` (default): numba on CPU, torch on CUDA. numba is a declared dependency, so the
  choice depends on the device only; without numba a CPU fit is an error, not a fallback.

The model (scikit-learn's defaults):
- Codes are cast to float32 (as scikit-learn does); factor classes are those seen in training.
- Init: class-prior log-odds (binary: ``log(p/(1-p))``; K classes: ``log p_k``, clipped to
  [eps, 1-eps]; a shift common to all classes changes nothing).
- 100 rounds, learning rate 0.1. Each round fits one regression tree per class (one in total
  for a binary factor) to the negative gradient r = y_k - p_k of the multinomial deviance,
  with p from the previous round's raw scores.
- Trees: depth 3, exact best splits over all features, min_samples_leaf 1, no subsampling,
  ``friedman_mse``: maximise n_l n_r (mean_r - mean_l)^2 = (n_l S_r - n_r S_l)^2 / (n_l n_r),
  computed in float64 as (n_l S - N S_l)^2 / (n_l (N - n_l)) from exact sums (next item).
  (scikit-learn 1.9 grows ``squared_error`` trees, its ``criterion`` being deprecated; the proxy
  S_l^2 / n_l + S_r^2 / n_r is this over N plus S^2 / N, per node: the same maximiser.)
  Thresholds are midpoints of consecutive distinct values (gap > 1e-7 in float32), samples
  ``x <= threshold`` go left. A node is a leaf at depth 3, when its residual variance is
  <= float64 eps, or when no feature has a valid split.
- The trees are fitted to the residuals rounded to multiples of 2^-q, q = 52 - ceil(log2 n)
  (2^-38, about 4e-12, at n = 10000), so that every sum of residuals is exact in float64 whatever
  its order: a split's score is a function of its partition alone, whatever the backend, device
  or thread count. (Leaf values use the unrounded residuals.) A deliberate deviation:
  scikit-learn's scores carry its summation order's rounding, ~1e-12 relative, where this
  rounding sits too.
- Leaves take one Newton step: sum r / sum p (1 - p), times (K-1)/K for K > 2 classes (Friedman's
  factor, kept by scikit-learn), 0 when the denominator is below 1e-150.
- Importances: each split adds its squared-error decrease n_l n_r / n (mean_l - mean_r)^2 to its
  one feature (also at ties, "Ties" below); summed over every tree of a factor (trees are *not*
  normalised one by one; scikit-learn averages their raw decreases) and normalised to sum 1.
  All-zero when no tree ever split.

Ties, and where we match scikit-learn:
- Thresholds within a feature: scikit-learn scans them in increasing order and keeps a new split
  only if strictly better, so the lowest threshold wins; so do we (first maximum).
- Features: scikit-learn visits them in a fresh random permutation at every node (Fisher-Yates
  from ``random_state``, even with all features) and keeps the first strictly better, so between
  features with exactly equal scores its choice is random, each tied feature equally likely. So
  is ours: at every node the tied feature with the largest of a uniform key per (round, tree,
  node, feature), drawn from ``random_state`` (``gbt_splits.tie_keys``), takes the split and all
  its importance. Our generator is not scikit-learn's, so at a tie the two pick independently,
  as two scikit-learn seeds do; D, C and I then agree within scikit-learn's own seed-to-seed
  spread, not to the bit. Such ties are common: any node of 2 or 3 samples is usually split
  alike by several codes, correlated codes (a trained encoder's) order small nodes alike, and
  in early rounds, when the residuals take few values, different partitions with the same left
  count and class counts score exactly alike (with exact sums, bit-equal). Ties count when the
  float64 scores are bit-equal.
  Where exactness fails, measurably: scikit-learn's scores carry its summation rounding, which
  depends on the order the node's samples are summed in, so among codes that split a node
  alike it draws at random only among those that sort its samples the same way, and the
  rounding picks between such groups (not uniformly). For codes that order samples alike but
  in opposite directions (a unit and its negation) it favours one: in a test with five
  increasing transforms and one negation of each of 3 signals (300 points, 30 rounds) the
  negated copy took about half of the root splits on its signal instead of 1/6, and C read
  0.188-0.192 (seeds 0-2) against our 0.115-0.125. On real codes, whose units are not exact
  copies, the effect stays within scikit-learn's seed spread (benchmarks/RESULTS.md, issue 27's
  battery), but it is why ``gbt`` is not scikit-learn to the bit, and
  ``dci_from_codes(importance="sklearn")`` is.
  Why not share a tied node's importance equally among its features (the expected attribution,
  deterministic; what this module did before issue 27)? D and C are importance-weighted means of
  1 - entropy, and entropy is concave: spreading every tied node's decrease over all its
  features gives each code's row of R more entropy than any one random draw does on average.
  On the trained model of issue 27 (20 units, 5 factors of 3-8 classes, 4000 training points)
  that read D 0.0946 against scikit-learn's 0.1030-0.1070 over seeds; how much it costs depends
  on how many splits tie (on our retrain of that recipe it stayed within scikit-learn's spread;
  RESULTS.md).
- The torch backend scores split positions on each feature's global sort order with per-node
  cumulative sums, so a split counts as valid when some gap between the node's two neighbouring
  values exceeds 1e-7; scikit-learn asks that of the node's own neighbours, and so does the numba
  backend (it scans each node's own values), which is there the closer to scikit-learn. They
  differ only for a chain of values of other nodes less than 1e-7 apart between them (never for
  distinct float32 codes of unit scale); only then can the two backends' trees differ.
- Splits within ~1e-12 relative of each other can swap with scikit-learn (its rounding, our
  residual rounding). Agreement is measured in ``benchmarks/dci_speed.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from diffdrl.metrics.gbt_splits import EPSILON, tie_keys
from diffdrl.metrics.gbt_torch import prepare_blocks, torch_round

MAX_CHUNK_ELEMENTS = 1 << 24  # features x samples x trees per batch of trees (bounds peak memory)
BACKENDS = ("auto", "torch", "numba")


@dataclass
class GBTFit:
    """Per-factor results of the boosted trees: importances (D codes, F factors), accuracies (F,).

    ``backend`` is the one that grew the trees ("torch" or "numba"), ``"auto"`` resolved.
    """

    importances: np.ndarray
    accuracy_train: np.ndarray
    accuracy_test: np.ndarray
    backend: str


def fit_gbt(
    train_codes: np.ndarray,
    train_factors: np.ndarray,
    test_codes: np.ndarray,
    test_factors: np.ndarray,
    *,
    n_estimators: int = 100,
    learning_rate: float = 0.1,
    max_depth: int = 3,
    device: str | torch.device | None = None,
    max_chunk_elements: int = MAX_CHUNK_ELEMENTS,
    backend: str = "auto",
    random_state: int = 0,
) -> GBTFit:
    """Fit one boosted classifier per factor column (all factors batched); importances and accuracies.

    ``backend``: "auto" (numba on CPU, torch on CUDA), "torch" or "numba" (CPU only); see the
    module docstring. Both grow the same trees. ``max_chunk_elements`` bounds the torch backend's
    batches; the numba backend needs no batching (its memory is a few (trees, n) arrays).
    ``random_state`` (int >= 0) seeds the choice between tied features ("Ties" in the module doc).
    """
    model, raw, raw_test, y, y_test = _boost(
        train_codes,
        train_factors,
        test_codes,
        test_factors,
        n_estimators=n_estimators,
        learning_rate=learning_rate,
        max_depth=max_depth,
        device=device,
        max_chunk_elements=max_chunk_elements,
        backend=backend,
        random_state=random_state,
    )
    importances = model.importances()
    acc_train = model.accuracy(raw, y)
    acc_test = model.accuracy(raw_test, y_test)
    return GBTFit(importances, acc_train, acc_test, model.backend)


def resolve_backend(backend: str, device: torch.device) -> str:
    """The backend that ``backend`` names on ``device``: "auto" is numba on CPU, torch elsewhere."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        backend = "numba" if device.type == "cpu" else "torch"
    if backend == "numba":
        if device.type != "cpu":
            raise ValueError(f"backend='numba' runs on the CPU only, got device {str(device)!r}")
        try:
            import diffdrl.metrics.gbt_numba  # noqa: F401 - compiled on first use
        except ImportError as err:
            raise ValueError(
                f"backend='numba' needs the numba package ({err}); install it or pass backend='torch'"
            ) from err
    return backend


def _boost(
    train_codes,
    train_factors,
    test_codes,
    test_factors,
    *,
    n_estimators,
    learning_rate,
    max_depth,
    device,
    max_chunk_elements,
    backend,
    random_state=0,
):
    """The fitted state and the final raw scores, train and test (n, F, Kmax); tests compare these."""
    device = torch.device(device or "cpu")
    backend = resolve_backend(backend, device)
    x, y = _check(train_codes, train_factors, "train")
    x_test, y_test = _check(test_codes, test_factors, "test")
    if x_test.shape[1] != x.shape[1] or y_test.shape[1] != y.shape[1]:
        raise ValueError(
            f"test shapes {x_test.shape}, {y_test.shape} do not match train {x.shape}, {y.shape}"
        )
    for name, value in (("n_estimators", n_estimators), ("max_depth", max_depth)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if not np.isfinite(learning_rate) or learning_rate <= 0:
        raise ValueError(f"learning_rate must be > 0, got {learning_rate!r}")
    if isinstance(random_state, bool) or not isinstance(random_state, (int, np.integer)) or random_state < 0:
        raise ValueError(f"random_state must be an integer >= 0, got {random_state!r}")
    model = _Boosting(x, y, device, max_chunk_elements, backend, int(random_state))
    xt = torch.as_tensor(x, device=device)
    xt_test = torch.as_tensor(x_test, device=device)
    raw, raw_test = model.initial_raw(len(x)), model.initial_raw(len(x_test))
    for _ in range(n_estimators):
        model.round(xt, xt_test, raw, raw_test, learning_rate, max_depth)
    return model, raw, raw_test, y, y_test


def _check(codes, factors, split: str) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(codes)
    y = np.asarray(factors)
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"{split}_codes must have shape (n, K) with n, K >= 1, got {x.shape}")
    if not np.issubdtype(x.dtype, np.number) or not np.isfinite(x).all():
        raise ValueError(f"{split}_codes must be finite numbers")
    if y.ndim != 2 or y.shape[0] != x.shape[0] or y.shape[1] < 1:
        raise ValueError(f"{split}_factors must have shape ({x.shape[0]}, F), got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise TypeError(f"{split}_factors must be integer classes, got dtype {y.dtype}")
    return x.astype(np.float32), y.astype(np.int64)


class _Boosting:
    """The batched state: one column of raw scores per (factor, class) slot, one tree per slot."""

    def __init__(
        self,
        x: np.ndarray,
        y: np.ndarray,
        device: torch.device,
        max_chunk_elements: int,
        backend: str,
        random_state: int = 0,
    ):
        n, d = x.shape
        self.ties = torch.Generator().manual_seed(random_state)  # on the CPU whatever the device
        self.device, self.n, self.d, self.backend = device, n, d, backend
        self.classes = [np.unique(column) for column in y.T]
        for j, c in enumerate(self.classes):
            if len(c) < 2:
                raise ValueError(f"factor {j} has a single class ({c[0]}) in the training codes; need >= 2")
        sizes = [len(c) for c in self.classes]
        self.kmax = max(sizes)
        f = len(sizes)
        # Slots (factor, class) that get a tree: every class, or class 1 only for a binary factor
        # (its slot 0 stays at raw 0, so softmax over [0, raw] is the sigmoid of raw).
        slots = [(j, k) for j, s in enumerate(sizes) for k in (range(s) if s > 2 else (1,))]
        self.tree_cols = torch.tensor([j * self.kmax + k for j, k in slots], device=device)
        self.tree_factor = torch.tensor([j for j, _ in slots], device=device)
        self.newton_scale = torch.tensor(
            [(sizes[j] - 1) / sizes[j] if sizes[j] > 2 else 1.0 for j, _ in slots],
            dtype=torch.float64,
            device=device,
        )
        self.pad = torch.full((f, self.kmax), float("-inf"), dtype=torch.float64)
        for j, c in enumerate(self.classes):
            prior = np.clip(
                np.bincount(np.searchsorted(c, y[:, j]), minlength=len(c)) / n, EPSILON, 1 - EPSILON
            )
            if len(c) > 2:
                self.pad[j, : len(c)] = torch.as_tensor(np.log(prior))
            else:
                self.pad[j, :2] = torch.tensor([0.0, np.log(prior[1] / prior[0])])
        self.pad = self.pad.to(device)
        encoded = np.stack([np.searchsorted(c, y[:, j]) for j, c in enumerate(self.classes)], 1)
        onehot = torch.zeros((n, f, self.kmax), dtype=torch.float64, device=device)
        onehot.scatter_(2, torch.as_tensor(encoded, device=device)[..., None], 1.0)
        self.targets = onehot.reshape(n, -1)[:, self.tree_cols]  # (n, T)
        self.gain = torch.zeros((d, len(slots)), dtype=torch.float64, device=device)  # per tree slot
        # Residuals are rounded to multiples of 1/quantum: sums of up to n of them are exact.
        self.quantum = 2.0 ** (52 - math.ceil(math.log2(max(n, 2))))
        xt = torch.as_tensor(x, device=device)
        order = torch.argsort(xt, dim=0, stable=True).T.contiguous()  # (D, n) presorted features
        xs = torch.gather(xt.T, 1, order)  # (D, n) sorted values
        self.sorted_values = xs
        if backend == "numba":
            self.targets_numpy = self.targets.contiguous().numpy()
            self.order_numpy = order.numpy().astype(np.int32)  # half the cache of int64
            self.sorted_numpy = xs.numpy()
            self.codes_numpy = x  # (n, D) float32, for routing
        else:
            prepare_blocks(self, order, xs, max_chunk_elements)

    def block_sums(self, values: torch.Tensor) -> torch.Tensor:
        """Sums of ``values`` (n, C) over each feature's blocks of sorted positions: (D, nb, C)."""
        return torch.sparse.mm(self.block_matrix, values).view(self.d, self.nb, -1)

    def initial_raw(self, n: int) -> torch.Tensor:
        return self.pad.expand(n, -1, -1).clone()  # (n, F, Kmax)

    def round(self, x, x_test, raw, raw_test, learning_rate: float, max_depth: int) -> None:
        """One boosting round: K trees per factor on the gradient at the current raw scores."""
        p = torch.softmax(raw, dim=2).reshape(self.n, -1)[:, self.tree_cols]  # (n, T)
        keys = tie_keys(self.ties, self.d, p.shape[1], max_depth)
        if self.backend == "numba":
            from diffdrl.metrics.gbt_numba import numba_round

            numba_round(self, p, keys, raw, raw_test, x_test, learning_rate, max_depth)
        else:
            torch_round(self, p, keys, raw, raw_test, x, x_test, learning_rate, max_depth)

    def importances(self) -> np.ndarray:
        total = torch.zeros((self.d, len(self.classes)), dtype=torch.float64, device=self.device)
        total.index_add_(1, self.tree_factor, self.gain)
        sums = total.sum(0, keepdim=True)
        return torch.where(sums > 0, total / sums.clamp_min(1e-300), 0.0).cpu().numpy()

    def accuracy(self, raw: torch.Tensor, y: np.ndarray) -> np.ndarray:
        index = raw.argmax(2).cpu().numpy()  # first maximum: class order breaks ties, as in sklearn
        predicted = np.stack([c[index[:, j]] for j, c in enumerate(self.classes)], 1)
        return np.mean(predicted == y, axis=0).astype(np.float64)
