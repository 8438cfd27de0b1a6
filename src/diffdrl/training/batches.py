"""Training batches as a pure function of (seed, step), rendered ahead of the training step.

Batch k draws its indices from a generator seeded by (seed, k), so a resumed run sees exactly
the batches an uninterrupted one would, with no data-loader state to save. Sampling is uniform
with replacement, which for a ground-truth grid is uniform over factor states. A background
thread renders the next batches while the current step trains (numpy and torch release the GIL).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from diffdrl.data.ground_truth import GroundTruthDataset

# independent random streams derived from one seed
DATA_STREAM, NOISE_STREAM, EVAL_STREAM, ANCHOR_STREAM = 0, 1, 2, 3


def step_rng(seed: int, step: int, stream: int, rank: int = 0) -> np.random.Generator:
    """The generator of one (step, stream, process rank); distinct ranks see distinct data."""
    return np.random.default_rng([seed, stream, step, rank])


def step_seed(seed: int, step: int, stream: int, rank: int = 0) -> int:
    """A 63-bit integer seed for torch generators, derived like ``step_rng``."""
    return int(np.random.SeedSequence([seed, stream, step, rank]).generate_state(1, np.uint64)[0] >> 1)


def batch_at(
    dataset: GroundTruthDataset,
    batch_size: int,
    seed: int,
    step: int,
    stream: int = DATA_STREAM,
    rank: int = 0,
) -> np.ndarray:
    """uint8 images (B, H, W, C) of batch ``step``."""
    index = step_rng(seed, step, stream, rank).integers(0, len(dataset), size=batch_size)
    return dataset.images_at(index)


class BatchStream:
    """Iterates (step, images) for steps [start, stop), ``prefetch`` batches ahead."""

    def __init__(
        self,
        dataset: GroundTruthDataset,
        batch_size: int,
        seed: int,
        start: int,
        stop: int,
        rank: int = 0,
        prefetch: int = 2,
    ):
        self.args = (dataset, batch_size, seed)
        self.rank = rank
        self.start, self.stop, self.prefetch = start, stop, prefetch

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending: deque = deque()
            next_step = self.start
            for step in range(self.start, self.stop):
                while next_step < self.stop and len(pending) <= self.prefetch:
                    pending.append(pool.submit(batch_at, *self.args, next_step, DATA_STREAM, self.rank))
                    next_step += 1
                yield step, pending.popleft().result()
            for future in pending:
                future.cancel()
