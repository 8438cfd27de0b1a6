"""A ground-truth dataset whose images store their own factor codes, so representations built
from the true factors (identity, mixtures, noise) are exact and cost nothing to render."""

import numpy as np
import pytest

from diffdrl.data.ground_truth import GroundTruthDataset


class CodeImages(GroundTruthDataset):
    """Image (1, F, 1) uint8 whose pixel f is factor f's code."""

    factor_names = ("a", "b", "c", "d")

    def __init__(self, factor_sizes=(4, 5, 6, 7)):
        self.factor_sizes = tuple(factor_sizes)
        self.factor_names = tuple("abcdefgh"[: len(factor_sizes)])

    def images_for(self, codes):
        return self.space.check_codes(codes).astype(np.uint8)[:, None, :, None]


def decode(images: np.ndarray) -> np.ndarray:
    """The factor codes (B, F) float64 stored in CodeImages' images."""
    return images[:, 0, :, 0].astype(np.float64)


@pytest.fixture
def data() -> CodeImages:
    return CodeImages()


@pytest.fixture
def identity():
    return lambda images: decode(images).astype(np.float32)


@pytest.fixture
def random_codes(data):
    """Codes drawn once per factor state, independent of the factors (deterministic)."""
    table = np.random.default_rng(123).normal(size=(len(data), 6)).astype(np.float32)
    return lambda images: table[data.index_of(decode(images).astype(np.int64))]
