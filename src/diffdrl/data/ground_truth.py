"""The ground-truth dataset contract shared by every labelled dataset and every metric.

Follows disentanglement_lib's ``GroundTruthData``: a dataset is a grid of factor codes
(row-major over ``factor_sizes``, last factor fastest) and a way to get the images for any
codes. Metrics sample codes, ask for images, and never need to know how images are made.
"""

from __future__ import annotations

import numpy as np
import torch


class FactorSpace:
    """Index maths over a row-major grid of factor codes (the one place it lives)."""

    def __init__(self, factor_sizes: tuple[int, ...]):
        sizes = tuple(int(s) for s in factor_sizes)
        if not sizes or any(s < 1 for s in sizes):
            raise ValueError(f"factor_sizes must be positive integers, got {factor_sizes!r}")
        self.sizes = sizes

    def __len__(self) -> int:
        return int(np.prod(self.sizes, dtype=np.int64))

    def index_of(self, codes: np.ndarray) -> np.ndarray:
        """Flat indices (B,) of factor codes (B, F)."""
        codes = self.check_codes(codes)
        return np.ravel_multi_index(tuple(codes.T), self.sizes).astype(np.int64)

    def codes_of(self, index: np.ndarray) -> np.ndarray:
        """Factor codes (B, F) of flat indices (B,)."""
        index = np.asarray(index, dtype=np.int64)
        if index.size and (index.min() < 0 or index.max() >= len(self)):
            raise ValueError(f"index out of range [0, {len(self)})")
        return np.stack(np.unravel_index(index, self.sizes), axis=-1).astype(np.int64)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n codes (n, F) drawn uniformly and independently per factor."""
        return np.stack([rng.integers(0, s, size=n) for s in self.sizes], axis=-1).astype(np.int64)

    def check_codes(self, codes: np.ndarray) -> np.ndarray:
        codes = np.asarray(codes)
        if codes.ndim != 2 or codes.shape[1] != len(self.sizes):
            raise ValueError(f"factor codes must have shape (B, {len(self.sizes)}), got {codes.shape}")
        if not np.issubdtype(codes.dtype, np.integer):
            raise TypeError(f"factor codes must be integers, got dtype {codes.dtype}")
        if codes.size and ((codes < 0).any() or (codes >= np.asarray(self.sizes)).any()):
            raise ValueError(f"factor codes out of range for sizes {self.sizes}")
        return codes.astype(np.int64)


class GroundTruthDataset:
    """Base class: subclasses set ``factor_names``/``factor_sizes`` and implement ``images_for``.

    Images are uint8 (B, H, W, C), the one exchange format of the library; models convert
    to float [-1, 1] NCHW themselves (see ``to_model_input``).

    Procedural datasets written in torch can also set ``renders_on_device = True`` and implement
    ``render(codes: int64 tensor (B, F), device) -> uint8 tensor (B, H, W, C) on device``; the
    trainer then renders its batches directly on the GPU (``train.data_on_device``).
    """

    factor_names: tuple[str, ...]
    factor_sizes: tuple[int, ...]
    renders_on_device: bool = False

    @property
    def space(self) -> FactorSpace:
        return FactorSpace(self.factor_sizes)

    @property
    def num_factors(self) -> int:
        return len(self.factor_sizes)

    def __len__(self) -> int:
        return len(self.space)

    def images_for(self, codes: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def images_at(self, index: np.ndarray) -> np.ndarray:
        """Images of flat indices (the access path shared with unlabelled datasets)."""
        return self.images_for(self.codes_of(index))

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return self.space.sample(n, rng)

    def index_of(self, codes: np.ndarray) -> np.ndarray:
        return self.space.index_of(codes)

    def codes_of(self, index: np.ndarray) -> np.ndarray:
        return self.space.codes_of(index)

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(codes (n, F), images (n, H, W, C) uint8) for n uniformly drawn states."""
        codes = self.sample_factors(n, rng)
        return codes, self.images_for(codes)


class GroundTruthTorchDataset(torch.utils.data.Dataset):
    """Map-style torch view: item i -> (image float [-1, 1] CHW, codes int64 (F,))."""

    def __init__(self, data: GroundTruthDataset):
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        codes = self.data.codes_of(np.array([i]))
        image = to_model_input(self.data.images_for(codes))[0]
        return image, torch.from_numpy(codes[0])


def to_model_input(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 (B, H, W, C) -> float32 (B, C, H, W) in [-1, 1]."""
    x = torch.as_tensor(images)
    if x.dtype != torch.uint8 or x.ndim != 4:
        raise ValueError(f"images must be uint8 (B, H, W, C), got {x.dtype} {tuple(x.shape)}")
    return x.permute(0, 3, 1, 2).float().div(127.5).sub(1.0).contiguous()
