"""A ground-truth dataset whose images store their own factor codes, so representations built
from the true factors (identity, mixtures, noise) are exact and cost nothing to render.

Plain helpers rather than fixtures: the metric tests build datasets of many sizes from them.
"""

import numpy as np

from diffdrl.data.ground_truth import GroundTruthDataset


class CodeImages(GroundTruthDataset):
    """Image (1, F, 1) uint8 whose pixel f is factor f's code."""

    def __init__(self, factor_sizes=(4, 5, 6, 7)):
        self.factor_sizes = tuple(factor_sizes)
        self.factor_names = tuple("abcdefgh"[: len(factor_sizes)])

    def images_for(self, codes):
        return self.space.check_codes(codes).astype(np.uint8)[:, None, :, None]


def decode(images: np.ndarray) -> np.ndarray:
    """The factor codes (B, F) float64 stored in CodeImages' images."""
    return images[:, 0, :, 0].astype(np.float64)


def identity(images: np.ndarray) -> np.ndarray:
    """The perfect representation: codes = factor classes."""
    return decode(images).astype(np.float32)


def random_codes_for(data: CodeImages, width: int = 6):
    """Codes drawn once per factor state, independent of the factors (deterministic)."""
    table = np.random.default_rng(123).normal(size=(len(data), width)).astype(np.float32)
    return lambda images: table[data.index_of(decode(images).astype(np.int64))]
