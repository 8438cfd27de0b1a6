"""DCI: Disentanglement, Completeness, Informativeness (Eastwood & Williams 2018), dlib's protocol.

One classifier per factor predicts the factor class from all codes; its feature importances fill
column j of R (codes x factors). D_i = 1 - H_F(R_i. normalised), weighted by code importance
rho_i = sum_j R_ij / sum R; C_j = 1 - H_K(R_.j normalised), weighted by factor importance;
informativeness = mean classifier accuracy (train and test).

Importance (``importance``):
- ``"gbt"`` (canonical): scikit-learn's ``GradientBoostingClassifier()`` with default
  hyper-parameters and its ``feature_importances_``, reimplemented in ``gbt`` (all factors and
  the K class-trees of a round fitted together; compiled numba kernels on CPU, batched torch ops
  on CUDA via ``device``; ``gbt_backend`` picks one, both grow the same trees and the result
  records which). It grows scikit-learn's trees, split for split, until two codes tie exactly
  for a node's best split. Such ties are frequent (nodes of 2-3 samples, correlated codes, early
  rounds); scikit-learn then takes one code at random from its ``random_state``, and so does
  ``gbt``, from the same ``random_state`` but its own generator. So for a given seed the two are
  not bit-identical: they agree as two scikit-learn seeds do (issue 27's battery of real models'
  codes, ``benchmarks/dci_real_codes.py``: within scikit-learn's seed range +- 0.003 in D and C
  on all 10 cases scored).
  The speed-up and the synthetic battery are in ``benchmarks/dci_speed.py``; all in
  benchmarks/RESULTS.md.
- ``"sklearn"``: scikit-learn's estimator itself (minutes at 10000/5000 on 2 cores): what a
  paper's final numbers should use when they must be scikit-learn's to the bit (``diffdrl
  evaluate --dci-importance sklearn``). Keys ``dci_sklearn.*``: the same protocol, another
  implementation, never silently swapped for ``dci.*``.
- ``"lightgbm"`` (fast): LightGBM with the same tree shape (depth 3, 8 leaves, 100 rounds,
  rate 0.1, 1 sample per leaf) and *gain* importances normalised to sum 1 per factor, like GBT's
  impurity importances. Split-count importances (LightGBM's default) are badly biased. Agreement
  with GBT is close but not exact, because LightGBM picks and scores splits by Newton gain
  (gradient^2 / hessian), which weighs late, noise-fitting trees more than GBT's squared-error
  criterion. Measured (LightGBM minus GBT): D +0.003, C +0.006 on 10 codes x 6 factors at 5000
  points; within 0.02 on the tests' cases; but D +0.060, C +0.042 on the benchmark's 20-unit
  synth-shapes3d case at 10000/5000 (benchmarks/results/metrics_speed.json) and D -0.10 on
  near-separable noisy codes with 1500 points. So fast DCI is for monitoring and ranking runs,
  not for reporting: its keys are ``dci_lightgbm.*`` (or ``dci_fast.*`` in the fast preset),
  never ``dci.*``.
``random_state`` (scikit-learn's, and ``gbt``'s tie-breaking seed) is drawn from the metric's
generator (dlib left it unset); it only decides between exactly tied features. ``n_jobs`` fits
factors in parallel threads for ``"sklearn"`` and ``"lightgbm"``; ``"gbt"`` uses numba's threads
(``NUMBA_NUM_THREADS``) or torch's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.stats
from joblib import Parallel, delayed

from diffdrl.metrics.gbt import BACKENDS, fit_gbt
from diffdrl.metrics.presets import DCI_IMPORTANCE as IMPORTANCE
from diffdrl.metrics.presets import variant_suffix
from diffdrl.metrics.sampling import ENCODE_BATCH_SIZE, sample_points


@dataclass
class DCIResult:
    """DCI scores with the importance matrix (K codes x F factors) they came from.

    With ``importance="gbt"`` the scores are scikit-learn's estimator's up to its tie-breaking:
    where codes tie exactly for a split (common on real codes) ``gbt`` draws its own choice, so
    D and C match scikit-learn's to within its spread over ``random_state`` (about 0.004 in D on
    a trained model's codes), not to the bit; ``importance="sklearn"`` is scikit-learn itself.
    """

    disentanglement: float
    completeness: float
    informativeness_train: float
    informativeness_test: float
    importance_matrix: np.ndarray
    accuracy_test: np.ndarray  # (F,) held-out accuracy per factor: which factors the codes capture
    gbt_backend: str | None = None  # "numba" or "torch" when importance="gbt" grew the trees

    def scores(self, ns: str = "dci") -> dict[str, float]:
        return {
            f"{ns}.disentanglement": self.disentanglement,
            f"{ns}.completeness": self.completeness,
            f"{ns}.informativeness_train": self.informativeness_train,
            f"{ns}.informativeness_test": self.informativeness_test,
        }


def dci(
    data,
    represent,
    rng: np.random.Generator,
    *,
    num_train: int = 10000,
    num_test: int = 5000,
    importance: str = "gbt",
    encode_batch_size: int = ENCODE_BATCH_SIZE,
    n_jobs: int = 1,
    device: str | None = None,
) -> dict[str, float]:
    """DCI disentanglement, completeness and informativeness of ``represent`` on ``data``."""
    ns = "dci" + variant_suffix("dci", dci, locals())
    x_train, y_train = sample_points(data, represent, num_train, rng, encode_batch_size=encode_batch_size)
    x_test, y_test = sample_points(data, represent, num_test, rng, encode_batch_size=encode_batch_size)
    seed = int(rng.integers(2**31 - 1))
    result = dci_from_codes(
        x_train,
        y_train,
        x_test,
        y_test,
        importance=importance,
        random_state=seed,
        n_jobs=n_jobs,
        device=device,
    )
    return result.scores(ns)


def dci_from_codes(
    train_codes: np.ndarray,
    train_factors: np.ndarray,
    test_codes: np.ndarray,
    test_factors: np.ndarray,
    *,
    importance: str = "gbt",
    random_state: int = 0,
    n_jobs: int = 1,
    device: str | None = None,
    gbt_backend: str = "auto",
) -> DCIResult:
    """DCI from codes (n, K) and integer factors (n, F), train and test.

    ``gbt_backend`` ("auto", "numba", "torch"; see ``gbt``) only matters for ``importance="gbt"``
    and never changes the result; the one used is in ``DCIResult.gbt_backend``.
    """
    if importance not in IMPORTANCE:
        raise ValueError(f"importance must be one of {IMPORTANCE}, got {importance!r}")
    if gbt_backend not in BACKENDS:
        raise ValueError(f"gbt_backend must be one of {BACKENDS}, got {gbt_backend!r}")
    for name, x in (("train_codes", train_codes), ("test_codes", test_codes)):
        if np.ndim(x) != 2:
            raise ValueError(f"{name} must have shape (n, K), got {np.shape(x)}")
    backend = None
    if importance == "gbt":
        fit = fit_gbt(
            train_codes,
            train_factors,
            test_codes,
            test_factors,
            device=device,
            backend=gbt_backend,
            random_state=random_state,
        )
        r, acc_train, acc_test, backend = fit.importances, fit.accuracy_train, fit.accuracy_test, fit.backend
    else:
        fit_one = _fit_sklearn if importance == "sklearn" else _fit_lightgbm
        columns = Parallel(n_jobs=n_jobs, prefer="threads")(
            delayed(fit_one)(train_codes, y, test_codes, y_test, random_state)
            for y, y_test in zip(np.asarray(train_factors).T, np.asarray(test_factors).T, strict=True)
        )
        r = np.stack([c[0] for c in columns], 1)  # (K, F)
        acc_train = np.array([c[1] for c in columns], dtype=np.float64)
        acc_test = np.array([c[2] for c in columns], dtype=np.float64)
    return DCIResult(
        disentanglement=disentanglement(r),
        completeness=completeness(r),
        informativeness_train=float(np.mean(acc_train)),
        informativeness_test=float(np.mean(acc_test)),
        importance_matrix=r,
        accuracy_test=acc_test,
        gbt_backend=backend,
    )


def _fit_sklearn(x, y, x_test, y_test, seed):
    from sklearn.ensemble import GradientBoostingClassifier

    model = GradientBoostingClassifier(random_state=seed).fit(x, y)
    importances = np.abs(model.feature_importances_)
    return importances, np.mean(model.predict(x) == y), np.mean(model.predict(x_test) == y_test)


def _fit_lightgbm(x, y, x_test, y_test, seed):
    try:
        import lightgbm
    except ImportError as err:  # pragma: no cover - lightgbm is a dependency
        raise ImportError(
            "DCI importance='lightgbm' needs the lightgbm package (pip install lightgbm)"
        ) from err
    model = lightgbm.LGBMClassifier(
        n_estimators=100,
        learning_rate=0.1,
        max_depth=3,
        num_leaves=8,
        min_child_samples=1,  # GBT's min_samples_leaf=1; LightGBM's default 20 moved D by 0.02 at 5000 points
        importance_type="gain",
        random_state=seed,
        n_jobs=1,
        verbose=-1,
    )
    model.fit(x, y)
    gain = np.abs(model.booster_.feature_importance("gain"))
    importances = gain / gain.sum() if gain.sum() > 0 else gain
    return importances, np.mean(model.predict(x) == y), np.mean(model.predict(x_test) == y_test)


def disentanglement(importance_matrix: np.ndarray) -> float:
    """Importance-weighted mean over codes of 1 - entropy (base F) of each code's row of R (K, F)."""
    r = np.asarray(importance_matrix, dtype=np.float64)
    per_code = 1.0 - scipy.stats.entropy(r.T + 1e-11, base=r.shape[1])
    weights = r if r.sum() > 0 else np.ones_like(r)
    return float(np.sum(per_code * weights.sum(1) / weights.sum()))


def completeness(importance_matrix: np.ndarray) -> float:
    """Importance-weighted mean over factors of 1 - entropy (base K) of each factor's column of R."""
    r = np.asarray(importance_matrix, dtype=np.float64)
    per_factor = 1.0 - scipy.stats.entropy(r + 1e-11, base=r.shape[0])
    weights = r if r.sum() > 0 else np.ones_like(r)
    return float(np.sum(per_factor * weights.sum(0) / weights.sum()))
