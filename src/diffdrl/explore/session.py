"""A run opened for exploring: its sliders, unit labels and anchors, the images, and the operations.

The parts live in their own modules: ``sliders`` (ranges, projections, DyGA anchors on the
sliders), ``unit_labels`` (the cached unit-factor fit), ``image_store`` (the images by id) and
``overlays`` (attention maps as PNGs). ``Explorer`` ties them to the run and its ``RenderQueue``.

All model work goes through the one ``RenderQueue``; methods block until their result is ready
(the app calls them from its thread pool).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from diffdrl.diffusion.sampling import DETERMINISTIC_SAMPLERS, STARTS, Sampling
from diffdrl.explore.image_store import ExploredImage, ImageStore, image_id
from diffdrl.explore.overlays import attention_overlays, data_url
from diffdrl.explore.render_queue import RenderKey, RenderQueue
from diffdrl.explore.sliders import Sliders
from diffdrl.explore.unit_labels import cached_unit_factor
from diffdrl.explore.uploads import MAX_UPLOAD_BYTES, decode_png, decode_upload, encode_png
from diffdrl.metrics.reconstruction import psnr
from diffdrl.models.representation import encode_images, unit_width
from diffdrl.training.runs import Run
from diffdrl.viz.attention import attention_maps, attention_unavailable
from diffdrl.viz.interchange import swap_units, unit_names
from diffdrl.viz.render import can_sample, model_name, resolve_sampling
from diffdrl.viz.traversal import unit_ranges

__all__ = ["Explorer", "ExploredImage", "data_url"]

# The explorer's one deliberate difference from DEFAULT_SAMPLING (diffusion.sampling), chosen by
# measurement (benchmarks/preview_sampling.py on the demo's model, RESULTS.md "The explorer's
# preview sampler"): the fewest steps whose inversion round trip brings the picked image back at
# PSNR >= 25 dB are DPM-Solver++'s 25 (10 steps: 23.7 dB; the first stage alone: 26.3 dB). A
# render costs one denoiser pass per step, so a slider move costs 2.5x the passes of the former 10
# steps (its load-test p50 1.8-2.5x); the page's steps field trades the round trip for speed.
PREVIEW_SAMPLING = Sampling("dpm++", 25)
# Edits start from the picked image's DDIM-inverted x_T (viz.render.inverted_start), as the report's
# edits and diffusion autoencoders do: with every slider at the image's own value the image comes
# back, so a moved slider shows only what its unit carries. "noise" (x_T drawn from the seed) shows
# instead what the units alone determine.
PREVIEW_START = "inversion"
SAMPLERS = DETERMINISTIC_SAMPLERS  # deterministic given x_T, so renders batch and cache exactly
MAX_STEPS = 200
MAX_STRIP = 16


class Explorer:
    """The state of one explored run (module docstring)."""

    def __init__(
        self,
        run: Run,
        *,
        reference: int = 1000,
        factor_samples: int = 3000,
        seed: int = 0,
        max_images: int = 256,
        cache_size: int = 1024,
        max_batch: int = 32,
        max_upload_bytes: int = MAX_UPLOAD_BYTES,
        cache_dir: str | Path | None = None,
    ):
        if reference < 2:
            raise ValueError(f"reference must be >= 2 images to take quantiles over, got {reference}")
        self.run, self.model = run, run.model
        self.num_units = run.config.model.units
        self.width = unit_width(self.model)  # K
        self.max_upload_bytes = max_upload_bytes
        self.diffusion = can_sample(self.model)
        self.factor_names = tuple(getattr(run.data, "factor_names", ()) or ())
        self.factor_sizes = tuple(int(s) for s in (getattr(run.data, "factor_sizes", ()) or ()))
        _, images = run.sample(reference, seed + 1)
        self.reference_units = torch.from_numpy(encode_images(self.model, images))  # (M, K)
        self.sliders = Sliders(self.reference_units, self.num_units)
        self.cache_dir = Path(cache_dir) if cache_dir else run.path / "explore"
        self.importance = (
            cached_unit_factor(run, self.cache_dir, factor_samples, seed) if self.factor_sizes else None
        )
        self.labels = unit_names(self.num_units, self.importance, self.factor_names)
        self.anchors = self.sliders.anchor_positions(self.model)
        self.attention_reason = attention_unavailable(self.model)
        self.queue = RenderQueue(self.model, max_batch=max_batch, cache_size=cache_size)
        self.images = ImageStore(max_images)
        self._strip_values: dict[int, torch.Tensor] = {}

    # the sliders' fit, as attributes of the explorer (the page's and the tests' view)
    low = property(lambda self: self.sliders.low)
    high = property(lambda self: self.sliders.high)
    median = property(lambda self: self.sliders.median)
    axis = property(lambda self: self.sliders.axis)

    def project(self, units: torch.Tensor) -> torch.Tensor:
        """Slider values (B, N) of units (B, K)."""
        return self.sliders.project(units)

    def with_values(self, units: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """Units (K,) moved so their slider values become ``values`` (N,)."""
        return self.sliders.with_values(units, values)

    def close(self) -> None:
        self.queue.close()

    # -- what the page shows once --------------------------------------------------------------

    def info(self) -> dict:
        """Everything the page needs to build itself."""
        config = self.run.config
        return {
            "run": str(self.run.path),
            "model": model_name(self.model),
            "dataset": config.data.name,
            "resolution": config.data.resolution,
            "num_units": self.num_units,
            "unit_width": self.width,
            "diffusion": self.diffusion,
            "samplers": list(SAMPLERS) if self.diffusion else [],
            "sampler": PREVIEW_SAMPLING.sampler if self.diffusion else None,
            "steps": PREVIEW_SAMPLING.steps if self.diffusion else None,
            "starts": list(STARTS) if self.diffusion else [],
            "start": PREVIEW_START if self.diffusion else None,
            "max_steps": MAX_STEPS,
            "factors": [
                {"name": n, "size": s} for n, s in zip(self.factor_names, self.factor_sizes, strict=True)
            ],
            "attention": self.attention_reason is None,
            "attention_reason": self.attention_reason,
            "max_upload_bytes": self.max_upload_bytes,
            "max_strip": MAX_STRIP,
            "units": [
                {
                    "index": i,
                    "label": self.labels[i],
                    "low": float(self.low[i]),
                    "high": float(self.high[i]),
                    "median": float(self.median[i]),
                    "anchors": None if self.anchors is None else self.anchors[i],
                }
                for i in range(self.num_units)
            ],
        }

    # -- images ---------------------------------------------------------------------------------

    def image(self, key) -> ExploredImage:
        """The stored image ``key`` (16 hex digits); a malformed id is a ValueError, an unknown one
        (never added, or evicted) a KeyError."""
        return self.images.get(key)

    def add(self, pixels: np.ndarray, factors: list[int] | None, source: str) -> ExploredImage:
        key = image_id(pixels)
        found = self.images.find(key)
        if found is not None:
            return found
        units = self.queue.call(lambda: self.model.encode(pixels[None])[0].float().cpu()).result()
        values = self.project(units[None])[0].numpy()
        return self.images.put(ExploredImage(key, pixels, units, values, factors, source))

    def random_image(self, seed: int) -> ExploredImage:
        codes, images = self.run.sample(1, _seed(seed))
        return self.add(images[0], None if codes is None else [int(c) for c in codes[0]], "dataset")

    def factor_image(self, factors) -> ExploredImage:
        if not self.factor_sizes:
            raise ValueError(f"dataset {self.run.config.data.name!r} has no factors to pick an image by")
        if not isinstance(factors, list) or not all(
            isinstance(f, int) and not isinstance(f, bool) for f in factors
        ):
            raise TypeError(f"factors must be a list of {len(self.factor_sizes)} integers, got {factors!r}")
        codes = self.run.data.space.check_codes(np.array([factors], dtype=np.int64))
        return self.add(self.run.data.images_for(codes)[0], factors, "dataset")

    def upload(self, data: bytes) -> ExploredImage:
        pixels = decode_upload(data, self.run.config.data.resolution, self.max_upload_bytes)
        return self.add(pixels, None, "upload")

    def describe(self, image: ExploredImage) -> dict:
        return {
            "image_id": image.id,
            "png": data_url(encode_png(image.pixels)),
            "values": [float(v) for v in image.values],
            "factors": image.factors,
            "source": image.source,
        }

    # -- renders ----------------------------------------------------------------------------------

    def sampling(self, sampler, steps, start=None) -> tuple[str | None, int | None, str]:
        """The checked sampling options: a sampler of ``SAMPLERS``, 1..MAX_STEPS steps and a start
        of ``STARTS`` for a diffusion model (``PREVIEW_SAMPLING`` and ``PREVIEW_START`` when
        unset); none for a one-pass decoder, where giving any is a ValueError (nothing would use
        them)."""
        options = resolve_sampling(self.model, sampler, steps, defaults=PREVIEW_SAMPLING, start=start)
        if not options:
            return None, None, "noise"  # the queue's key for a one-pass decoder: no x_T at all
        sampler, steps = options["sampler"], options["steps"]
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
        if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_STEPS:
            raise ValueError(f"steps must be an integer in [1, {MAX_STEPS}], got {steps!r}")
        return sampler, steps, start or PREVIEW_START

    def _render(self, image: ExploredImage, units: torch.Tensor, sampler, steps, seed, start):
        """A future of the PNG of ``units`` (K,) rendered from ``image``'s inversion or from noise."""
        seed = _seed(seed)
        if start == "inversion":
            seed = 0  # an inverted x_T holds no seed: one cache entry whatever the page's seed
        key = RenderKey(image.id, units.float().numpy().tobytes(), sampler, steps, seed, start)
        return self.queue.render(key, units, image.pixels)

    def render(self, image_id, values=None, sampler=None, steps=None, seed=0, start=None) -> bytes:
        """PNG of the image regenerated from its units, with the sliders at ``values`` (N,)
        when given (None: its own units, the reconstruction); from the image's DDIM inversion
        (start "inversion", the default) or from noise drawn from ``seed`` (start "noise")."""
        image = self.image(image_id)
        sampler, steps, start = self.sampling(sampler, steps, start)
        units = image.units if values is None else self.with_values(image.units, self._values(values))
        return self._render(image, units, sampler, steps, seed, start).result()

    def psnr(self, image_id, png: bytes) -> float:
        """PSNR (dB, on [0, 1]) of a render's PNG against the stored image ``image_id``."""
        image = self.image(image_id)
        pair = torch.from_numpy(np.stack([image.pixels, decode_png(png)])).float() / 255  # (2, H, W, C)
        return float(psnr(pair[:1], pair[1:])[0])

    def swap(self, source_id, target_id, unit, sampler=None, steps=None, seed=0, start=None) -> bytes:
        """PNG of the source with unit ``unit`` (or ``"all"``) taken from the target: what
        ``viz.interchange`` renders for the pair (same sampler, steps, seed and start; "inversion"
        starts from the source's inversion)."""
        source, target = self.image(source_id), self.image(target_id)
        sampler, steps, start = self.sampling(sampler, steps, start)
        if unit == "all":
            units = target.units.clone()
        else:
            i = self.unit_index(unit)
            units = swap_units(source.units[None], target.units[None], self.num_units)[i, 0]
        return self._render(source, units, sampler, steps, seed, start).result()

    def strip(self, image_id, unit, count=8, sampler=None, steps=None, seed=0, start=None) -> dict:
        """The traversal of one unit: ``count`` images with the unit set to evenly spaced 2%-98%
        quantiles of its observed values, the rest of the image's units fixed (``viz.traversal``)."""
        image = self.image(image_id)
        i = self.unit_index(unit)
        if isinstance(count, bool) or not isinstance(count, int) or not 2 <= count <= MAX_STRIP:
            raise ValueError(f"count must be an integer in [2, {MAX_STRIP}], got {count!r}")
        sampler, steps, start = self.sampling(sampler, steps, start)
        values = self._strip_values.get(count)
        if values is None:
            values = self._strip_values[count] = unit_ranges(
                self.reference_units, count, num_units=self.num_units
            )
        values = values.reshape(self.num_units, count, -1)[i]  # (V, g)
        units = image.units.repeat(count, 1).view(count, self.num_units, -1)  # (V, N, g)
        units[:, i] = values
        futures = [self._render(image, u.flatten(), sampler, steps, seed, start) for u in units]
        shown = self.project(units.flatten(1))[:, i]
        return {
            "unit": i,
            "values": [float(v) for v in shown],
            "pngs": [data_url(f.result()) for f in futures],
        }

    def attention(self, image_id, seed=0) -> list[str]:
        """RGBA PNG overlays (one per token) of where each token is read in the image: the map of
        ``viz.attention`` min-max scaled per token (jet colours, more opaque where higher)."""
        if self.attention_reason:
            raise ValueError(self.attention_reason)
        image = self.image(image_id)
        if image.attention is None:
            seed = _seed(seed)
            maps = self.queue.call(
                lambda: attention_maps(self.model, image.pixels[None], seed=seed)[0].cpu()
            ).result()
            image.attention = attention_overlays(maps)
        return image.attention

    # -- checks -------------------------------------------------------------------------------------

    def unit_index(self, unit) -> int:
        if isinstance(unit, bool) or not isinstance(unit, int):
            raise TypeError(f"unit must be an integer unit index, got {unit!r}")
        if not 0 <= unit < self.num_units:
            raise ValueError(f"unit index {unit} out of range: this run has units 0..{self.num_units - 1}")
        return unit

    def _values(self, values) -> torch.Tensor:
        if not isinstance(values, list) or len(values) != self.num_units:
            raise ValueError(
                f"values must be a list of {self.num_units} numbers (one per unit), got {values!r}"
            )
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            raise TypeError(f"values must be numbers, got {values!r}")
        out = torch.tensor(values, dtype=torch.float32)
        if not torch.isfinite(out).all():
            raise ValueError(f"values must be finite, got {values!r}")
        return out


def _seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**31:
        raise ValueError(f"seed must be an integer in [0, 2**31), got {seed!r}")
    return seed
