"""The numba backend of ``gbt``: each tree level of every tree as a few fused, parallel CPU loops.

The torch backend finds each level's exact best splits by branch and bound over blocks of sorted
positions, as ~70 batched tensor ops; on a CPU most of its time goes to dispatch and temporaries.
Here one compiled loop per (tree, feature) pair walks the feature's presorted samples once, keeping
running residual sums and counts for every node of that tree at this level (each sample belongs to
one node), and scores every valid split of every node on the way; two trees share each walk, and
at the roots one walk per feature serves every tree. The other kernels are the gradients, the
per-node statistics, the routing of samples to children and the Newton leaves with the raw-score
update. Every rule (scores, validity, thresholds, ties, importances) is ``gbt``'s; the arithmetic
is the same operations in the same order wherever the result depends on order (sums in sample
order, like torch's CPU ``scatter_add``), and the split sums are exact (``gbt`` quantises the
residuals the trees are fitted to), so both backends grow the same trees, to the bit.

One rule is checked per node instead of per feature: a split between two consecutive samples of a
node counts as valid when their values differ by more than 1e-7 (float32), which is
scikit-learn's rule; the torch backend asks that of some pair of neighbours in the feature's
global order between them (see ``gbt``), which differs only for chains of values closer than 1e-7.

Kernels are compiled on first use and cached on disk (``cache=True``: next to this file, or in
numba's user cache directory where that is read-only): about 11 s once, then under a second per
process. They run on numba's threads (``NUMBA_NUM_THREADS``), parallel over samples, trees or
(tree pair, feature) jobs. Measured at canonical size (10000 / 5000, 20 codes, 6 factors, 57
trees a round) on 2 cores: about 10 s against 30 s for the torch backend and 231.5 s for
scikit-learn (``benchmarks/results/dci_speed_gbt*.json``).
"""

from __future__ import annotations

import numba
import numpy as np
import torch

from diffdrl.metrics.gbt_splits import FEATURE_THRESHOLD, add_gain, choose, level_keys, may_split

# A score q / den can only beat ``top`` if q >= top * den up to rounding; 1e-12 is far above that
# rounding (a few 1e-16), so the test q >= (top * SLACK) den never drops a better split and skips
# most divisions.
SLACK = 1.0 - 1e-12


