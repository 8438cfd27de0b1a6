"""The torch backend of ``gbt``: a few large torch ops per tree level (branch and bound over blocks
of sorted positions) that run unchanged on CPU or CUDA (module ``gbt`` for the model and its ties)."""

from __future__ import annotations

import warnings

import torch

from diffdrl.metrics.gbt_splits import FEATURE_THRESHOLD, add_gain, choose, level_keys, may_split

BLOCK = 32  # sorted positions per block of the split search
GROUP = 8  # blocks per group, the split search's first stage


def prepare_blocks(model, order: torch.Tensor, xs: torch.Tensor, max_chunk_elements: int) -> None:
    """The torch backend's search structures on ``model`` (``gbt._Boosting``): blocks of sorted
    positions and their sum matrix."""
    d, n = order.shape
    device = order.device
    gap = xs[:, 1:] > xs[:, :-1] + torch.tensor(FEATURE_THRESHOLD, device=device)
    # Blocks of BLOCK consecutive sorted positions per feature (the last one padded with
    # sample n, which belongs to no node): the unit of the branch-and-bound split search.
    model.block = b = BLOCK
    nb = -(-n // (b * GROUP)) * GROUP  # whole groups of blocks
    fill = nb * b - n
    order_pad = torch.cat([order, torch.full((d, fill), n, device=device)], 1)
    splittable = torch.cat([gap, torch.zeros((d, fill + 1), dtype=torch.bool, device=device)], 1)
    model.order_blocks = order_pad.view(d, nb, b)
    model.splittable_blocks = splittable.view(d, nb, b)
    model.end_splittable = model.splittable_blocks[..., -1]
    model.any_splittable = model.splittable_blocks.any(-1)
    model.block_count = (n - b * torch.arange(nb, device=device)).clamp(0, b).double()
    model.group_splittable = model.any_splittable.view(d, -1, GROUP).any(-1)
    model.group_end_splittable = model.end_splittable.view(d, -1, GROUP)[..., -1]
    rows = torch.arange(d, device=device)[:, None] * nb + torch.arange(n, device=device) // b
    rank_rows = torch.empty_like(order)
    rank_rows.scatter_(1, order, rows)  # block row of each (feature, sample)
    with warnings.catch_warnings():  # torch flags sparse CSR as beta; mm with it is what we use
        warnings.simplefilter("ignore", UserWarning)
        model.block_matrix = (
            torch.sparse_coo_tensor(
                torch.stack([rank_rows.reshape(-1), torch.arange(n, device=device).repeat(d)]),
                torch.ones(d * n, dtype=torch.float64, device=device),
                (d * nb, n),
                check_invariants=False,
            )
            .coalesce()
            .to_sparse_csr()
        )
    model.nb = nb
    model.chunk = max(1, int(max_chunk_elements) // (6 * n))  # trees per batch


def torch_round(model, p, keys, raw, raw_test, x, x_test, learning_rate: float, max_depth: int) -> None:
    """The torch backend's round from the probabilities ``p`` (n, T): trees, leaves, raw updates
    (``raw`` and ``raw_test`` (n, F, Kmax) in place); ``keys`` as in ``gbt_splits.tie_keys``."""
    residual = model.targets - p
    hessian = p * (1 - p)
    fitted = torch.round(residual * model.quantum) / model.quantum  # what the trees split
    flat, flat_test = raw.view(model.n, -1), raw_test.view(len(x_test), -1)
    keys = keys.to(model.device)
    for start in range(0, residual.shape[1], model.chunk):
        trees = slice(start, start + model.chunk)
        leaf, leaf_test, gain = grow(model, x, x_test, fitted[:, trees], keys[..., trees], max_depth)
        model.gain[:, trees] += gain
        num = torch.zeros((2**max_depth, leaf.shape[1]), dtype=torch.float64, device=model.device)
        den = torch.zeros_like(num)
        num.scatter_add_(0, leaf, residual[:, trees])
        den.scatter_add_(0, leaf, hessian[:, trees])
        value = torch.where(den.abs() < 1e-150, 0.0, num / den) * model.newton_scale[trees]
        cols = model.tree_cols[trees]
        flat[:, cols] += learning_rate * torch.gather(value, 0, leaf)
        flat_test[:, cols] += learning_rate * torch.gather(value, 0, leaf_test)


def grow(model, x, x_test, residual, keys, max_depth: int):
    """Grow one depth-``max_depth`` tree per column of ``residual`` (n, T) level by level; ``keys``
    (D, 2^max_depth - 1, T) break ties between features (``gbt_splits.choose``).

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
        count, total, square = node_stats(node, residual, m)
        ok = may_split(alive, count, total, square).reshape(-1)  # (m T,) nodes that may split
        node_pad = torch.cat([node, torch.full((1, t), -1, device=dev)])
        best, share, feature, position = _search(
            model,
            *stats,
            count.reshape(-1),
            total.reshape(-1),
            ok,
            residual_pad,
            node_pad,
            t,
            level_keys(keys, depth),
        )
        split = add_gain(gain, best, share, ok, count, n)
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


def node_stats(node, residual, m: int):
    """Per-node sample count, residual sum and sum of squares (m, T) each (``gbt_numba.node_stats``
    in torch)."""
    count = torch.zeros((m, node.shape[1]), dtype=torch.float64, device=node.device)
    total, square = torch.zeros_like(count), torch.zeros_like(count)
    count.scatter_add_(0, node, torch.ones_like(residual))
    total.scatter_add_(0, node, residual)
    square.scatter_add_(0, node, residual * residual)
    return count, total, square


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


def _search(model, block_sum, block_abs, block_count, count, total, ok, residual_pad, node_pad, t, keys):
    """Exact best split of every column (node, tree): branch and bound over blocks of positions.

    Scores at block ends are exact and give a lower bound L on each column's best; ``_upper``
    bounds every score inside a block. Three stages: groups of GROUP blocks, the blocks of the
    groups whose bound reaches L, then every position of the blocks whose bound reaches L. So the
    result is the exact maximum, with every tie; ``keys`` (D, C) pick among tied features. Returns best
    score (C,), each feature's share of the importance (D, C), feature and sorted position (C,).
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
    best, share, feature = choose(per_feature.view(d, c), keys)
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
