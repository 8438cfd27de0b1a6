"""A trained model seen as a representation: uint8 images -> float32 codes, for metrics and pictures.

Lives beside the models (not in ``api``) so that the metrics' callers, the pictures and the trainer's
side jobs can all use it without importing upwards.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch is imported where it is used, so the CLI can read REPRESENTATIONS at once
    import torch

    from diffdrl.data.ground_truth import GroundTruthDataset

REPRESENTATIONS = ("units", "tokens")


def unit_width(model: torch.nn.Module) -> int:
    """K, the width of ``model.encode``'s output: the N units, or N d for EncDiff-V's vector tokens
    (each unit then spans d coordinates, ``unit_width(model) // model.config.units``)."""
    bank = getattr(model, "token_bank", None)
    return bank.in_features if bank is not None else getattr(model, "code_width", model.config.units)


def scored_representation(model: torch.nn.Module) -> str:
    """The representation a model is scored by when none is named: its ``scored_representation``
    (DisDiff: ``tokens``, each chunk's PCA-1, as DisDiff scores itself), else ``units``."""
    return getattr(model, "scored_representation", REPRESENTATIONS[0])


def has_tokens(model: torch.nn.Module) -> bool:
    """Whether the model turns its units into tokens (EncDiff and its ablations, EncDec; not the VAEs)."""
    return callable(getattr(model, "tokens", None))


def tokens_unavailable(model: torch.nn.Module, what: str) -> str | None:
    """Why ``what`` cannot be made for a model without tokens (a VAE), or None when it has them."""
    if has_tokens(model):
        return None
    return (
        f"{what}: not available for model {model.config.name!r}, which has no tokens (its decoder reads "
        "the units directly; models with tokens: encdiff, encdec)"
    )


def encode_images(model: torch.nn.Module, images: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Units (n, K) float32 of uint8 images (n, H, W, C), encoded in batches (K: ``unit_width``)."""
    import torch

    with torch.no_grad():
        out = [
            model.encode(images[i : i + batch_size]).float().cpu().numpy()
            for i in range(0, len(images), batch_size)
        ]
    return np.concatenate(out) if out else np.zeros((0, unit_width(model)), np.float32)


def encode_tokens(
    model: torch.nn.Module, images: np.ndarray, batch_size: int = 512, anchored: bool = True
) -> np.ndarray:
    """Tokens (n, N, d) float32 of uint8 images: those the denoiser reads (anchored under DyGA), or
    with ``anchored=False`` those before anchoring (what DyGA's mixtures are fitted on). A model
    without tokens (a VAE) is a ``ValueError``."""
    if reason := tokens_unavailable(model, "tokens"):
        raise ValueError(reason)
    import torch

    tokens = model.tokens if anchored else model.raw_tokens
    with torch.no_grad():
        out = [
            tokens(model.encode(images[i : i + batch_size])).float().cpu().numpy()
            for i in range(0, len(images), batch_size)
        ]
    return np.concatenate(out)


def representation(
    model: torch.nn.Module,
    kind: str | None = None,
    data: GroundTruthDataset | None = None,
    fit_samples: int = 10_000,
    seed: int = 0,
    batch_size: int = 512,
):
    """The model as a metrics representation function, uint8 images -> float32 (B, K):

    - ``units``: the encoder's scalars (EncDiff's evaluated representation; a VAE's means);
    - ``tokens``: each unit's token projected on its first principal component, fitted on
      ``fit_samples`` images of ``data`` (DyGA's evaluated representation: anchored tokens, PCA-1);
      models with tokens only;
    - ``None``: the model's own (``scored_representation``).
    """
    kind = kind or scored_representation(model)
    if kind not in REPRESENTATIONS:
        raise ValueError(f"representation must be one of {REPRESENTATIONS}, got {kind!r}")
    if getattr(model, "is_first_stage", False):
        model.encode(None)  # a first stage's one-line refusal, before any images are drawn
    if kind == "tokens" and (reason := tokens_unavailable(model, "the 'tokens' representation")):
        raise ValueError(reason)
    if kind == "units":
        return lambda images: encode_images(model, images, batch_size)
    from diffdrl.metrics.pca import PerUnitPCA

    if data is None:
        raise ValueError("the 'tokens' representation needs a dataset to fit its per-unit PCA on")
    _, images = data.sample(fit_samples, np.random.default_rng(seed))
    pca = PerUnitPCA().fit(encode_tokens(model, images, batch_size))
    return lambda images: pca.transform(encode_tokens(model, images, batch_size))
