"""Attention maps as the page draws them: one RGBA PNG overlay per token."""

from __future__ import annotations

import base64

import numpy as np
import torch

from diffdrl.explore.uploads import encode_png


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def attention_overlays(maps: torch.Tensor) -> list[str]:
    """PNG data URLs of maps (N, H, W): each min-max scaled per token, so near-uniform maps still
    show where they peak, in jet colours, more opaque where higher."""
    from matplotlib import colormaps  # only when a page asks for attention

    low, high = maps.flatten(1).min(1).values, maps.flatten(1).max(1).values  # (N,)
    maps = (maps - low[:, None, None]) / (high - low).clamp_min(1e-12)[:, None, None]
    colours = colormaps["jet"](maps.numpy())  # (N, H, W, 4)
    colours[..., 3] = 0.15 + 0.6 * maps.numpy()
    return [data_url(encode_png((c * 255).round().astype(np.uint8))) for c in colours]
