"""Which unit informs which factor: DCI's importance matrix (units x factors) as a heat map."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from diffdrl.metrics.dci import DCIResult, dci_from_codes
from diffdrl.models.representation import encode_images
from diffdrl.training.runs import Run
from diffdrl.viz.grid import panels, save_figure


def unit_factor_dci(run: Run, num: int = 3000, seed: int = 0) -> DCIResult:
    """DCI of the run's units for its dataset's factors, from ``num`` samples (two thirds to fit,
    one third held out), with the fast LightGBM-gain estimator (non-canonical; for labelling,
    pictures and diagnostics, not for reporting scores)."""
    factors, images = run.sample(num, seed)
    units = encode_images(run.model, images)  # (num, K)
    split = 2 * num // 3
    return dci_from_codes(
        units[:split], factors[:split], units[split:], factors[split:], importance="lightgbm"
    )


def unit_factor_importance(run: Run, num: int = 3000, seed: int = 0) -> np.ndarray:
    """(N, F) DCI importances of the run's units (``unit_factor_dci``). A unit of several
    coordinates (EncDiff-V's token) gets the sum of its coordinates' importances (gains add up)."""
    return per_unit(unit_factor_dci(run, num, seed).importance_matrix, run.config.model.units)


def per_unit(importance: np.ndarray, units: int) -> np.ndarray:
    """(K, F) coordinate importances -> (N, F) unit importances, summing each unit's coordinates."""
    return importance.reshape(units, -1, importance.shape[1]).sum(1)


def unit_order(importance: np.ndarray) -> np.ndarray:
    """Units grouped by the factor they inform most, strongest first within a factor."""
    best = importance.argmax(axis=1)
    return np.lexsort((-importance.max(axis=1), best))


def save_unit_factor_matrix(importance: np.ndarray, factor_names, path: str | Path) -> Path:
    order = unit_order(importance)
    matrix = importance[order]
    figure, (ax,) = panels(1, 1, 1.0 + 0.7 * len(factor_names), 0.8 + 0.28 * len(order))
    image = ax.imshow(matrix, cmap="viridis", aspect="auto", vmin=0)
    ax.set_xticks(range(len(factor_names)), factor_names, rotation=35, ha="right", fontsize=8)
    ax.set_yticks(range(len(order)), [f"unit {i}" for i in order], fontsize=7)
    ax.set_title("unit x factor importance (DCI, LightGBM gain)", fontsize=9)
    figure.colorbar(image, ax=ax, fraction=0.05)
    return save_figure(figure, path)
