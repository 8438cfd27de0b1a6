"""The images being explored: a bounded store keyed by a hash of their pixels, least recently used
evicted first, safe to use from the app's thread pool."""

from __future__ import annotations

import hashlib
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
import torch

IMAGE_ID = re.compile(r"[0-9a-f]{16}")


@dataclass
class ExploredImage:
    """An image being explored: its pixels, units (K,), slider values (N,) and factor codes."""

    id: str
    pixels: np.ndarray  # uint8 (H, W, C)
    units: torch.Tensor  # (K,)
    values: np.ndarray  # (N,)
    factors: list[int] | None
    source: str  # "dataset" or "upload"
    attention: list[str] | None = field(default=None, repr=False)


def image_id(pixels: np.ndarray) -> str:
    """16 hex digits of the SHA-256 of the pixels: the same image always gets the same id."""
    return hashlib.sha256(np.ascontiguousarray(pixels).tobytes()).hexdigest()[:16]


class ImageStore:
    """At most ``max_images`` images by id (least recently used evicted first)."""

    def __init__(self, max_images: int):
        self.max_images = max_images
        self._images: OrderedDict[str, ExploredImage] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key) -> ExploredImage:
        """The stored image ``key`` (16 hex digits); a malformed id is a ValueError, an unknown
        one (never added, or evicted) a KeyError."""
        if not isinstance(key, str) or not IMAGE_ID.fullmatch(key):
            raise ValueError(f"image_id must be 16 lowercase hex digits, got {key!r}")
        found = self.find(key)
        if found is None:
            raise KeyError(f"no image {key!r} (not added yet, or evicted: pick it again)")
        return found

    def find(self, key: str) -> ExploredImage | None:
        """The stored image ``key`` (marked as just used), or None."""
        with self._lock:
            if key not in self._images:
                return None
            self._images.move_to_end(key)
            return self._images[key]

    def put(self, image: ExploredImage) -> ExploredImage:
        with self._lock:
            self._images[image.id] = image
            while len(self._images) > self.max_images:
                self._images.popitem(last=False)
        return image
