import numpy as np
import pytest

from diffdrl.metrics.sampling import (
    CachedRepresentation,
    encode,
    encode_groups,
    fixed_factor_groups,
    paired_groups,
    sample_points,
)
from helpers.metric_fakes import CodeImages, identity


def test_fixed_factor_groups_share_the_chosen_factor():
    data = CodeImages()
    k, codes = fixed_factor_groups(data, 50, 8, np.random.default_rng(0))
    assert codes.shape == (50, 8, 4) and k.shape == (50,)
    fixed = codes[np.arange(50), :, k]  # (50, 8)
    assert (fixed == fixed[:, :1]).all()
    assert set(k.tolist()) == {0, 1, 2, 3}
    assert (codes.std(1) > 0).sum() > 50 * 2  # the other factors still vary


def test_paired_groups_agree_only_on_the_chosen_factor():
    data = CodeImages()
    k, first, second = paired_groups(data, 40, 16, np.random.default_rng(0))
    rows = np.arange(40)
    assert (first[rows, :, k] == second[rows, :, k]).all()
    assert (first != second).any()


def test_encode_batches_and_validates():
    data = CodeImages()
    codes = data.sample_factors(1000, np.random.default_rng(0))
    calls = []

    def represent(images):
        calls.append(len(images))
        return identity(images)

    z = encode(data, represent, codes, encode_batch_size=300)
    assert calls == [300, 300, 300, 100]
    assert z.dtype == np.float32 and (z == codes).all()
    with pytest.raises(ValueError, match="shape"):
        encode(data, lambda x: identity(x)[:5], codes)
    with pytest.raises(TypeError, match="floats"):
        encode(data, lambda x: identity(x).astype(int), codes)
    with pytest.raises(ValueError, match="NaN"):
        encode(data, lambda x: identity(x) * np.nan, codes)


def test_groups_are_encoded_many_per_call():
    data = CodeImages()
    k, codes = fixed_factor_groups(data, 100, 64, np.random.default_rng(0))
    calls = []

    def represent(images):
        calls.append(len(images))
        return identity(images)

    out = encode_groups(data, represent, codes, lambda z: z.var(1), encode_batch_size=4096)
    assert out.shape == (100, 4) and calls == [4096, 2304]
    assert (out[np.arange(100), k] == 0).all()


def test_cache_encodes_each_set_once_and_returns_copies():
    data = CodeImages()
    calls = []

    def represent(images):
        calls.append(len(images))
        return identity(images)

    cached = CachedRepresentation(represent, cache_bytes=0)  # sets by hash, not the grid table
    a, fa = sample_points(data, cached, 500, np.random.default_rng(0), encode_batch_size=4096)
    a[:] = -1  # a caller editing its codes must not corrupt the cache
    b, fb = sample_points(data, cached, 500, np.random.default_rng(0), encode_batch_size=4096)
    assert calls == [500] and (fa == fb).all() and (b == fb).all()
    sample_points(data, cached, 500, np.random.default_rng(1), encode_batch_size=4096)
    assert calls == [500, 500]


def test_grid_table_encodes_only_new_states():
    data = CodeImages()
    calls = []

    def represent(images):
        calls.append(len(images))
        return identity(images)

    cached = CachedRepresentation(represent)
    a, fa = sample_points(data, cached, 500, np.random.default_rng(0), encode_batch_size=4096)
    first = len(np.unique(data.index_of(fa)))
    a[:] = -1  # a caller editing its codes must not corrupt the table
    b, fb = sample_points(data, cached, 500, np.random.default_rng(0), encode_batch_size=4096)
    assert calls == [first] and (b == fb).all() and cached.states_encoded == first
    _, fc = sample_points(data, cached, 500, np.random.default_rng(1), encode_batch_size=4096)
    seen = np.unique(np.concatenate([data.index_of(fa), data.index_of(fc)]))
    assert sum(calls) == len(seen) == cached.states_encoded
