"""One queue in front of the model: every request's model work runs in one worker thread.

N users must not run N models at once (memory, and on a CPU the threads would only fight). The
worker takes the first waiting job, drains whatever else is already waiting (up to
``max_batch`` images) and turns all renders that share a sampler and step count into one batched
generation; other model work (encoding, attention maps) runs there too, one job at a time, so the
model is only ever touched from this thread.

Renders are deterministic given their key (image, units, sampler, steps, seed): x_T is drawn from
the seed per image and the samplers allowed here have no stochastic steps, so batching changes
nothing but speed and the results can be cached. The cache is a bounded LRU of PNG bytes;
identical renders in flight are computed once.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

import torch

from diffdrl.explore.uploads import encode_png
from diffdrl.viz.grid import to_uint8
from diffdrl.viz.render import can_sample, render_units, shared_start


@dataclass(frozen=True)
class RenderKey:
    """What determines a rendered image: the edited image, its units, the sampler, steps and seed."""

    image: str
    units: bytes  # float32 (K,) units, as bytes
    sampler: str | None  # None for models that decode in one pass
    steps: int | None
    seed: int


@dataclass
class _Render:
    key: RenderKey
    units: torch.Tensor  # (K,)
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
        self._cache: OrderedDict[RenderKey, bytes] = OrderedDict()
        self._pending: dict[RenderKey, Future] = {}
        self._lock = threading.Lock()
        self.batches = self.rendered = self.hits = 0
        self.busy_since: float | None = None
        self.busy_images = 0
        self._worker = threading.Thread(target=self._work, name="diffdrl-explore-model", daemon=True)
        self._worker.start()

    # -- submitting --------------------------------------------------------------------------

    def render(self, key: RenderKey, units: torch.Tensor) -> Future:
        """A future of the PNG bytes of ``units`` (K,) rendered as ``key`` says."""
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
        self._jobs.put(_Render(key, units.detach().float().cpu(), future))
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
            x_T = None  # a one-pass decoder has none
            if can_sample(self.model):  # each image from its own seed's x_T, as the pictures draw it
                x_T = torch.cat([shared_start(self.model, job.key.seed) for job in group])
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
                if self.cache_size:
                    self._cache[job.key] = png
                    self._cache.move_to_end(job.key)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        for job, png in zip(group, pngs, strict=True):
            job.future.set_result(png)


def _run(future: Future, fn: Callable) -> None:
    try:
        future.set_result(fn())
    except Exception as err:  # noqa: BLE001 - the caller's future carries it
        future.set_exception(err)
