"""A run opened for exploring: slider ranges, unit labels, anchors, the images, and the operations.

A slider moves one unit. For a scalar unit its value is the unit itself; for EncDiff-V's vector
units (g coordinates each) it is the token's coordinate along the unit's first principal axis
(as ``viz.traversal`` traverses them), and moving it shifts the token along that axis only.
Ranges are the 1%-99% quantiles of the values observed on ``reference`` dataset images.

Labels reuse ``viz.unit_factor``'s DCI fit, cached per run and checkpoint in
``RUN/explore/unit_factor.json``. DyGA's anchors are placed on a scalar unit's slider at the value
whose raw token lies nearest the component's mean (a search along the unit's 1-D token curve;
``distance`` says how near it gets), on a vector unit's at the mean's projection.

All model work goes through one ``RenderQueue``; methods block until their result is ready (the
app calls them from its thread pool).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from matplotlib import colormaps

from diffdrl.atomic import atomic_write_text
from diffdrl.explore.render_queue import RenderKey, RenderQueue
from diffdrl.explore.uploads import MAX_UPLOAD_BYTES, decode_upload, encode_png
from diffdrl.metrics.pca import PerUnitPCA
from diffdrl.models.representation import encode_images, unit_width
from diffdrl.training.checkpoint import latest_checkpoint
from diffdrl.training.runs import Run
from diffdrl.viz.attention import attention_maps, attention_unavailable
from diffdrl.viz.interchange import swap_units, unit_names
from diffdrl.viz.render import can_sample, model_name
from diffdrl.viz.traversal import unit_ranges
from diffdrl.viz.unit_factor import unit_factor_importance

SAMPLERS = ("dpm++", "ddim", "unipc")  # deterministic given x_T, so renders batch and cache exactly
DEFAULT_SAMPLER, DEFAULT_STEPS, MAX_STEPS = "dpm++", 10, 200
MAX_STRIP = 16
IMAGE_ID = re.compile(r"[0-9a-f]{16}")


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


@dataclass
class Picked:
    """An image being explored: its pixels, units (K,), slider values (N,) and factor codes."""

    id: str
    pixels: np.ndarray  # uint8 (H, W, C)
    units: torch.Tensor  # (K,)
    values: np.ndarray  # (N,)
    factors: list[int] | None
    source: str  # "dataset" or "upload"
    attention: list[str] | None = field(default=None, repr=False)


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
        self.max_images, self.max_upload_bytes = max_images, max_upload_bytes
        self.diffusion = can_sample(self.model)
        self.factor_names = tuple(getattr(run.data, "factor_names", ()) or ())
        self.factor_sizes = tuple(int(s) for s in (getattr(run.data, "factor_sizes", ()) or ()))
        _, images = run.sample(reference, seed + 1)
        self.reference_units = torch.from_numpy(encode_images(self.model, images))  # (M, K)
        self._fit_axes()
        self.cache_dir = Path(cache_dir) if cache_dir else run.path / "explore"
        self.importance = self._unit_factor(factor_samples, seed) if self.factor_sizes else None
        self.labels = unit_names(self.num_units, self.importance, self.factor_names)
        self.anchors = self._anchor_values()
        self.attention_reason = attention_unavailable(self.model)
        self.queue = RenderQueue(self.model, max_batch=max_batch, cache_size=cache_size)
        self._images: OrderedDict[str, Picked] = OrderedDict()
        self._lock = threading.Lock()
        self._strip_values: dict[int, torch.Tensor] = {}

    def close(self) -> None:
        self.queue.close()

    # -- what the page shows once --------------------------------------------------------------

    def _fit_axes(self) -> None:
        n, k = self.num_units, self.width
        self.group = k // n  # coordinates per unit
        if self.group == 1:
            self.mean, self.axis = torch.zeros(n, 1), torch.ones(n, 1)
        else:
            pca = PerUnitPCA().fit(self.reference_units.view(-1, n, self.group).numpy())
            self.mean = torch.from_numpy(pca.mean_).float()
            self.axis = torch.from_numpy(pca.components_).float()
        observed = self.project(self.reference_units)  # (M, N)
        q = torch.quantile(observed, torch.tensor([0.01, 0.5, 0.99]), dim=0)  # (3, N)
        low, self.median, high = q[0], q[1], q[2]
        flat = (high - low) <= 1e-6  # a dead unit: give its slider some room anyway
        self.low, self.high = torch.where(flat, low - 1, low), torch.where(flat, high + 1, high)

    def project(self, units: torch.Tensor) -> torch.Tensor:
        """Slider values (B, N) of units (B, K)."""
        tokens = units.float().view(len(units), self.num_units, self.group)  # (B, N, g)
        return ((tokens - self.mean) * self.axis).sum(-1)

    def with_values(self, units: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """Units (K,) moved so their slider values become ``values`` (N,)."""
        tokens = units.float().view(self.num_units, self.group)
        shift = values - self.project(units[None])[0]  # (N,)
        return (tokens + shift[:, None] * self.axis).flatten()

    def _unit_factor(self, num: int, seed: int) -> np.ndarray:
        """(N, F) DCI importances, read from the run's cache when it is for this checkpoint."""
        checkpoint = latest_checkpoint(self.run.path)
        key = {"checkpoint": checkpoint.name if checkpoint else None, "num": num, "seed": seed}
        path = self.cache_dir / "unit_factor.json"
        if path.is_file():
            try:
                cached = json.loads(path.read_text())
            except (OSError, ValueError):
                cached = {}
            if {k: cached.get(k) for k in key} == key:
                importance = np.asarray(cached["importance"], dtype=np.float64)
                if importance.shape == (self.num_units, len(self.factor_sizes)):
                    return importance
        importance = unit_factor_importance(self.run, num=num, seed=seed)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, json.dumps({**key, "importance": importance.tolist()}))
        except OSError as err:  # a read-only run still explores; say the fit is not kept
            print(f"diffdrl explore: could not cache the unit-factor fit in {path}: {err}")
        return importance

    @torch.no_grad()
    def _anchor_values(self) -> list[list[dict]] | None:
        """Per unit, its active DyGA components as slider positions; None without fitted anchors."""
        anchors = getattr(self.model, "anchors", None)
        if anchors is None or not (anchors.config.enabled and anchors._is_fitted):
            return None
        means = anchors.raw_means().float().cpu()  # (N, C, d)
        active, weights = anchors.active.cpu(), anchors.weights.float().cpu()  # (N, C)
        if self.group == 1:  # the value whose token is nearest each mean, along each unit's curve
            span = self.high - self.low
            grid = torch.linspace(0, 1, 512)[:, None] * 2 * span + (self.low - span / 2)  # (G, N)
            device = next(self.model.parameters()).device
            curve = self.model.raw_tokens(grid.to(device)).float().cpu()  # (G, N, d)
            dist = torch.cdist(curve.transpose(0, 1), means)  # (N, G, C)
            best, index = dist.min(1)  # (N, C)
            position = grid.T.gather(1, index)  # (N, C)
        else:
            position = ((means - self.mean[:, None]) * self.axis[:, None]).sum(-1)  # (N, C)
            best = torch.zeros_like(position)
        return [
            [
                {
                    "value": float(position[i, c]),
                    "weight": float(weights[i, c]),
                    "distance": float(best[i, c]),
                }
                for c in torch.nonzero(active[i]).flatten().tolist()
            ]
            for i in range(self.num_units)
        ]

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
            "sampler": DEFAULT_SAMPLER if self.diffusion else None,
            "steps": DEFAULT_STEPS if self.diffusion else None,
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

    def image(self, image_id) -> Picked:
        """The stored image ``image_id`` (16 hex digits); a malformed id is a ValueError, an
        unknown one (never added, or evicted) a KeyError."""
        if not isinstance(image_id, str) or not IMAGE_ID.fullmatch(image_id):
            raise ValueError(f"image_id must be 16 lowercase hex digits, got {image_id!r}")
        with self._lock:
            if image_id not in self._images:
                raise KeyError(f"no image {image_id!r} (not added yet, or evicted: pick it again)")
            self._images.move_to_end(image_id)
            return self._images[image_id]

    def add(self, pixels: np.ndarray, factors: list[int] | None, source: str) -> Picked:
        image_id = hashlib.sha256(np.ascontiguousarray(pixels).tobytes()).hexdigest()[:16]
        with self._lock:
            if image_id in self._images:
                self._images.move_to_end(image_id)
                return self._images[image_id]
        units = self.queue.call(lambda: self.model.encode(pixels[None])[0].float().cpu()).result()
        image = Picked(image_id, pixels, units, self.project(units[None])[0].numpy(), factors, source)
        with self._lock:
            self._images[image_id] = image
            while len(self._images) > self.max_images:
                self._images.popitem(last=False)
        return image

    def random_image(self, seed: int) -> Picked:
        codes, images = self.run.sample(1, _seed(seed))
        return self.add(images[0], None if codes is None else [int(c) for c in codes[0]], "dataset")

    def factor_image(self, factors) -> Picked:
        if not self.factor_sizes:
            raise ValueError(f"dataset {self.run.config.data.name!r} has no factors to pick an image by")
        if not isinstance(factors, list) or not all(
            isinstance(f, int) and not isinstance(f, bool) for f in factors
        ):
            raise TypeError(f"factors must be a list of {len(self.factor_sizes)} integers, got {factors!r}")
        codes = self.run.data.space.check_codes(np.array([factors], dtype=np.int64))
        return self.add(self.run.data.images_for(codes)[0], factors, "dataset")

    def upload(self, data: bytes) -> Picked:
        pixels = decode_upload(data, self.run.config.data.resolution, self.max_upload_bytes)
        return self.add(pixels, None, "upload")

    def describe(self, image: Picked) -> dict:
        return {
            "image_id": image.id,
            "png": data_url(encode_png(image.pixels)),
            "values": [float(v) for v in image.values],
            "factors": image.factors,
            "source": image.source,
        }

    # -- renders ----------------------------------------------------------------------------------

    def sampling(self, sampler, steps) -> tuple[str | None, int | None]:
        """The checked sampling options: a sampler of ``SAMPLERS`` and 1..MAX_STEPS steps for a
        diffusion model (defaults when unset); none for a one-pass decoder, where giving either is
        a ValueError (nothing would use them)."""
        if not self.diffusion:
            if sampler is not None or steps is not None:
                raise ValueError(
                    f"sampler/steps: model {model_name(self.model)!r} decodes its units in one pass; "
                    "leave them unset"
                )
            return None, None
        sampler = DEFAULT_SAMPLER if sampler is None else sampler
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
        steps = DEFAULT_STEPS if steps is None else steps
        if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_STEPS:
            raise ValueError(f"steps must be an integer in [1, {MAX_STEPS}], got {steps!r}")
        return sampler, steps

    def _render(self, image_id: str, units: torch.Tensor, sampler, steps, seed):
        key = RenderKey(image_id, units.float().numpy().tobytes(), sampler, steps, seed)
        return self.queue.render(key, units)

    def render(self, image_id, values=None, sampler=None, steps=None, seed=0) -> bytes:
        """PNG of the image regenerated from its units, with the sliders at ``values`` (N,)
        when given (None: its own units, the reconstruction)."""
        image = self.image(image_id)
        sampler, steps = self.sampling(sampler, steps)
        units = image.units if values is None else self.with_values(image.units, self._values(values))
        return self._render(image.id, units, sampler, steps, _seed(seed)).result()

    def swap(self, source_id, target_id, unit, sampler=None, steps=None, seed=0) -> bytes:
        """PNG of the source with unit ``unit`` (or ``"all"``) taken from the target: what
        ``viz.interchange`` renders for the pair (same sampler, steps and seed)."""
        source, target = self.image(source_id), self.image(target_id)
        sampler, steps = self.sampling(sampler, steps)
        if unit == "all":
            units = target.units.clone()
        else:
            i = self.unit_index(unit)
            units = swap_units(source.units[None], target.units[None], self.num_units)[i, 0]
        return self._render(source.id, units, sampler, steps, _seed(seed)).result()

    def strip(self, image_id, unit, count=8, sampler=None, steps=None, seed=0) -> dict:
        """The traversal of one unit: ``count`` images with the unit set to evenly spaced 2%-98%
        quantiles of its observed values, the rest of the image's units fixed (``viz.traversal``)."""
        image = self.image(image_id)
        i = self.unit_index(unit)
        if isinstance(count, bool) or not isinstance(count, int) or not 2 <= count <= MAX_STRIP:
            raise ValueError(f"count must be an integer in [2, {MAX_STRIP}], got {count!r}")
        sampler, steps = self.sampling(sampler, steps)
        values = self._strip_values.get(count)
        if values is None:
            values = self._strip_values[count] = unit_ranges(
                self.reference_units, count, num_units=self.num_units
            )
        values = values.reshape(self.num_units, count, -1)[i]  # (V, g)
        units = image.units.repeat(count, 1).view(count, self.num_units, -1)  # (V, N, g)
        units[:, i] = values
        seed = _seed(seed)
        futures = [self._render(image.id, u.flatten(), sampler, steps, seed) for u in units]
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
            low, high = maps.flatten(1).min(1).values, maps.flatten(1).max(1).values  # (N,)
            # min-max scaled per token: near-uniform maps still show where they peak
            maps = (maps - low[:, None, None]) / (high - low).clamp_min(1e-12)[:, None, None]
            colours = colormaps["jet"](maps.numpy())  # (N, H, W, 4)
            colours[..., 3] = 0.15 + 0.6 * maps.numpy()
            image.attention = [data_url(encode_png((c * 255).round().astype(np.uint8))) for c in colours]
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
