"""Gradient-boosted trees for DCI: scikit-learn's default ``GradientBoostingClassifier``, batched.

DCI's canonical estimator (disentanglement_lib) is ``GradientBoostingClassifier()`` with default
settings, fitted once per factor. This module fits the same model, written from the algorithm's
definition (Friedman 2001, "Greedy function approximation", Algorithm 6 with K trees per round),
for every factor at once, in one of two backends (``backend``) that grow the same trees, to the
bit on CPU (but for the one validity rule that differs, in "Ties" below):

- ``"torch"``: a few large torch ops per tree level (branch and bound over blocks of sorted
  positions) that run unchanged on CPU or CUDA; the only backend on CUDA.
- ``"numba"``: fused, parallel CPU kernels (``gbt_numba``), one pass per (tree, feature) pair and
  level over the presorted samples; faster on a CPU (measured in ``benchmarks/dci_speed.py``).
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
  feature; summed over every tree of a factor (trees are *not* normalised one by one; scikit-learn
  averages their raw decreases) and normalised to sum 1. All-zero when no tree ever split.

Ties, and where we match scikit-learn:
- Thresholds within a feature: scikit-learn scans them in increasing order and keeps a new split
  only if strictly better, so the lowest threshold wins; so do we (first maximum).
- Features: scikit-learn visits them in a fresh random permutation at every node (Fisher-Yates
  from ``random_state``, even with all features) and keeps the first strictly better, so between
  features with exactly equal scores (duplicate columns) its choice is random. Each tied feature
  is equally likely, so we split that node's importance equally among them (the expected
  attribution, deterministic) and grow the tree from the lowest-indexed one. Such ties are not
  rare: besides duplicate columns, any node of 2 or 3 samples is usually split identically by
  several codes. The training partition, hence every later tree and every training prediction,
  is then the same whichever is taken; held-out points may be routed differently, and the
  importance of that (small) node is attributed differently. Ties count when the float64 scores
  are bit-equal. Different partitions can also score exactly alike in exact arithmetic (early
  rounds, when the residuals take few values: two 4-vs-34 splits with the same class counts).
  With exact sums, two such splits with the same left count and left sum score bit-equal and are
  treated as tied features (shared importance, the lowest-indexed feature grows), where
  scikit-learn's rounding picks one (or its random order when bit-equal). From there the trees
  differ, as they do between two scikit-learn ``random_state`` values; on pure-noise codes that
  spread is measured in benchmarks/RESULTS.md (scikit-learn seed 0 vs 1: I 0.003, importances 0.009).
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
import warnings
from dataclasses import dataclass

import numpy as np
import torch

EPSILON = float(np.finfo(np.float64).eps)  # scikit-learn's "pure node" variance
FEATURE_THRESHOLD = np.float32(1e-7)  # values closer than this (float32) are not split apart
MAX_CHUNK_ELEMENTS = 1 << 24  # features x samples x trees per batch of trees (bounds peak memory)
BLOCK = 32  # sorted positions per block of the split search
GROUP = 8  # blocks per group, the split search's first stage
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
) -> GBTFit:
    """Fit one boosted classifier per factor column (all factors batched); importances and accuracies.

    ``backend``: "auto" (numba on CPU, torch on CUDA), "torch" or "numba" (CPU only); see the
    module docstring. Both grow the same trees. ``max_chunk_elements`` bounds the torch backend's
    batches; the numba backend needs no batching (its memory is a few (trees, n) arrays).
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
    model = _Boosting(x, y, device, max_chunk_elements, backend)
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
        self, x: np.ndarray, y: np.ndarray, device: torch.device, max_chunk_elements: int, backend: str
    ):
        n, d = x.shape
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
            self._prepare_blocks(order, xs, max_chunk_elements)

    def _prepare_blocks(self, order: torch.Tensor, xs: torch.Tensor, max_chunk_elements: int) -> None:
        """The torch backend's search structures: blocks of sorted positions and their sum matrix."""
        d, n = order.shape
        device = order.device
        gap = xs[:, 1:] > xs[:, :-1] + torch.tensor(FEATURE_THRESHOLD, device=device)
        # Blocks of BLOCK consecutive sorted positions per feature (the last one padded with
        # sample n, which belongs to no node): the unit of the branch-and-bound split search.
        self.block = b = BLOCK
        nb = -(-n // (b * GROUP)) * GROUP  # whole groups of blocks
        fill = nb * b - n
        order_pad = torch.cat([order, torch.full((d, fill), n, device=device)], 1)
        splittable = torch.cat([gap, torch.zeros((d, fill + 1), dtype=torch.bool, device=device)], 1)
        self.order_blocks = order_pad.view(d, nb, b)
        self.splittable_blocks = splittable.view(d, nb, b)
        self.end_splittable = self.splittable_blocks[..., -1]
        self.any_splittable = self.splittable_blocks.any(-1)
        self.block_count = (n - b * torch.arange(nb, device=device)).clamp(0, b).double()
        self.group_splittable = self.any_splittable.view(d, -1, GROUP).any(-1)
        self.group_end_splittable = self.end_splittable.view(d, -1, GROUP)[..., -1]
        rows = torch.arange(d, device=device)[:, None] * nb + torch.arange(n, device=device) // b
        rank_rows = torch.empty_like(order)
        rank_rows.scatter_(1, order, rows)  # block row of each (feature, sample)
        with warnings.catch_warnings():  # torch flags sparse CSR as beta; mm with it is what we use
            warnings.simplefilter("ignore", UserWarning)
            self.block_matrix = (
                torch.sparse_coo_tensor(
                    torch.stack([rank_rows.reshape(-1), torch.arange(n, device=device).repeat(d)]),
                    torch.ones(d * n, dtype=torch.float64, device=device),
                    (d * nb, n),
                    check_invariants=False,
                )
                .coalesce()
                .to_sparse_csr()
            )
        self.nb = nb
        self.chunk = max(1, int(max_chunk_elements) // (6 * n))  # trees per batch

    def block_sums(self, values: torch.Tensor) -> torch.Tensor:
        """Sums of ``values`` (n, C) over each feature's blocks of sorted positions: (D, nb, C)."""
        return torch.sparse.mm(self.block_matrix, values).view(self.d, self.nb, -1)

    def initial_raw(self, n: int) -> torch.Tensor:
        return self.pad.expand(n, -1, -1).clone()  # (n, F, Kmax)

    def round(self, x, x_test, raw, raw_test, learning_rate: float, max_depth: int) -> None:
        """One boosting round: K trees per factor on the gradient at the current raw scores."""
        p = torch.softmax(raw, dim=2).reshape(self.n, -1)[:, self.tree_cols]  # (n, T)
        if self.backend == "numba":
            _numba_round(self, p, raw, raw_test, x_test, learning_rate, max_depth)
            return
        residual = self.targets - p
        hessian = p * (1 - p)
        fitted = torch.round(residual * self.quantum) / self.quantum  # what the trees split
        flat, flat_test = raw.view(self.n, -1), raw_test.view(len(x_test), -1)
        for start in range(0, residual.shape[1], self.chunk):
            trees = slice(start, start + self.chunk)
            leaf, leaf_test, gain = _grow(self, x, x_test, fitted[:, trees], max_depth)
            self.gain[:, trees] += gain
            num = torch.zeros((2**max_depth, leaf.shape[1]), dtype=torch.float64, device=self.device)
            den = torch.zeros_like(num)
            num.scatter_add_(0, leaf, residual[:, trees])
            den.scatter_add_(0, leaf, hessian[:, trees])
            value = torch.where(den.abs() < 1e-150, 0.0, num / den) * self.newton_scale[trees]
            cols = self.tree_cols[trees]
            flat[:, cols] += learning_rate * torch.gather(value, 0, leaf)
            flat_test[:, cols] += learning_rate * torch.gather(value, 0, leaf_test)

    def importances(self) -> np.ndarray:
        total = torch.zeros((self.d, len(self.classes)), dtype=torch.float64, device=self.device)
        total.index_add_(1, self.tree_factor, self.gain)
        sums = total.sum(0, keepdim=True)
        return torch.where(sums > 0, total / sums.clamp_min(1e-300), 0.0).cpu().numpy()

    def accuracy(self, raw: torch.Tensor, y: np.ndarray) -> np.ndarray:
        index = raw.argmax(2).cpu().numpy()  # first maximum: class order breaks ties, as in sklearn
        predicted = np.stack([c[index[:, j]] for j, c in enumerate(self.classes)], 1)
        return np.mean(predicted == y, axis=0).astype(np.float64)


def _grow(model: _Boosting, x, x_test, residual, max_depth: int):
    """Grow one depth-``max_depth`` tree per column of ``residual`` (n, T) level by level.

    Returns leaf ids of the training and test samples (n, T), (m, T) and each tree's importance
    gains (D, T). Node m at depth l has children 2m and 2m+1; a node that stops splitting sends
    all its samples to child 2m, so leaf ids group samples exactly as the tree's leaves do. Each
    level searches all its nodes of all trees at once: a column per (node, tree) pair.
    """
    n, t = residual.shape
    dev = residual.device
    d, nb = model.d, model.nb
    cols = torch.arange(t, device=dev)
    node = torch.zeros((n, t), dtype=torch.long, device=dev)
    node_test = torch.zeros((len(x_test), t), dtype=torch.long, device=dev)
    alive = torch.ones((1, t), dtype=torch.bool, device=dev)  # (nodes, T): may still split
    gain = torch.zeros((d, t), dtype=torch.float64, device=dev)
    residual_pad = torch.cat([residual, torch.zeros((1, t), dtype=torch.float64, device=dev)])
    size = residual.abs()
    # stats: (3, D, nb, nodes T) residual sum, |residual| sum and member count per block.
    root = model.block_sums(torch.stack([residual, size], 1).view(n, -1)).view(d, nb, 2, t)
    stats = torch.cat([root.permute(2, 0, 1, 3), model.block_count.view(1, 1, nb, 1).expand(1, d, nb, t)])
    for depth in range(max_depth):
        m = 2**depth
        if depth > 0:  # left children summed directly, right children as parent minus left
            member = (node[:, None, :] == 2 * torch.arange(m // 2, device=dev)[:, None]).double()
            left = torch.stack([member * residual[:, None], member * size[:, None], member], 1)
            left = model.block_sums(left.view(n, -1)).view(d, nb, 3, m // 2 * t).permute(2, 0, 1, 3)
            pair = torch.stack([left, stats - left], 3)  # (3, D, nb, 2, m/2 T)
            stats = pair.view(3, d, nb, 2, m // 2, t).transpose(3, 4).reshape(3, d, nb, m * t)
        count, total, variance = _node_stats(node, residual, m)
        ok = alive.reshape(-1) & (variance.reshape(-1) > EPSILON)  # (m T,) nodes that may split
        node_pad = torch.cat([node, torch.full((1, t), -1, device=dev)])
        best, share, feature, position = _search(
            model, *stats, count.reshape(-1), total.reshape(-1), ok, residual_pad, node_pad, t
        )
        split = _add_gain(gain, best, share, ok, count, n)
        feature, position = feature.reshape(m, t), position.reshape(m, t)
        alive = torch.stack([split, split], 1).reshape(2 * m, t)  # children of split nodes
        cut = model.sorted_values[feature, position].double()  # (m, T) last value of the left part
        index = node * t + cols  # (n, T) flat (node, tree) of every sample
        value = torch.gather(x, 1, feature.view(-1)[index]).double()
        threshold = _thresholds(value, node, cut.view(-1)[index])
        node = 2 * node + (split.view(-1)[index] & (value > threshold.view(-1)[index])).long()
        index = node_test * t + cols
        value = torch.gather(x_test, 1, feature.view(-1)[index]).double()
        node_test = 2 * node_test + (split.view(-1)[index] & (value > threshold.view(-1)[index])).long()
    return node, node_test, gain


def _numba_round(model: _Boosting, p, raw, raw_test, x_test, rate, depth: int):
    """The numba backend's round from the probabilities ``p`` (n, T): trees, leaves, raw updates.

    ``raw`` and ``raw_test`` (n, F, Kmax) are updated in place. The kernels (``gbt_numba``) do the
    passes over samples, with ``_Boosting.round``'s arithmetic (residual, hessian, rounding); the
    small per-level decisions (``_choose``, ``_add_gain``) are the torch backend's own functions.
    """
    from diffdrl.metrics import gbt_numba as kernels

    # (T, n) residuals, hessians and rounded residuals; the last also (n, T), the roots' layout
    residual, hessian, r, rows = kernels.gradients(p.contiguous().numpy(), model.targets_numpy, model.quantum)
    trees, n = r.shape
    codes_test = x_test.contiguous().numpy()  # (m, D)
    kind = np.int8 if depth <= 6 else np.int32  # node ids < 2^depth; small ones stay in cache
    node = np.zeros((trees, n), dtype=kind)
    node_test = np.zeros((trees, len(codes_test)), dtype=kind)
    alive = torch.ones((1, trees), dtype=torch.bool)  # (nodes, T): may still split
    gain = torch.zeros((model.d, trees), dtype=torch.float64)
    for level in range(depth):
        m = 2**level
        count, total, square = (torch.from_numpy(a) for a in kernels.node_stats(node, r, m))  # (m, T)
        ok = alive & (_variance(count, total, square) > EPSILON)
        nodes = count.numpy(), total.numpy(), ok.numpy()
        if level == 0:
            per_feature, threshold = kernels.root_splits(
                model.order_numpy, model.sorted_numpy, rows, *nodes, FEATURE_THRESHOLD
            )
        else:
            per_feature, threshold = kernels.best_splits(
                model.order_numpy, model.sorted_numpy, node, r, *nodes, FEATURE_THRESHOLD
            )
        best, share, feature = _choose(torch.from_numpy(per_feature))
        split = _add_gain(gain, best, share, ok.reshape(-1), count, n).numpy()
        feature = feature.numpy()
        cut = threshold[feature, np.arange(m * trees)].reshape(m, trees)
        feature = feature.reshape(m, trees)
        kernels.route(model.codes_numpy, node, split, feature, cut)
        kernels.route(codes_test, node_test, split, feature, cut)
        alive = torch.from_numpy(np.repeat(split, 2, axis=0))  # children 2c, 2c + 1 of split nodes
    model.gain += gain
    kernels.add_leaves(
        node,
        node_test,
        residual,
        hessian,
        model.newton_scale.numpy(),
        model.tree_cols.numpy(),
        rate,
        raw.view(n, -1).numpy(),
        raw_test.view(node_test.shape[1], -1).numpy(),
        2**depth,
    )


def _node_stats(node, residual, m: int):
    """Per-node sample count, residual sum and variance (m, T) each."""
    count = torch.zeros((m, node.shape[1]), dtype=torch.float64, device=node.device)
    total, square = torch.zeros_like(count), torch.zeros_like(count)
    count.scatter_add_(0, node, torch.ones_like(residual))
    total.scatter_add_(0, node, residual)
    square.scatter_add_(0, node, residual * residual)
    return count, total, _variance(count, total, square)


def _variance(count, total, square):
    safe = count.clamp_min(1)
    return square / safe - (total / safe) ** 2


def _choose(per_feature):
    """Best score per column of ``per_feature`` (D, C), each feature's share (bit-equal ties split
    it equally), and the lowest-indexed best feature (C,): the rule for both backends."""
    best = per_feature.amax(0)
    tied = (per_feature == best) & torch.isfinite(best)
    share = tied / tied.sum(0).clamp_min(1)
    feature = torch.argmax(tied.to(torch.int8), 0)  # lowest-indexed best feature
    return best, share, feature


def _add_gain(gain, best, share, ok, count, n: int):
    """Add one level's importance decreases to ``gain`` (D, T); the (m, T) mask of split nodes."""
    m, t = count.shape
    split = (ok & torch.isfinite(best)).reshape(m, t)
    decrease = torch.where(split.reshape(-1), best / count.reshape(-1).clamp_min(1), 0.0) / n
    gain += (share * decrease).reshape(-1, m, t).sum(1)
    return split


def _score(left_count, left_sum, count, total):
    """friedman_mse score (n_l S_r - n_r S_l)^2 / (n_l n_r), with S_r = S - S_l, n_r = N - n_l."""
    diff = left_count * total - count * left_sum
    return diff * diff / (left_count * (count - left_count)).clamp_min(1)


def _upper(a, big_a, block_sum, block_abs, block_count, count, total, reachable):
    """Upper bound of the score at any position inside blocks, from the state before each block.

    Before the block the left part has a members and sum A; with k of the block's c members added,
    diff = d0 + k S - N partial with k in [0, c] and partial in [neg, pos] (the members' negative
    and positive parts), so |diff| <= |centre| + half-width of that box, and n_l (N - n_l) is
    smallest at an end of [max(a, 1), min(a + c, N - 1)].
    """
    centre = (a * total - count * big_a) + (block_count * total - count * block_sum) / 2
    reach = centre.abs_().add_((block_count * total.abs() + count * block_abs) / 2)
    lo, hi = a.clamp_min(1), torch.minimum(a + block_count, count - 1)
    den = torch.minimum(lo * (count - lo), hi * (count - hi)).clamp_min_(1)
    return torch.where(reachable & (lo <= hi), reach.square_().div_(den).mul_(1 + 1e-9), float("-inf"))


def _end_scores(left_count, left_sum, count, total, splittable):
    valid = splittable & (left_count >= 1) & (left_count <= count - 1)
    return torch.where(valid, _score(left_count, left_sum, count, total), float("-inf"))


def _search(model, block_sum, block_abs, block_count, count, total, ok, residual_pad, node_pad, t):
    """Exact best split of every column (node, tree): branch and bound over blocks of positions.

    Scores at block ends are exact and give a lower bound L on each column's best; ``_upper``
    bounds every score inside a block. Three stages: groups of GROUP blocks, the blocks of the
    groups whose bound reaches L, then every position of the blocks whose bound reaches L. So the
    result is the exact maximum, with every tie. Returns best score (C,), tie share of each feature
    (D, C), feature and sorted position (C,).
    """
    d, nb, c = block_sum.shape
    dev = block_sum.device
    inf = float("-inf")
    g = GROUP
    # Stage 1: groups of blocks, everywhere.
    gsum, gabs, gcount = (v.reshape(d, nb // g, g, c).sum(2) for v in (block_sum, block_abs, block_count))
    lsum, lcount = gsum.cumsum(1), gcount.cumsum(1)
    lower = _end_scores(lcount, lsum, count, total, model.group_end_splittable[..., None]).amax((0, 1))
    a, big_a = lcount - gcount, lsum - gsum
    upper = _upper(a, big_a, gsum, gabs, gcount, count, total, model.group_splittable[..., None] & ok)
    jg, qg, cg = torch.nonzero((upper >= lower) & (upper > inf), as_tuple=True)
    # Stage 2: the blocks of surviving groups.
    blk = qg[:, None] * g + torch.arange(g, device=dev)  # (k, G)
    jb, cb = jg[:, None], cg[:, None]
    bsum, babs, bcount = block_sum[jb, blk, cb], block_abs[jb, blk, cb], block_count[jb, blk, cb]
    a = a[jg, qg, cg][:, None] + bcount.cumsum(1) - bcount
    big_a = big_a[jg, qg, cg][:, None] + bsum.cumsum(1) - bsum
    cnt, tot = count[cb], total[cb]
    ends = _end_scores(a + bcount, big_a + bsum, cnt, tot, model.end_splittable[jb, blk])
    lower = lower.scatter_reduce(0, cb.expand_as(ends).reshape(-1), ends.reshape(-1), "amax")
    upper = _upper(a, big_a, bsum, babs, bcount, cnt, tot, model.any_splittable[jb, blk] & ok[cb])
    rows, within = torch.nonzero((upper >= lower[cb]) & (upper > inf), as_tuple=True)
    j, q, col = jg[rows], blk[rows, within], cg[rows]
    a, big_a = a[rows, within], big_a[rows, within]
    # Stage 3: every position of the surviving blocks.
    per_feature = torch.full((d * c,), inf, dtype=torch.float64, device=dev)
    scores, where = [], []
    step = max(1, (1 << 20) // model.block)
    for s in range(0, len(j), step):
        jj, qq, cc = j[s : s + step], q[s : s + step], col[s : s + step]
        ids = model.order_blocks[jj, qq]  # (k, b) samples of the block in sorted order
        tree = (cc % t)[:, None]
        member = node_pad[ids, tree] == (cc // t)[:, None]
        lsum = big_a[s : s + step, None] + torch.where(member, residual_pad[ids, tree], 0.0).cumsum(1)
        lcount = a[s : s + step, None] + member.cumsum(1)
        score = _end_scores(
            lcount, lsum, count[cc][:, None], total[cc][:, None], model.splittable_blocks[jj, qq]
        )
        score, offset = score.max(1)  # first maximum within the block
        scores.append(score)
        where.append(qq * model.block + offset)
        per_feature.scatter_reduce_(0, jj * c + cc, score, "amax")
    best, share, feature = _choose(per_feature.view(d, c))
    position = torch.zeros(c, dtype=torch.long, device=dev)
    if scores:
        score, spot = torch.cat(scores), torch.cat(where)
        first = torch.full((c,), model.n, dtype=torch.long, device=dev)
        hit = (j == feature[col]) & (score == best[col])
        first.scatter_reduce_(0, col[hit], spot[hit], "amin")
        position = first.clamp_max(model.n - 1)
    return best, share, feature, position


def _thresholds(value, node, cut):
    """scikit-learn's thresholds (nodes, T): midpoint of the node's largest left, smallest right value.

    ``value`` (n, T) is each sample's value of its node's split feature, ``cut`` (n, T) the last
    sorted value of its node's left part.
    """
    m = int(node.max()) + 1
    left = value <= cut
    lmax = torch.full((m, node.shape[1]), float("-inf"), dtype=torch.float64, device=value.device)
    rmin = torch.full_like(lmax, float("inf"))
    lmax.scatter_reduce_(0, node, torch.where(left, value, float("-inf")), "amax")
    rmin.scatter_reduce_(0, node, torch.where(left, float("inf"), value), "amin")
    mid = lmax / 2.0 + rmin / 2.0
    return torch.where((mid == rmin) | ~torch.isfinite(mid), lmax, mid)
