"""SynthXYObject: disent's XYObject, one filled coloured square on black, rendered on demand.

Factors as in disent (Michlo et al.) ``XYObjectData`` defaults: x 25, y 25, scale 5, colour 24
(75,000 states), colour fastest. On a 64-unit canvas the square's corner is at ``2 x`` and
``2 y`` and its side is ``7 + 2 scale`` (7..15), so it always stays inside. Colours are 6 hues
(red, yellow, green, cyan, blue, magenta) at 4 brightnesses. Any resolution: each pixel's value
is the exact area of the square covering it (separable box overlap), so 64 x 64 is crisp and
other sizes are antialiased; the result depends only on the code.

Deviation from disent: our 24-colour palette is ours (disent's default palette differs).
"""

from __future__ import annotations

import numpy as np
import torch

from diffdrl.data.ground_truth import GroundTruthDataset
from diffdrl.data.image_dataset import check_resolution

CANVAS = 64
HUES = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 1, 1], [0, 0, 1], [1, 0, 1]], np.float32)
BRIGHTNESS = np.array([0.4, 0.6, 0.8, 1.0], np.float32)
PALETTE = (HUES[:, None] * BRIGHTNESS[None, :, None]).reshape(24, 3)  # hue-major


def _overlap(start: torch.Tensor, stop: torch.Tensor, resolution: int) -> torch.Tensor:
    """Fraction of each of ``resolution`` pixels covered by [start, stop) in canvas units, (B, r)."""
    edges = torch.arange(resolution + 1, dtype=torch.float64) * (CANVAS / resolution)
    low, high = edges[None, :-1], edges[None, 1:]
    return (torch.minimum(high, stop[:, None]) - torch.maximum(low, start[:, None])).clamp(min=0) / (
        high - low
    )


class SynthXYObject(GroundTruthDataset):
    """Procedural XYObject (see module doc).

    Args:
        resolution: image height and width in pixels (at least 8).
    """

    factor_names = ("x", "y", "scale", "color")
    factor_sizes = (25, 25, 5, 24)

    def __init__(self, resolution: int = 64):
        self.resolution = check_resolution(resolution)

    def images_for(self, codes: np.ndarray) -> np.ndarray:
        codes = torch.from_numpy(self.space.check_codes(codes)).to(torch.float64)
        x, y, side = 2 * codes[:, 0], 2 * codes[:, 1], 7 + 2 * codes[:, 2]
        cover_x = _overlap(x, x + side, self.resolution)  # (B, W)
        cover_y = _overlap(y, y + side, self.resolution)  # (B, H)
        cover = cover_y[:, :, None] * cover_x[:, None, :]  # (B, H, W)
        colour = torch.from_numpy(PALETTE).to(torch.float64)[codes[:, 3].long()]  # (B, 3)
        image = cover[..., None] * colour[:, None, None, :] * 255
        return image.round().clamp(0, 255).to(torch.uint8).numpy()
