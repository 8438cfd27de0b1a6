"""Latents of a frozen first stage, kept per dataset item so that a repeated item skips the encoder
(``model.first_stage.cache_latents``; off by default).

Why it is safe: the first stage is frozen (no gradients, always in eval mode), and every dataset
returns the same image for the same index (the data contract: ``images_at`` is a pure function of
the index, for the ground-truth grids, the file readers and image folders alike; diffdrl has no
augmentation). So an item's raw latent is a pure function of the frozen weights and the index,
and can be computed once; any dataset the trainer can train on can be cached.

Why the results are unchanged, bit for bit: on CPU a convolution's result for one image depends
on how many images share the call (oneDNN picks its kernel by batch size; a batch of 3 and one of
32 differ in the last bits), but not on which other images they are. So the cache never encodes
a subset of a batch: a step with any item not cached yet encodes its whole batch, exactly as the
uncached path does (same images, same shape, same memory format, inside the same autocast), trains
on those latents and keeps the new items' rows; a step whose items are all cached gathers them.
Either way the latents are the ones a batch of this size gives, which is what the trainer always
encodes (``train.batch_size`` / processes). On CUDA the same holds where the kernels chosen for a
shape are deterministic (the trainer's defaults; checked here on CPU only). The price: a step
saves nothing until all of its items are cached, so the saving grows as the cache fills (after k
draws from N items a fraction 1 - exp(-k / N) is cached, and a batch of B is fully cached with
about that probability to the power B): small datasets and long runs gain, a short run on
Shapes3D's 480,000 items does not (benchmarks/RESULTS.md).
Scaling goes through ``FrozenFirstStage.scaled``, the same multiplication as ``encode``.
``train.compile`` is refused with the cache: the compiled encoder may round differently from the
eager one the cache runs. Tests: tests/first_stage/test_latent_cache.py (training with and without
the cache ends with equal losses and weights; so does a resumed run).

Where it lives: one tensor (N, D, h, w) on the training device, allocated at the first batch in
the dtype the encoder gives (float32, or bf16 under autocast), and a filled mask on the host (no
device sync to test it). Its size is bounded by ``model.first_stage.cache_gib``, counted at float32;
a dataset that needs more is a ``ValueError`` at the start, naming both sizes (no silent partial
cache). On CPU the pages are only touched as items are filled.

Resume: the cache is not checkpointed; it is rebuilt from the frozen weights, which every
checkpoint holds, so a resumed run trains exactly as an uninterrupted one.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from diffdrl.models.latent_space import FrozenFirstStage


class LatentCache:
    """Raw latents of dataset items ``0 .. size - 1``, filled as batches arrive.

    Args:
        stage: the model's frozen first stage.
        size: number of items in the dataset (``len(dataset)``).
        budget_gib: the most the cache may take, in GiB (``model.first_stage.cache_gib``).
        device: the training device, where the latents are kept.
    """

    def __init__(self, stage: FrozenFirstStage, size: int, budget_gib: float, device: torch.device):
        per_item = math.prod(stage.latent_shape) * 4  # float32 bytes: the most an item takes
        need = size * per_item / 2**30
        if need > budget_gib:
            raise ValueError(
                f"model.first_stage.cache_latents: the {size} items' latents need {need:.2f} GiB, more "
                f"than model.first_stage.cache_gib={budget_gib:g}; raise it or set cache_latents=false"
            )
        self.stage, self.size, self.device = stage, size, torch.device(device)
        self.filled = np.zeros(size, bool)
        self.store: torch.Tensor | None = None  # (size, D, h, w), allocated at the first batch
        self.memory_format = torch.contiguous_format
        self.hits = 0  # batches served from the cache alone
        self.encoded = 0  # batches run through the encoder (each had an item not cached yet)
        shape = "x".join(map(str, stage.latent_shape))
        self.where = f"{size} items x {shape} on {self.device}, at most {need:.2f} GiB"

    @property
    def filled_count(self) -> int:
        return int(self.filled.sum())

    def __call__(self, index: np.ndarray, x: torch.Tensor) -> torch.Tensor:
        """Scaled latents (B, D, h, w) of the batch ``x`` (B, C, H, W) of dataset items ``index`` (B,)."""
        index = np.asarray(index, np.int64)
        if len(index) != len(x):
            raise ValueError(f"{len(index)} indices for a batch of {len(x)} images")
        if self.store is not None and self.filled[index].all():
            self.hits += 1
            rows = self.store[torch.from_numpy(index).to(self.device)]
            return self.stage.scaled(rows.contiguous(memory_format=self.memory_format))
        raw = self.stage.raw_latents(x)  # the whole batch, as the uncached path encodes it
        if self.store is None:
            self.store = torch.empty((self.size, *raw.shape[1:]), dtype=raw.dtype, device=self.device)
            channels_last = raw.is_contiguous(memory_format=torch.channels_last) and not raw.is_contiguous()
            self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        new = ~self.filled[index]
        items, first = np.unique(index[new], return_index=True)  # an item drawn twice: keep one row
        rows = np.flatnonzero(new)[first]
        self.store[torch.from_numpy(items).to(self.device)] = raw[torch.from_numpy(rows).to(raw.device)]
        self.filled[items] = True
        self.encoded += 1
        return self.stage.scaled(raw)
