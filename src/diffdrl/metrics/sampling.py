"""The shared sampling protocol: draw factor codes, render, represent, in large vectorised batches.

Follows disentanglement_lib: factor vectors are drawn uniformly per factor with replacement from
one seeded ``np.random.Generator``. Draws come whole-array at a time (all vote factors, then all
codes), so the stream of random numbers differs from dlib's per-sample loop: same distribution,
not bit-identical samples. Rendering and the representation are called on up to
``encode_batch_size`` images at once, never per sample.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np

Represent = Callable[[np.ndarray], np.ndarray]
ENCODE_BATCH_SIZE = 4096


def check_count(name: str, value: int, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def check_representation(codes: object, num: int) -> np.ndarray:
    """The representation's output as float32 (num, K); errors name what is wrong."""
    out = np.asarray(codes)
    if out.ndim != 2 or out.shape[0] != num:
        raise ValueError(f"represent must return an array (B, K) for B={num} images, got shape {out.shape}")
    if not np.issubdtype(out.dtype, np.floating):
        raise TypeError(f"represent must return floats, got dtype {out.dtype}")
    if not np.isfinite(out).all():
        raise ValueError("represent returned NaN or infinite values")
    return out.astype(np.float32, copy=False)


def encode(data, represent: Represent, codes: np.ndarray, *, encode_batch_size: int = ENCODE_BATCH_SIZE):
    """Representations float32 (M, K) of factor codes (M, F): render and represent in chunks."""
    if isinstance(represent, CachedRepresentation):
        return represent.encode(data, codes, encode_batch_size)
    return _encode(data, represent, codes, encode_batch_size)


def _encode(data, represent: Represent, codes: np.ndarray, encode_batch_size: int) -> np.ndarray:
    step = check_count("encode_batch_size", encode_batch_size)
    chunks = [
        check_representation(represent(data.images_for(codes[i : i + step])), len(codes[i : i + step]))
        for i in range(0, len(codes), step)
    ]
    if not chunks:
        raise ValueError("nothing to encode: zero factor codes")
    return np.concatenate(chunks)


def sample_points(data, represent: Represent, num: int, rng: np.random.Generator, *, encode_batch_size: int):
    """(representations (num, K), factors (num, F)) at ``num`` uniformly drawn factor vectors."""
    factors = data.sample_factors(check_count("num", num), rng)
    return encode(data, represent, factors, encode_batch_size=encode_batch_size), factors


def sample_images(data, represent: Represent, num: int, rng: np.random.Generator, *, encode_batch_size: int):
    """Representations (num, K) of uniformly drawn images, for datasets with or without factors."""
    if hasattr(data, "sample_factors"):
        return sample_points(data, represent, num, rng, encode_batch_size=encode_batch_size)[0]
    index = rng.integers(0, len(data), size=check_count("num", num))
    step = check_count("encode_batch_size", encode_batch_size)
    return np.concatenate(
        [
            check_representation(represent(data.images_at(index[i : i + step])), len(index[i : i + step]))
            for i in range(0, len(index), step)
        ]
    )


def fixed_factor_groups(data, num_groups: int, group_size: int, rng: np.random.Generator):
    """FactorVAE's batches: (factor k (V,), codes (V, G, F)) with factor k shared within each group.

    Each group draws k uniformly and G factor vectors, then sets column k of all of them to the
    first vector's value (Kim & Mnih 2018, as in dlib).
    """
    num_groups, group_size = check_count("num_groups", num_groups), check_count("group_size", group_size, 2)
    k = rng.integers(0, data.num_factors, size=num_groups)
    codes = data.sample_factors(num_groups * group_size, rng).reshape(num_groups, group_size, -1)
    rows = np.arange(num_groups)
    codes[rows, :, k] = codes[rows, :1, k]
    return k, codes


def paired_groups(data, num_groups: int, group_size: int, rng: np.random.Generator):
    """BetaVAE's batches: (factor k (V,), codes1, codes2 (V, G, F)) with codes2[..., k] = codes1[..., k]."""
    num_groups, group_size = check_count("num_groups", num_groups), check_count("group_size", group_size)
    k = rng.integers(0, data.num_factors, size=num_groups)
    first = data.sample_factors(num_groups * group_size, rng).reshape(num_groups, group_size, -1)
    second = data.sample_factors(num_groups * group_size, rng).reshape(num_groups, group_size, -1)
    rows = np.arange(num_groups)
    second[rows, :, k] = first[rows, :, k]
    return k, first, second


def encode_groups(data, represent: Represent, codes: np.ndarray, reduce, *, encode_batch_size: int):
    """``reduce(representations (v, G, K)) -> (v, ...)`` over groups of codes (V, G, F), many per call.

    Keeps memory bounded by ``encode_batch_size`` whatever V is (FactorVAE encodes ~970k images).
    """
    per_call = max(1, check_count("encode_batch_size", encode_batch_size) // codes.shape[1])
    raw = represent.represent if isinstance(represent, CachedRepresentation) else represent  # all unique
    out = []
    for i in range(0, len(codes), per_call):
        chunk = codes[i : i + per_call]
        z = _encode(data, raw, chunk.reshape(-1, chunk.shape[-1]), encode_batch_size)
        out.append(reduce(z.reshape(*chunk.shape[:2], -1)))
    return np.concatenate(out)


class CachedRepresentation:
    """A representation function that remembers the codes of factor vectors it has encoded.

    ``evaluate`` wraps the user's function in one: every metric starts from the same seed, so
    DCI, MIG, SAP, modularity, the unsupervised scores and FactorVAE's variance estimate draw the
    same first factor vectors, and each set is rendered and encoded once. Valid because the
    representation is deterministic (the contract); holds only the (M, K) float32 codes.
    """

    def __init__(self, represent: Represent):
        self.represent = represent
        self._data = None
        self._codes: dict[tuple, np.ndarray] = {}

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return self.represent(images)

    def encode(self, data, codes: np.ndarray, encode_batch_size: int) -> np.ndarray:
        if data is not self._data:
            self._data, self._codes = data, {}
        codes = np.ascontiguousarray(codes, dtype=np.int64)
        key = (codes.shape, hashlib.blake2b(codes.tobytes(), digest_size=16).digest())
        if key not in self._codes:
            self._codes[key] = _encode(data, self.represent, codes, encode_batch_size)
        return self._codes[key].copy()
