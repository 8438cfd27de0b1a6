"""SynthDSprites: a download-free, dSprites-like 2D set rendered on demand.

Factors as in dSprites (Matthey et al., 2017) without the constant colour: shape (square,
ellipse, heart) 3, scale 6, orientation 40, position_x 32, position_y 32 (737,280 states),
position_y fastest. A white shape on black, each pixel the coverage of ``supersample``^2
sub-pixel tests of an implicit inside-function in the shape's own frame, so any resolution
works and edges are antialiased. Deterministic: the pixels of a code do not depend on the batch.

Geometry in units of the image side: centres ``0.2 .. 0.8`` in 32 steps, half-size
``0.1 x linspace(0.5, 1, 6)``, angle ``linspace(0, 2 pi, 40)`` (both ends, as dSprites, so the
first and last orientations coincide). Deviations from dSprites: analytic shapes, not sprites;
grey antialiased edges instead of binary pixels; images are repeated to 3 channels.
"""

from __future__ import annotations

import numpy as np
import torch

from diffdrl.data.ground_truth import GroundTruthDataset
from diffdrl.data.image_dataset import check_resolution

SHAPES = ("square", "ellipse", "heart")
SCALES = 0.1 * np.linspace(0.5, 1.0, 6)
ORIENTATIONS = np.linspace(0.0, 2 * np.pi, 40)
POSITIONS = np.linspace(0.2, 0.8, 32)


def _inside(shape: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Whether points (u, v) of each shape's unit frame (v up) are inside; shape (B, 1, 1)."""
    square = torch.maximum(u.abs(), v.abs()) <= 1
    ellipse = u**2 + (v / 0.5) ** 2 <= 1
    x, y = 1.15 * u, 1.15 * v + 0.1  # the classic heart curve, centred on its bounding box
    heart = (x**2 + y**2 - 1) ** 3 - x**2 * y**3 <= 0
    return torch.where(shape == 0, square, torch.where(shape == 1, ellipse, heart))


class SynthDSprites(GroundTruthDataset):
    """Procedural dSprites-like shapes (see module doc).

    Args:
        resolution: image height and width in pixels (at least 8).
        supersample: sub-pixel samples per axis for antialiasing (at least 1).
    """

    factor_names = ("shape", "scale", "orientation", "position_x", "position_y")
    factor_sizes = (3, 6, 40, 32, 32)
    chunk_size = 256

    def __init__(self, resolution: int = 64, supersample: int = 3):
        self.resolution = check_resolution(resolution)
        if isinstance(supersample, bool) or not isinstance(supersample, int) or supersample < 1:
            raise ValueError(f"supersample must be a positive int, got {supersample!r}")
        self.supersample = supersample

    def images_for(self, codes: np.ndarray) -> np.ndarray:
        codes = torch.from_numpy(self.space.check_codes(codes))
        chunks = range(0, max(len(codes), 1), self.chunk_size)
        return np.concatenate([self.render(codes[i : i + self.chunk_size]).numpy() for i in chunks])

    def render(self, codes: torch.Tensor) -> torch.Tensor:
        """Images uint8 (B, H, W, 3) of factor codes int64 (B, 5), on the codes' device."""
        device, n = codes.device, self.resolution * self.supersample
        table = lambda values: torch.tensor(values, dtype=torch.float64, device=device)  # noqa: E731
        shape = codes[:, 0, None, None]
        scale = table(SCALES)[codes[:, 1]][:, None, None]
        angle = table(ORIENTATIONS)[codes[:, 2]][:, None, None]
        cx, cy = (table(POSITIONS)[codes[:, k]][:, None, None] for k in (3, 4))
        grid = (torch.arange(n, device=device, dtype=torch.float64) + 0.5) / n
        dx, dy = grid[None, None, :] - cx, grid[None, :, None] - cy  # (B, 1, n), (B, n, 1); rows down
        cos, sin = torch.cos(angle), torch.sin(angle)
        u = (cos * dx - sin * dy) / scale  # rotate by -angle into the shape's frame (v up = -dy)
        v = (-sin * dx - cos * dy) / scale
        inside = _inside(shape, u, v).to(torch.float32)  # (B, n, n)
        r, s = self.resolution, self.supersample
        cover = inside.reshape(-1, r, s, r, s).mean(dim=(2, 4))
        return cover.mul(255).round().to(torch.uint8)[..., None].expand(-1, r, r, 3).contiguous()
