"""One queue in front of the model: every request's model work runs in one worker thread.

N users must not run N models at once (memory, and on a CPU the threads would only fight). The
worker takes the first waiting job, drains whatever else is already waiting (up to
``max_batch`` images) and turns all renders that share a sampler and step count into one batched
generation; other model work (encoding, attention maps) runs there too, one job at a time, so the
model is only ever touched from this thread.

Renders are deterministic given their key (image, units, sampler, steps, start): x_T is the
image's DDIM inversion (start "inversion") or drawn from the seed (start "noise"), and the samplers
allowed here have no stochastic steps, so batching changes nothing but speed and the results can be
cached. The cache is one bounded LRU holding the PNG bytes of renders and the inverted x_T of each
(image, steps): an image is inverted (under its own units, ``viz.render.inverted_start``) the first
time a render needs it, together with the other images of that batch missing theirs, and every later
render of it (slider moves, swaps, strips) starts from the cached x_T. Identical renders in flight
are computed once.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np
import torch

from diffdrl.explore.uploads import encode_png
from diffdrl.viz.grid import to_uint8
from diffdrl.viz.render import can_sample, inverted_start, render_units, shared_start


@dataclass(frozen=True)
class RenderKey:
    """What determines a rendered image: the edited image, its units, the sampler, steps and x_T
    (the image's inversion, or noise from ``seed``)."""

    image: str
    units: bytes  # float32 (K,) units, as bytes
    sampler: str | None  # None for models that decode in one pass
    steps: int | None
    seed: int  # draws x_T when start is "noise"; 0 otherwise
    start: str = "noise"  # "inversion": x_T is the image's DDIM inversion at ``steps``


@dataclass(frozen=True)
class InversionKey:
    """The cache's key of an image's DDIM-inverted x_T: the image and the steps of its inversion
    (DDIM's, whichever sampler then decodes it, so a change of sampler alone inverts nothing)."""

    image: str
    steps: int


@dataclass
class _Render:
    key: RenderKey
    units: torch.Tensor  # (K,)
    pixels: np.ndarray | None  # uint8 (H, W, C) of the image: what start "inversion" inverts
    future: Future


@dataclass
class _Call:
    fn: Callable
    future: Future


class RenderQueue:
    """Batches renders (and runs any other model work) in one worker thread; see the module doc."""

    def __init__(self, model, max_batch: int = 32, cache_size: int = 1024):
        if max_batch < 1 or cache_size < 0:
            raise ValueError(f"max_batch must be >= 1 and cache_size >= 0, got {max_batch}, {cache_size}")
        self.model, self.max_batch, self.cache_size = model, max_batch, cache_size
        self._jobs: queue.Queue = queue.Queue()
        self._cache: OrderedDict[RenderKey | InversionKey, bytes | torch.Tensor] = OrderedDict()
        self._pending: dict[RenderKey, Future] = {}
        self._lock = threading.Lock()
        self.batches = self.rendered = self.hits = self.inverted = 0
        self.busy_since: float | None = None
        self.busy_images = 0
        self._worker = threading.Thread(target=self._work, name="diffdrl-explore-model", daemon=True)
        self._worker.start()

    # -- submitting --------------------------------------------------------------------------

    def render(self, key: RenderKey, units: torch.Tensor, pixels: np.ndarray | None = None) -> Future:
        """A future of the PNG bytes of ``units`` (K,) rendered as ``key`` says; start "inversion"
        needs the image's ``pixels`` (uint8 (H, W, C)) to invert when its x_T is not cached."""
        if key.start == "inversion" and pixels is None:
            raise ValueError("a render from the image's inversion needs the image's pixels")
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                self.hits += 1
                done: Future = Future()
                done.set_result(self._cache[key])
                return done
            if key in self._pending:  # the same image is already being made
                self.hits += 1
                return self._pending[key]
            future = self._pending[key] = Future()
        self._jobs.put(_Render(key, units.detach().float().cpu(), pixels, future))
        return future

    def call(self, fn: Callable):
        """A future of ``fn()`` run in the worker (model work other than rendering)."""
        future: Future = Future()
        self._jobs.put(_Call(fn, future))
        return future

    def status(self) -> dict:
        """What the worker is doing, for the page's progress indicator and the load test."""
        busy = self.busy_since
        return {
            "waiting": self._jobs.qsize(),
            "busy_seconds": None if busy is None else round(time.perf_counter() - busy, 3),
            "busy_images": self.busy_images,
            "batches": self.batches,
            "rendered": self.rendered,
            "cache_hits": self.hits,
            "inverted": self.inverted,
            "cached": len(self._cache),
        }

    def close(self, timeout: float = 10.0) -> None:
        self._jobs.put(None)
        self._worker.join(timeout)

    # -- the worker ----------------------------------------------------------------------------

    @torch.no_grad()  # grad mode is per thread: the model is only ever run here, for inference
    def _work(self) -> None:
        while (first := self._jobs.get()) is not None:
            jobs, stop = [first], False
            while sum(isinstance(j, _Render) for j in jobs) < self.max_batch:
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    stop = True
                    break
                jobs.append(job)
            self.busy_since, self.busy_images = time.perf_counter(), sum(isinstance(j, _Render) for j in jobs)
            for job in jobs:
                if isinstance(job, _Call):
                    _run(job.future, job.fn)
            groups: dict[tuple, list[_Render]] = {}
            for job in jobs:
                if isinstance(job, _Render):
                    groups.setdefault((job.key.sampler, job.key.steps), []).append(job)
            for (sampler, steps), group in groups.items():
                self._render_group(group, sampler, steps)
            self.busy_since, self.busy_images = None, 0
            if stop:
                break

    def _render_group(self, group: list[_Render], sampler: str | None, steps: int | None) -> None:
        try:
            units = torch.stack([job.units for job in group]).to(next(self.model.parameters()).device)
            x_T = self._starts(group, steps) if can_sample(self.model) else None  # one-pass: none
            options = {} if sampler is None else {"sampler": sampler, "steps": steps, "eta": 0.0}
            images = to_uint8(render_units(self.model, units, x_T=x_T, **options))  # (B, H, W, C)
            pngs = [encode_png(image) for image in images]
        except Exception as err:  # noqa: BLE001 - handed to every waiting request, not swallowed
            with self._lock:
                for job in group:
                    self._pending.pop(job.key, None)
            for job in group:
                job.future.set_exception(err)
            return
        with self._lock:
            self.batches += 1
            self.rendered += len(group)
            for job, png in zip(group, pngs, strict=True):
                self._pending.pop(job.key, None)
                self._keep(job.key, png)
        for job, png in zip(group, pngs, strict=True):
            job.future.set_result(png)

    def _starts(self, group: list[_Render], steps: int) -> torch.Tensor:
        """x_T (B, *noise_shape) of a group's renders: noise from each seed, as the pictures draw it,
        or the image's inverted x_T, from the cache or inverted now (all missing ones in one batch)."""
        inversions: dict[InversionKey, torch.Tensor] = {}
        missing: dict[InversionKey, np.ndarray] = {}
        with self._lock:
            for job in group:
                if job.key.start == "inversion":
                    key = InversionKey(job.key.image, steps)
                    if key in self._cache:
                        self._cache.move_to_end(key)
                        inversions[key] = self._cache[key]
                    else:
                        missing[key] = job.pixels
        if missing:
            x_T = inverted_start(self.model, np.stack(list(missing.values())), steps)  # (M, C, h, w)
            with self._lock:
                self.inverted += len(missing)
                for key, x in zip(missing, x_T, strict=True):
                    inversions[key] = x[None]
                    self._keep(key, x[None])
        return torch.cat(
            [
                inversions[InversionKey(job.key.image, steps)]
                if job.key.start == "inversion"
                else shared_start(self.model, job.key.seed)
                for job in group
            ]
        )

    def _keep(self, key: RenderKey | InversionKey, value: bytes | torch.Tensor) -> None:
        """Cache ``value`` (a render's PNG, an image's x_T) as the newest entry (holding the lock)."""
        if self.cache_size:
            self._cache[key] = value
            self._cache.move_to_end(key)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)


def _run(future: Future, fn: Callable) -> None:
    try:
        future.set_result(fn())
    except Exception as err:  # noqa: BLE001 - the caller's future carries it
        future.set_exception(err)
