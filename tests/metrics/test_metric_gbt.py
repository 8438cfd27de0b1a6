"""The batched GBT against scikit-learn's GradientBoostingClassifier (a fast subset of the battery)."""

import numpy as np
import pytest
from sklearn.ensemble import GradientBoostingClassifier

from diffdrl.metrics.dci import dci_from_codes
from diffdrl.metrics.gbt import fit_gbt


def sklearn_fit(x, y, x_test, y_test, n_estimators):
    columns = []
    for j in range(y.shape[1]):
        model = GradientBoostingClassifier(n_estimators=n_estimators, random_state=0).fit(x, y[:, j])
        columns.append(
            (
                model.feature_importances_,
                np.mean(model.predict(x) == y[:, j]),
                np.mean(model.predict(x_test) == y_test[:, j]),
            )
        )
    return (
        np.stack([c[0] for c in columns], 1),
        np.array([c[1] for c in columns]),
        np.array([c[2] for c in columns]),
    )


def case(kind: str, n: int = 450, seed: int = 0):
    rng = np.random.default_rng(seed)
    sizes = np.array({"binary": (2, 2), "tied": (3, 4, 6)}.get(kind, (2, 5, 3)))
    y = rng.integers(0, sizes, size=(n, len(sizes)))
    z = (y / (sizes - 1)) @ rng.normal(size=(len(sizes), 4))
    if kind == "tied":
        z = np.round(2 * z) / 2  # many equal values: only gaps between distinct values split
    else:
        z = z + 0.3 * rng.normal(size=z.shape)
    if kind == "constant":
        z = np.concatenate([np.full((n, 1), 3.0), z], 1)
    x = z.astype(np.float32)
    return x[:300], y[:300], x[300:], y[300:]


def test_matches_sklearn_exactly_without_feature_ties():
    """One splittable code (the other constant), 5 classes: the same trees, so the same importances
    and predictions to the last digits."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, size=(450, 1))
    x = np.stack([y[:, 0] + 0.8 * rng.normal(size=450), np.ones(450)], 1).astype(np.float32)
    ours = fit_gbt(x[:300], y[:300], x[300:], y[300:], n_estimators=30)
    importance, acc, acc_test = sklearn_fit(x[:300], y[:300], x[300:], y[300:], 30)
    assert np.allclose(ours.importances, importance, atol=1e-12)
    assert ours.accuracy_train == acc and ours.accuracy_test == acc_test


@pytest.mark.parametrize("kind", ["mixed", "binary", "tied", "constant"])
def test_matches_sklearn(kind):
    """Same training predictions; importances to 0.01, held-out accuracy to 0.02.

    Not closer because small nodes (2 or 3 samples) are often split identically by several codes:
    scikit-learn picks one of them at random, we share the importance (see ``gbt``), and the tied
    codes route held-out points differently. On these cases the training partitions stay the
    same (so do the training predictions); on pure-noise codes they need not (see ``gbt``).
    """
    x, y, x_test, y_test = case(kind)
    ours = fit_gbt(x, y, x_test, y_test, n_estimators=20)
    importance, acc, acc_test = sklearn_fit(x, y, x_test, y_test, 20)
    assert np.abs(ours.importances - importance).max() <= 0.01
    assert np.array_equal(ours.accuracy_train, acc)
    assert np.abs(ours.accuracy_test - acc_test).max() <= 0.02
    if kind == "constant":
        assert np.all(ours.importances[0] == 0)


def test_full_rounds_dci_within_battery_tolerance():
    """The canonical 100 rounds, through dci_from_codes: D, C, I to 0.005 and importances to 0.01."""
    x, y, x_test, y_test = case("mixed", n=600, seed=3)
    ours = dci_from_codes(x, y, x_test, y_test, importance="gbt")
    ref = dci_from_codes(x, y, x_test, y_test, importance="sklearn")
    for key in ("disentanglement", "completeness", "informativeness_test", "informativeness_train"):
        assert getattr(ours, key) == pytest.approx(getattr(ref, key), abs=0.005)
    assert np.abs(ours.importance_matrix - ref.importance_matrix).max() <= 0.01


def test_duplicate_columns_share_importance_equally():
    """scikit-learn picks between exact copies at random; we give each copy half, same predictions."""
    x, y, x_test, y_test = case("mixed")
    dup = np.concatenate([x, x[:, :1]], 1)
    dup_test = np.concatenate([x_test, x_test[:, :1]], 1)
    ours = fit_gbt(dup, y, dup_test, y_test, n_estimators=20)
    single = fit_gbt(x, y, x_test, y_test, n_estimators=20)
    assert np.array_equal(ours.importances[0], ours.importances[-1])  # bit-identical ties, equal halves
    assert np.array_equal(ours.accuracy_test, single.accuracy_test)  # the lowest-indexed copy is used
    # Summed, the copies hold the original's importance, up to small nodes where a third code ties
    # with them (it then gets a third instead of a half).
    assert np.abs(ours.importances[0] + ours.importances[-1] - single.importances[0]).max() <= 0.01


def test_single_split_known_answer():
    """One informative code and one constant code: all importance on the first; perfect accuracy."""
    x = np.array([[0.0, 1.0], [1.0, 1.0], [2.0, 1.0], [3.0, 1.0]] * 5, dtype=np.float32)
    y = np.array([[0], [0], [1], [1]] * 5)
    fit = fit_gbt(x, y, x, y, n_estimators=5)
    assert fit.importances[:, 0].tolist() == [1.0, 0.0]
    assert fit.accuracy_train.tolist() == [1.0]


def test_rejects_bad_input():
    x = np.zeros((10, 2), dtype=np.float32)
    y = np.tile([[0], [1]], (5, 1))
    with pytest.raises(ValueError, match="single class"):
        fit_gbt(x, np.zeros((10, 1), dtype=int), x, y)
    with pytest.raises(ValueError, match="finite"):
        fit_gbt(np.full((10, 2), np.nan), y, x, y)
    with pytest.raises(TypeError, match="integer"):
        fit_gbt(x, y.astype(float), x, y)
    with pytest.raises(ValueError, match="do not match"):
        fit_gbt(x, y, x[:, :1], y)
    with pytest.raises(ValueError, match="n_estimators"):
        fit_gbt(x, y, x, y, n_estimators=0)
