"""Training batches as a function of (seed, step): reproducible, sliced per process, prefetched."""

import numpy as np
import pytest
import torch

from diffdrl.data import make_dataset
from diffdrl.training.batches import DATA_STREAM, BatchStream, HostImages, batch_index, step_rng, step_seed


def test_batches_depend_on_seed_step_and_stream_only():
    a = batch_index(1000, 8, seed=1, step=5)
    np.testing.assert_array_equal(a, batch_index(1000, 8, seed=1, step=5))
    assert not np.array_equal(a, batch_index(1000, 8, seed=1, step=6))
    assert not np.array_equal(a, batch_index(1000, 8, seed=2, step=5))
    assert not np.array_equal(a, batch_index(1000, 8, seed=1, step=5, stream=DATA_STREAM + 1))
    assert a.min() >= 0 and a.max() < 1000


def test_processes_share_out_the_global_batch():
    whole = batch_index(1000, 12, seed=0, step=3)
    parts = [batch_index(1000, 12, seed=0, step=3, rank=r, world=3) for r in range(3)]
    np.testing.assert_array_equal(np.concatenate(parts), whole)
    with pytest.raises(ValueError, match="divisible"):
        batch_index(1000, 10, seed=0, step=0, world=3)


def test_seeds_of_different_streams_differ():
    assert step_seed(0, 1, 0) != step_seed(0, 1, 1) != step_seed(0, 2, 1)
    assert step_rng(0, 1, 0).integers(1 << 30) == step_rng(0, 1, 0).integers(1 << 30)


def test_prefetched_stream_yields_the_same_batches_as_direct_indexing():
    data = make_dataset("synth-shapes3d", None, 16)
    source = HostImages(data)
    stream = BatchStream(source, len(data), 4, seed=7, start=2, stop=6, prefetch=2)
    got = list(stream)
    assert [step for step, _ in got] == [2, 3, 4, 5]
    for step, images in got:
        expected = data.images_at(batch_index(len(data), 4, 7, step))
        assert images.dtype == torch.uint8
        np.testing.assert_array_equal(images.numpy(), expected)
