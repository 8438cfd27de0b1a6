"""Training batches as a pure function of (seed, step), from wherever the images are kept.

Batch k draws its indices from a generator seeded by (seed, k), so a resumed run sees exactly
the batches an uninterrupted one would, with no data-loader state to save. Sampling is uniform
with replacement, which for a ground-truth grid is uniform over factor states.

With P processes, the global batch of k is drawn from (seed, k) alone and process r takes its
r-th contiguous slice (``batch_index``); the timesteps and noise of the step are drawn for the
global batch too (``diffusion.draws.StepDraws``), so P processes train what one process would.

Images come from one of three sources (``image_source``), all returning uint8 (B, H, W, C):
``HostImages`` asks the dataset on the CPU, in a background thread that renders or reads the
next batches while the current step trains (numpy and torch release the GIL), into pinned memory
when training on CUDA; ``RenderedImages`` renders procedural datasets on the training device;
``ResidentImages`` holds a whole dataset on the device as one uint8 tensor and indexes it there.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from tqdm.auto import tqdm

from diffdrl.data.ground_truth import GroundTruthDataset

# independent random streams derived from one seed
DATA_STREAM, NOISE_STREAM, EVAL_STREAM, ANCHOR_STREAM = 0, 1, 2, 3


def step_rng(seed: int, step: int, stream: int, rank: int = 0) -> np.random.Generator:
    """The generator of one (step, stream, process rank)."""
    return np.random.default_rng([seed, stream, step, rank])


def step_seed(seed: int, step: int, stream: int, rank: int = 0) -> int:
    """A 63-bit integer seed for torch generators, derived like ``step_rng``."""
    return int(np.random.SeedSequence([seed, stream, step, rank]).generate_state(1, np.uint64)[0] >> 1)


def batch_index(
    size: int, batch_size: int, seed: int, step: int, stream: int = DATA_STREAM, rank: int = 0, world: int = 1
) -> np.ndarray:
    """Flat indices (batch_size / world,) of process ``rank``'s share of batch ``step``: the global
    batch of ``batch_size`` indices into a dataset of ``size`` is drawn from (seed, step, stream)
    alone, and each process takes its contiguous slice."""
    if batch_size % world:
        raise ValueError(f"batch size {batch_size} must be divisible by the {world} processes")
    local = batch_size // world
    return step_rng(seed, step, stream).integers(0, size, size=batch_size)[rank * local : (rank + 1) * local]


# -- where the images come from --------------------------------------------------------------------


class HostImages:
    """Images from the dataset on the CPU, prepared ahead in a background thread (``prefetch``);
    pinned when ``pin`` (training on CUDA), so the copy to the device can overlap compute."""

    prefetch = True
    where = "CPU, prefetched in a background thread"

    def __init__(self, dataset: GroundTruthDataset, pin: bool = False):
        self.dataset, self.pin = dataset, pin
        if pin:
            self.where += " into pinned memory"

    def __call__(self, index: np.ndarray) -> torch.Tensor:
        images = torch.from_numpy(np.ascontiguousarray(self.dataset.images_at(index)))
        return images.pin_memory() if self.pin else images


class RenderedImages:
    """A procedural dataset rendered on ``device`` (``dataset.render``); no CPU round trip."""

    prefetch = False

    def __init__(self, dataset: GroundTruthDataset, device: torch.device):
        self.dataset, self.device = dataset, device
        self.where = f"rendered on {device}"

    def __call__(self, index: np.ndarray) -> torch.Tensor:
        codes = torch.from_numpy(self.dataset.codes_of(index))  # index maths on the CPU: no sync
        return self.dataset.render(codes, self.device)


class ResidentImages:
    """The whole dataset as one uint8 tensor (N, H, W, C) on ``device``, filled once in chunks."""

    prefetch = False

    def __init__(self, dataset, device: torch.device, chunk: int = 4096, progress: bool = False):
        first = np.asarray(dataset.images_at(np.zeros(1, np.int64)))
        self.images = torch.empty((len(dataset), *first.shape[1:]), dtype=torch.uint8, device=device)
        starts = range(0, len(dataset), chunk)
        for start in tqdm(starts, desc="data to device", leave=False, disable=not progress):
            index = np.arange(start, min(start + chunk, len(dataset)))
            self.images[index[0] : index[-1] + 1].copy_(torch.from_numpy(dataset.images_at(index)))
        self.device = device
        self.where = f"held on {device} ({self.images.nbytes / 2**30:.2f} GiB uint8)"

    def __call__(self, index: np.ndarray) -> torch.Tensor:
        return self.images[torch.from_numpy(index).to(self.device, non_blocking=True)]


def dataset_bytes(dataset) -> int:
    """Bytes of the whole dataset as uint8 images (from the size of its first image)."""
    return len(dataset) * np.asarray(dataset.images_at(np.zeros(1, np.int64))).nbytes


def fits_on_device(nbytes: int, device: torch.device) -> bool:
    """``train.data_on_device="auto"``'s rule: at most a quarter of the GPU's memory and half of
    what is free now (the model, optimizer and activations need the rest)."""
    free, total = torch.cuda.mem_get_info(device)
    return nbytes <= min(total / 4, free / 2)


def image_source(dataset, device: torch.device, mode: str = "auto", progress: bool = False):
    """The image source ``train.data_on_device`` (``"auto" | "always" | "never"``) picks for a
    dataset on a training device (see the module doc and ``TrainConfig``)."""
    cuda = device.type == "cuda"
    if mode == "never" or (mode == "auto" and not cuda):
        return HostImages(dataset, pin=cuda)
    if getattr(dataset, "renders_on_device", False):
        return RenderedImages(dataset, device)
    if mode == "always" or fits_on_device(dataset_bytes(dataset), device):
        return ResidentImages(dataset, device, progress=progress)
    source = HostImages(dataset, pin=True)
    source.where += f" (the {dataset_bytes(dataset) / 2**30:.1f} GiB dataset does not fit on {device})"
    return source


class BatchStream:
    """Iterates (step, uint8 images) for steps [start, stop): process ``rank``'s share of each
    global batch of ``batch_size``, ``prefetch`` batches ahead when the source asks for it."""

    def __init__(
        self,
        source,
        size: int,
        batch_size: int,
        seed: int,
        start: int,
        stop: int,
        rank: int = 0,
        world: int = 1,
        prefetch: int = 2,
    ):
        self.source, self.size, self.batch_size, self.seed = source, size, batch_size, seed
        self.rank, self.world = rank, world
        self.start, self.stop, self.prefetch = start, stop, prefetch

    def index(self, step: int) -> np.ndarray:
        """This process's dataset indices of batch ``step``."""
        return batch_index(self.size, self.batch_size, self.seed, step, DATA_STREAM, self.rank, self.world)

    def batch(self, step: int) -> torch.Tensor:
        return self.source(self.index(step))

    def __iter__(self) -> Iterator[tuple[int, torch.Tensor]]:
        if not self.source.prefetch:  # device sources: the GPU queues the work anyway
            for step in range(self.start, self.stop):
                yield step, self.batch(step)
            return
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending: deque = deque()
            next_step = self.start
            for step in range(self.start, self.stop):
                while next_step < self.stop and len(pending) <= self.prefetch:
                    pending.append(pool.submit(self.batch, next_step))
                    next_step += 1
                yield step, pending.popleft().result()
            for future in pending:
                future.cancel()
