"""Each unit's tokens in 2-D, coloured by the factor that unit informs most (DyGA's Figure 1).

Under Dynamic Gaussian Anchoring the tokens of a unit should form one cluster per value of its
factor; the fitted mixture components are drawn on top (means as crosses, 2-sigma ellipses) when
the projection is linear (PCA). PaCMAP or UMAP give non-linear views when installed; then only
the tokens are drawn, since Gaussians do not survive a non-linear map.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
from matplotlib.patches import Ellipse

from diffdrl.models.representation import encode_tokens, tokens_unavailable, unit_width
from diffdrl.training.runs import Run
from diffdrl.viz.grid import panels, save_figure
from diffdrl.viz.unit_factor import unit_factor_importance

METHODS = ("pca", "pacmap", "umap")


def project(tokens: np.ndarray, method: str = "pca", seed: int = 0) -> tuple[np.ndarray, np.ndarray | None]:
    """2-D coordinates (M, 2) of one unit's tokens (M, d), and the (2, d) basis + mean when linear."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method == "pca":
        mean = tokens.mean(0)
        _, _, vt = np.linalg.svd(tokens - mean, full_matrices=False)
        basis = vt[:2]  # (2, d)
        return (tokens - mean) @ basis.T, np.vstack([basis, mean])
    if importlib.util.find_spec(method) is None:
        raise ValueError(
            f"method {method!r} needs the '{'umap-learn' if method == 'umap' else method}' package"
        )
    if method == "pacmap":
        import pacmap

        return pacmap.PaCMAP(n_components=2, random_state=seed).fit_transform(tokens), None
    import umap

    return umap.UMAP(n_components=2, random_state=seed).fit_transform(tokens), None


def embeddings_unavailable(run: Run) -> str | None:
    """Why unit embeddings cannot be drawn for this run, or None when they can."""
    if reason := tokens_unavailable(run.model, "unit embeddings"):
        return reason
    if _token_width(run.model) < 2:  # Diff-AE, InfoDiffusion: each token is its unit's own number
        return (
            f"unit embeddings: model {run.config.model.name!r} reads each unit as a one-number token "
            "(the unit itself), so there is no token embedding to draw"
        )
    if not getattr(run.data, "factor_sizes", None):
        return f"unit embeddings: dataset {run.config.data.name!r} has no ground-truth factors to colour by"
    return None


def _token_width(model) -> int:
    """d, the width of one token (EncDiff: ``token_dim``; a code-conditioned model: 1)."""
    import torch

    units = torch.zeros(1, unit_width(model), device=next(model.parameters()).device)
    with torch.no_grad():
        return model.tokens(units).shape[-1]


def save_unit_embeddings(
    run: Run,
    path: str | Path,
    units: list[int] | None = None,
    num: int = 2000,
    method: str = "pca",
    seed: int = 0,
    importance: np.ndarray | None = None,
) -> Path:
    """One panel per unit (default: the 8 most informative): its tokens before anchoring, coloured
    by the factor it informs most, with the fitted mixture (if any) on top. Models without tokens
    (the VAEs) and datasets without factors are a ``ValueError``."""
    model = run.model
    if reason := embeddings_unavailable(run):
        raise ValueError(reason)
    importance = unit_factor_importance(run, seed=seed) if importance is None else importance
    units = units if units is not None else list(np.argsort(-importance.sum(1))[:8])
    factors, images = run.sample(num, seed)
    tokens = encode_tokens(model, images, anchored=False)  # (M, N, d): what the mixtures are fitted on
    anchors = getattr(model, "anchors", None)  # DyGA's, on EncDiff; EncDec has none
    fitted = anchors is not None and anchors._is_fitted
    figure, axes = panels(len(units), 4, 3.2, 3.0)
    for ax, unit in zip(axes, units, strict=True):
        factor = int(importance[unit].argmax())
        xy, linear = project(tokens[:, unit], method, seed)
        scatter = ax.scatter(xy[:, 0], xy[:, 1], c=factors[:, factor], s=3, cmap="turbo", alpha=0.7)
        figure.colorbar(scatter, ax=ax, fraction=0.046).ax.tick_params(labelsize=6)
        if fitted and linear is not None:
            _draw_components(ax, anchors, unit, linear)
        ax.set_title(f"unit {unit}: {run.data.factor_names[factor]}", fontsize=9)
        ax.tick_params(labelsize=6)
    note = "fitted components: x = mean, ellipse = 2 sigma" if fitted else "no fitted anchors"
    figure.suptitle(f"tokens of each unit ({method.upper()}), coloured by its factor; {note}", fontsize=10)
    figure.tight_layout()
    return save_figure(figure, path, tight=False)


def _draw_components(ax, anchors, unit: int, linear: np.ndarray) -> None:
    """Project unit's active components (raw space) onto the PCA plane and draw them."""
    basis, mean = linear[:2], linear[2]
    active = anchors.active[unit].numpy()
    means = anchors.raw_means()[unit].numpy()[active]  # (K, d)
    span = float(anchors.token_span[unit])
    scales = anchors.scales[unit].numpy()[active]
    if scales.ndim == 3:  # Cholesky factors (K, d, d)
        cov = scales @ scales.transpose(0, 2, 1)
    else:  # standard deviations (K, d)
        cov = np.eye(scales.shape[-1]) * (scales**2)[:, None, :]
    cov = span**2 * cov  # back to the raw token space
    centres = (means - mean) @ basis.T
    for centre, c in zip(centres, basis @ cov @ basis.T, strict=True):
        values, vectors = np.linalg.eigh(c)
        angle = np.degrees(np.arctan2(vectors[1, -1], vectors[0, -1]))
        width, height = 4 * np.sqrt(np.maximum(values[::-1], 0))
        ax.add_patch(Ellipse(centre, width, height, angle=angle, fill=False, lw=0.8, color="black"))
    ax.scatter(centres[:, 0], centres[:, 1], marker="x", c="black", s=25, lw=1.2)
