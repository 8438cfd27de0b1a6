"""FID and LPIPS, from feature networks the user supplies as TorchScript or torch.export files.

Nothing is downloaded here, so the networks come from the user: ``inception`` is a module
mapping images to pool features (B, F), e.g. the ``inception-2015-12-05.pt`` file that clean-fid
and StyleGAN3's metrics use (uint8 NCHW input, 2048-d pool3 features); ``lpips`` is a module
mapping two image batches in [-1, 1] to per-image distances (B,) (an exported LPIPS-AlexNet, for
instance). Both formats load without unpickling arbitrary Python objects, unlike pickled
checkpoints.

FID (Heusel et al. 2017) = |mu_1 - mu_2|^2 + tr(S_1 + S_2 - 2 (S_1 S_2)^(1/2)), computed in float64.
"""

from __future__ import annotations

import contextlib
import logging
import zipfile
from pathlib import Path

import numpy as np
import scipy.linalg
import torch

from diffdrl.data.ground_truth import to_model_input

INPUTS = ("uint8", "float")


def load_feature_network(path: str | Path, what: str):
    """The network in ``path``: a ``torch.export`` program (``.pt2``) or a TorchScript archive
    (anything else), with a clear error when it is missing or neither."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} weights not found: {path} (give a TorchScript or .pt2 file)")
    try:
        if path.suffix == ".pt2":
            with _silenced("torch.export"):  # it logs a traceback before raising: one line is ours
                return torch.export.load(str(path)).module()
        return torch.jit.load(str(path), map_location="cpu").eval()
    except (RuntimeError, ValueError, KeyError, OSError, EOFError, zipfile.BadZipFile) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"{path} is not a TorchScript or torch.export {what} network: {first}") from None


@contextlib.contextmanager
def _silenced(name: str):
    """Mute logger ``name`` for the block."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(level)


def frechet_distance(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
    """Fréchet distance between N(mu1, cov1) and N(mu2, cov2)."""
    mu1, mu2, cov1, cov2 = (np.asarray(a, dtype=np.float64) for a in (mu1, mu2, cov1, cov2))
    root = scipy.linalg.sqrtm(cov1 @ cov2)
    if not np.isfinite(root).all():  # singular product: regularise as the reference code does
        eye = np.eye(len(cov1)) * 1e-6
        root = scipy.linalg.sqrtm((cov1 + eye) @ (cov2 + eye))
    root = root.real
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(cov1) + np.trace(cov2) - 2 * np.trace(root))


@torch.no_grad()
def features(network, images: np.ndarray, input_kind: str = "uint8", batch_size: int = 256) -> np.ndarray:
    """Features (n, F) float64 of uint8 images (n, H, W, C), fed as uint8 NCHW or float [-1, 1]."""
    if input_kind not in INPUTS:
        raise ValueError(f"input_kind must be one of {INPUTS}, got {input_kind!r}")
    out = []
    for i in range(0, len(images), batch_size):
        batch = images[i : i + batch_size]
        x = torch.from_numpy(batch).permute(0, 3, 1, 2) if input_kind == "uint8" else to_model_input(batch)
        out.append(network(x).reshape(len(x), -1).double().numpy())
    return np.concatenate(out)


def fid(network, real: np.ndarray, generated: np.ndarray, input_kind: str = "uint8") -> float:
    """FID between two sets of uint8 images (each at least 2 images; thousands for a stable value)."""
    if min(len(real), len(generated)) < 2:
        raise ValueError("FID needs at least 2 images in each set")
    a, b = features(network, real, input_kind), features(network, generated, input_kind)
    return frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))


@torch.no_grad()
def lpips(network, reference: np.ndarray, output: np.ndarray, batch_size: int = 256) -> float:
    """Mean LPIPS distance between paired uint8 images, the network taking [-1, 1] floats."""
    if reference.shape != output.shape:
        raise ValueError(f"LPIPS needs paired images of one shape, got {reference.shape} and {output.shape}")
    total = 0.0
    for i in range(0, len(reference), batch_size):
        a, b = (to_model_input(x[i : i + batch_size]) for x in (reference, output))
        total += float(network(a, b).reshape(len(a), -1).mean(1).sum())
    return total / len(reference)
