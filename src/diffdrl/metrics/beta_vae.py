"""BetaVAE score (Higgins et al. 2017, "beta-VAE", Sec. 3), dlib's scikit-learn version.

A training point: pick factor k; draw two batches of ``batch_size`` factor vectors that agree on
factor k pairwise; its feature is the mean absolute difference of their codes, its label k. A
logistic regression learns k from the features; the score is its accuracy on fresh points.
The classifier is scikit-learn 1.x's ``LogisticRegression()`` default (lbfgs, multinomial),
pinned; convergence warnings are silenced (see ``modularity`` for the version note).
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from diffdrl.metrics.presets import variant_suffix
from diffdrl.metrics.sampling import ENCODE_BATCH_SIZE, encode_groups, paired_groups


def beta_vae(
    data,
    represent,
    rng: np.random.Generator,
    *,
    batch_size: int = 64,
    num_train: int = 10000,
    num_eval: int = 5000,
    encode_batch_size: int = ENCODE_BATCH_SIZE,
) -> dict[str, float]:
    """BetaVAE train and eval accuracy of ``represent`` on ``data``."""
    ns = "beta_vae" + variant_suffix("beta_vae", beta_vae, locals())

    def points(num: int) -> tuple[np.ndarray, np.ndarray]:
        k, first, second = paired_groups(data, num, batch_size, rng)
        both = np.concatenate([first, second], 1)  # (V, 2G, F): one group per pair of batches
        g = batch_size

        def feature(z):  # (v, 2G, K) -> (v, K)
            return np.abs(z[:, :g].astype(np.float64) - z[:, g:]).mean(1)

        return encode_groups(data, represent, both, feature, encode_batch_size=encode_batch_size), k

    x, y = points(num_train)
    seed = int(rng.integers(2**31 - 1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = LogisticRegression(C=1.0, solver="lbfgs", max_iter=100, random_state=seed).fit(x, y)
    x_eval, y_eval = points(num_eval)
    return {
        f"{ns}.train_accuracy": float(np.mean(model.predict(x) == y)),
        f"{ns}.eval_accuracy": float(np.mean(model.predict(x_eval) == y_eval)),
    }