@numba.njit(parallel=True, cache=True)
def gradients(p, targets, quantum):
    """Residuals, hessians and rounded residuals (T, n) each, and the rounded ones (n, T) too.

    ``p`` and ``targets`` (n, T): gbt's ``targets - p``, ``p * (1 - p)`` and
    ``round(residual * quantum) / quantum`` (half to even, as ``torch.round``), fused.
    """
    n, trees = p.shape
    residual = np.empty((trees, n))
    hessian = np.empty((trees, n))
    fitted = np.empty((trees, n))
    rows = np.empty((n, trees))
    tile = 64  # samples per tile: the transposed reads and writes stay in cache
    for block in numba.prange((n + tile - 1) // tile):
        for t in range(trees):
            for s in range(block * tile, min(n, block * tile + tile)):
                r = targets[s, t] - p[s, t]
                q = np.rint(r * quantum) / quantum
                residual[t, s] = r
                hessian[t, s] = p[s, t] * (1.0 - p[s, t])
                fitted[t, s] = q
                rows[s, t] = q
    return residual, hessian, fitted, rows


@numba.njit(parallel=True, cache=True)
def node_stats(node, residual, m):
    """Per-node sample count, residual sum and sum of squares (m, T), summed in sample order."""
    trees, n = node.shape
    count = np.zeros((m, trees))
    total = np.zeros((m, trees))
    square = np.zeros((m, trees))
    for t in numba.prange(trees):
        counts = np.zeros(m)  # per-thread accumulators: no shared cache lines in the loop
        totals = np.zeros(m)
        squares = np.zeros(m)
        for s in range(n):
            c = node[t, s]
            r = residual[t, s]
            counts[c] += 1.0
            totals[c] += r
            squares[c] += r * r
        for c in range(m):
            count[c, t] = counts[c]
            total[c, t] = totals[c]
            square[c, t] = squares[c]
    return count, total, square


@numba.njit(parallel=True, cache=True)
def root_splits(order, sorted_values, residual, count, total, ok, gap):
    """``best_splits`` for the roots (level 0), trees innermost: (D, T) scores and thresholds.

    ``residual`` is (n, T) here. Every sample is in the root, so a position's validity and left
    count are the same for every tree, and each sample's residuals are one contiguous row.
    """
    d, n = order.shape
    trees = count.shape[1]
    best = np.full((d, trees), -np.inf)
    threshold = np.zeros((d, trees))
    for j in numba.prange(d):
        left_sum = np.zeros(trees)
        top = np.full(trees, -np.inf)
        where = np.zeros(trees, dtype=np.int64)  # sorted position of the best split's first right sample
        big_n = count[0].copy()
        sums = total[0].copy()
        may = ok[0].copy()
        for p in range(n):
            s = order[j, p]
            if p >= 1 and sorted_values[j, p] > sorted_values[j, p - 1] + gap:
                k = np.float64(p)
                for t in range(trees):  # branch-free, so that it vectorises over trees
                    diff = k * sums[t] - big_n[t] * left_sum[t]
                    score = diff * diff / max(k * (big_n[t] - k), 1.0)
                    better = may[t] & (score > top[t])
                    top[t] = score if better else top[t]
                    where[t] = p if better else where[t]
            for t in range(trees):
                left_sum[t] += residual[s, t]
        for t in range(trees):
            best[j, t] = top[t]
            low = np.float64(sorted_values[j, max(where[t] - 1, 0)])
            threshold[j, t] = _threshold(top[t], low, np.float64(sorted_values[j, where[t]]))
    return best, threshold


@numba.njit(parallel=True, cache=True)
def best_splits(order, sorted_values, node, residual, count, total, ok, gap):
    """Best friedman_mse score and its threshold per (feature, node-major column): (D, m T) each.

    ``order`` and ``sorted_values`` (D, n) are each feature's stable sort order and sorted values
    (float32, like ``gap``, gbt's FEATURE_THRESHOLD: the validity test is in float32);
    ``node`` (T, n) each sample's node, ``residual`` (T, n); ``count``, ``total``, ``ok`` (m, T) the
    nodes' sizes, residual sums and whether they may split. Column ``c T + t`` is node c of tree t,
    as in the torch backend. Within a feature the first (lowest-threshold) maximum is kept; -inf
    marks a feature with no valid split of that node.
    """
    d, n = order.shape
    m, trees = count.shape
    best = np.full((d, m * trees), -np.inf)
    threshold = np.zeros((d, m * trees))
    pairs = (trees + 1) // 2  # two trees per job share the walk over the feature's order
    for job in numba.prange(pairs * d):
        ta = 2 * (job // d)
        tb = min(ta + 1, trees - 1)  # an odd last tree is scanned twice, alike
        j = job % d
        state = np.zeros((2, m, 4))  # per tree and node: left count, left sum, sum, count
        for c in range(m):
            state[0, c, 2] = total[c, ta]
            state[0, c, 3] = count[c, ta]
            state[1, c, 2] = total[c, tb]
            state[1, c, 3] = count[c, tb]
        top = np.full((2, m), -np.inf)
        low = np.zeros((2, m))  # the best split's largest left and smallest right values
        high = np.zeros((2, m))
        trees_ab = node[ta], residual[ta], ok[:, ta].copy(), node[tb], residual[tb], ok[:, tb].copy()
        _scan_pair(order[j], sorted_values[j], *trees_ab, state[0], state[1], top, low, high, gap)
        for i, t in enumerate((ta, tb)):
            for c in range(m):
                best[j, c * trees + t] = top[i, c]
                threshold[j, c * trees + t] = _threshold(top[i, c], low[i, c], high[i, c])
    return best, threshold


@numba.njit(cache=True)
def _scan_pair(order, values, node_a, res_a, may_a, node_b, res_b, may_b, st_a, st_b, top, low, high, gap):
    """Two trees' scans of one feature in one walk over its sorted samples (shared loads).

    Per tree every node's running sums at once (``st_*`` (m, 4) rows: left count, left sum, sum,
    count); the per-sample step is written out twice, once per tree, because a numba function
    call per sample costs more than the step itself. A separate function: numba compiles the loop
    tighter than inside the ``prange`` body.
    """
    m = st_a.shape[0]
    # The value of the node's previous sample in this order; +inf before its first (no split there).
    last_a = np.full(m, np.inf, dtype=np.float32)
    last_b = np.full(m, np.inf, dtype=np.float32)
    bar = np.full((2, m), -np.inf)  # top * SLACK
    for p in range(order.shape[0]):
        s = order[p]
        v = values[p]
        c = node_a[s]
        if may_a[c]:
            k = st_a[c, 0]
            left_sum = st_a[c, 1]
            if v > last_a[c] + gap:  # split between the node's previous sample and s
                big_n = st_a[c, 3]
                diff = k * st_a[c, 2] - big_n * left_sum  # gbt_torch._score, operation for operation
                q = diff * diff
                den = max(k * (big_n - k), 1.0)
                if q >= bar[0, c] * den:  # cheap test first; the exact score decides
                    score = q / den
                    if score > top[0, c]:
                        top[0, c] = score
                        bar[0, c] = score * SLACK
                        low[0, c] = last_a[c]
                        high[0, c] = v
            st_a[c, 0] = k + 1.0
            st_a[c, 1] = left_sum + res_a[s]
            last_a[c] = v
        c = node_b[s]
        if may_b[c]:  # the same step for tree b
            k = st_b[c, 0]
            left_sum = st_b[c, 1]
            if v > last_b[c] + gap:
                big_n = st_b[c, 3]
                diff = k * st_b[c, 2] - big_n * left_sum
                q = diff * diff
                den = max(k * (big_n - k), 1.0)
                if q >= bar[1, c] * den:
                    score = q / den
                    if score > top[1, c]:
                        top[1, c] = score
                        bar[1, c] = score * SLACK
                        low[1, c] = last_b[c]
                        high[1, c] = v
            st_b[c, 0] = k + 1.0
            st_b[c, 1] = left_sum + res_b[s]
            last_b[c] = v


@numba.njit(cache=True)
def _threshold(score, low, high):
    """gbt_torch._thresholds: the midpoint of the two values, or the left one if the midpoint rounds up."""
    if score == -np.inf:
        return 0.0
    mid = low / 2.0 + high / 2.0
    return low if mid == high or not np.isfinite(mid) else mid


@numba.njit(parallel=True, cache=True)
def route(codes, node, split, feature, threshold):
    """Send every sample of ``node`` (T, n) to its child in place: 2c, or 2c + 1 if right of the split.

    ``codes`` (n, D) float32, a sample's codes one row; ``split``, ``feature``, ``threshold`` (m, T)
    per node.
    """
    trees, n = node.shape
    for t in numba.prange(trees):
        splits = split[:, t].copy()
        features = feature[:, t].copy()
        cuts = threshold[:, t].copy()
        for s in range(n):
            c = node[t, s]
            right = (np.float64(codes[s, features[c]]) > cuts[c]) & splits[c]  # no branch to mispredict
            node[t, s] = 2 * c + right


@numba.njit(parallel=True, cache=True)
def add_leaves(leaf, leaf_test, residual, hessian, scale, cols, rate, raw, raw_test, leaves):
    """Newton leaf values (sums in sample order) added, times ``rate``, to raw score columns ``cols``.

    ``leaf``, ``residual``, ``hessian`` (T, n); ``leaf_test`` (T, m); ``raw`` (n, C) and
    ``raw_test`` (m, C) are updated in place; ``scale`` (T,) is the (K-1)/K factor.
    """
    trees, n = leaf.shape
    for t in numba.prange(trees):
        num = np.zeros(leaves)
        den = np.zeros(leaves)
        for s in range(n):
            num[leaf[t, s]] += residual[t, s]
            den[leaf[t, s]] += hessian[t, s]
        value = np.zeros(leaves)
        for k in range(leaves):
            value[k] = (0.0 if abs(den[k]) < 1e-150 else num[k] / den[k]) * scale[t]
        col = cols[t]
        for s in range(n):
            raw[s, col] += rate * value[leaf[t, s]]
        for s in range(leaf_test.shape[1]):
            raw_test[s, col] += rate * value[leaf_test[t, s]]


# -- the driver: one boosting round from these kernels ----------------------------------------------


def numba_round(model, p, keys, raw, raw_test, x_test, rate, depth: int):
    """The numba backend's round from the probabilities ``p`` (n, T): trees, leaves, raw updates.

    ``keys`` (D, 2^depth - 1, T) are the round's tie-breaking keys (``gbt_splits.tie_keys``).

    ``raw`` and ``raw_test`` (n, F, Kmax) are updated in place. The kernels (``gbt_numba``) do the
    passes over samples, with ``gbt_torch.torch_round``'s arithmetic (residual, hessian, rounding);
    the small per-level decisions are ``gbt_splits``', shared with the torch backend.
    """
    # (T, n) residuals, hessians and rounded residuals; the last also (n, T), the roots' layout
    residual, hessian, r, rows = gradients(p.contiguous().numpy(), model.targets_numpy, model.quantum)
    trees, n = r.shape
    codes_test = x_test.contiguous().numpy()  # (m, D)
    kind = np.int8 if depth <= 6 else np.int32  # node ids < 2^depth; small ones stay in cache
    node = np.zeros((trees, n), dtype=kind)
    node_test = np.zeros((trees, len(codes_test)), dtype=kind)
    alive = torch.ones((1, trees), dtype=torch.bool)  # (nodes, T): may still split
    gain = torch.zeros((model.d, trees), dtype=torch.float64)
    for level in range(depth):
        m = 2**level
        count, total, square = (torch.from_numpy(a) for a in node_stats(node, r, m))  # (m, T)
        ok = may_split(alive, count, total, square)
        nodes = count.numpy(), total.numpy(), ok.numpy()
        if level == 0:
            per_feature, threshold = root_splits(
                model.order_numpy, model.sorted_numpy, rows, *nodes, FEATURE_THRESHOLD
            )
        else:
            per_feature, threshold = best_splits(
                model.order_numpy, model.sorted_numpy, node, r, *nodes, FEATURE_THRESHOLD
            )
        best, share, feature = choose(torch.from_numpy(per_feature), level_keys(keys, level))
        split = add_gain(gain, best, share, ok.reshape(-1), count, n).numpy()
        feature = feature.numpy()
        cut = threshold[feature, np.arange(m * trees)].reshape(m, trees)
        feature = feature.reshape(m, trees)
        route(model.codes_numpy, node, split, feature, cut)
        route(codes_test, node_test, split, feature, cut)
        alive = torch.from_numpy(np.repeat(split, 2, axis=0))  # children 2c, 2c + 1 of split nodes
    model.gain += gain
    add_leaves(
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
