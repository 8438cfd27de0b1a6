"""The shared sampling protocol: draw factor codes, render, represent, in large vectorised batches.

Follows disentanglement_lib: factor vectors are drawn uniformly per factor with replacement from
one seeded ``np.random.Generator``. Draws come whole-array at a time (all vote factors, then all
codes), so the stream of random numbers differs from dlib's per-sample loop: same distribution,
not bit-identical samples. Rendering and the representation are called on up to
``encode_batch_size`` images at once, never per sample.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable

import numpy as np

Represent = Callable[[np.ndarray], np.ndarray]
ENCODE_BATCH_SIZE = 4096
CODE_CACHE_BYTES = 1 << 30  # the state table of a grid's codes: 480,000 states x 20 codes is 38 MB


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
    With a grid-wide code table (``CachedRepresentation``), states encoded before are looked up.
    """
    per_call = max(1, check_count("encode_batch_size", encode_batch_size) // codes.shape[1])
    cached = isinstance(represent, CachedRepresentation)
    raw = represent.represent if cached else represent  # all unique
    out = []
    for i in range(0, len(codes), per_call):
        chunk = codes[i : i + per_call]
        flat = chunk.reshape(-1, chunk.shape[-1])
        if cached and represent.uses_table(data):
            z = represent.encode(data, flat, encode_batch_size)
        else:
            z = _encode(data, raw, flat, encode_batch_size)
        out.append(reduce(z.reshape(*chunk.shape[:2], -1)))
    return np.concatenate(out)


class CachedRepresentation:
    """A representation function that remembers the codes of factor vectors it has encoded.

    ``evaluate`` wraps the user's function in one; valid because the representation is
    deterministic (the contract). Two modes:

    - Grid table (datasets with ``factor_sizes`` whose table of codes, states x K float32, fits
      ``cache_bytes``): each state is rendered and encoded once per evaluation, the first time any
      metric draws it, in batches of the states not yet seen; every later draw of it (the same
      set in another metric, FactorVAE's ~970k and BetaVAE's ~1.9M group images) is a lookup.
      Encoding only the states drawn, not the whole grid up front, costs the same for the
      canonical suite (its draws cover nearly every synth-shapes3d state) and far less for the
      fast preset or one metric.
    - Sets (when the table would not fit): whole sets of factor vectors are remembered by hash,
      so the sets several metrics draw identically are encoded once, and groups are encoded
      afresh. ``note`` says why, and a warning is raised, so the slower path is never silent.
    """

    def __init__(self, represent: Represent, cache_bytes: int = CODE_CACHE_BYTES):
        self.represent = represent
        self.cache_bytes = check_count("cache_bytes", cache_bytes, 0)
        self.note: str | None = None
        self._data = None
        self._codes: dict[tuple, np.ndarray] = {}
        self._table: np.ndarray | None = None
        self._filled: np.ndarray | None = None
        self._mode: str | None = None

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return self.represent(images)

    def _reset(self, data) -> None:
        self._data, self._codes, self._table, self._filled, self._mode = data, {}, None, None, None

    def uses_table(self, data) -> bool:
        """Whether codes of ``data`` go through the grid table (decided on its first encode)."""
        if data is not self._data:
            self._reset(data)
        return self._mode != "sets" and hasattr(data, "index_of") and self.cache_bytes > 0

    def encode(self, data, codes: np.ndarray, encode_batch_size: int) -> np.ndarray:
        if not self.uses_table(data):
            return self._encode_set(data, codes, encode_batch_size)
        index = data.index_of(codes)
        if self._table is None:
            first = np.unique(index)[: check_count("encode_batch_size", encode_batch_size)]
            z = _encode(data, self.represent, data.codes_of(first), encode_batch_size)
            need = len(data) * z.shape[1] * 4
            if need > self.cache_bytes:
                self._mode = "sets"
                self.note = (
                    f"code cache off: {len(data)} states x {z.shape[1]} codes need {need / 2**20:.0f} MiB "
                    f"> cache_bytes {self.cache_bytes / 2**20:.0f} MiB; sampled sets are encoded as drawn"
                )
                warnings.warn(self.note, stacklevel=2)
                return self._encode_set(data, codes, encode_batch_size)
            self._mode = "table"
            self._table = np.zeros((len(data), z.shape[1]), dtype=np.float32)
            self._filled = np.zeros(len(data), dtype=bool)
            self._table[first], self._filled[first] = z, True
        missing = np.unique(index[~self._filled[index]])
        if len(missing):
            self._table[missing] = _encode(data, self.represent, data.codes_of(missing), encode_batch_size)
            self._filled[missing] = True
        return self._table[index]

    @property
    def states_encoded(self) -> int:
        """How many grid states have been rendered and encoded (0 in the sets mode)."""
        return 0 if self._filled is None else int(self._filled.sum())

    def _encode_set(self, data, codes: np.ndarray, encode_batch_size: int) -> np.ndarray:
        codes = np.ascontiguousarray(codes, dtype=np.int64)
        key = (codes.shape, hashlib.blake2b(codes.tobytes(), digest_size=16).digest())
        if key not in self._codes:
            self._codes[key] = _encode(data, self.represent, codes, encode_batch_size)
        return self._codes[key].copy()
