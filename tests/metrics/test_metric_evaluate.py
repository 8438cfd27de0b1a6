import numpy as np
import pytest

from diffdrl.metrics import METRICS, evaluate, format_table
from diffdrl.metrics.presets import FAST, variant_suffix
from helpers.metric_fakes import CodeImages, identity, random_codes_for


def test_fast_preset_runs_every_metric_with_labelled_keys():
    data = CodeImages()
    out = evaluate(data, identity, preset="fast", progress=False)
    assert all(key.split(".")[0].endswith("_fast") for key in out), sorted(out)
    assert out["factor_vae_fast.eval_accuracy"] == 1.0
    assert out["dci_fast.disentanglement"] > 0.95
    assert out["mig_fast"] > 0.9
    assert out["beta_vae_fast.eval_accuracy"] == 1.0
    lines = format_table(out).splitlines()
    assert len(lines) == len(out)
    row = next(line for line in lines if line.startswith("factor_vae_fast.num_active_codes"))
    assert row.split() == ["factor_vae_fast.num_active_codes", "4"]
    assert any(line.split() == ["factor_vae_fast.eval_accuracy", "1.0000"] for line in lines)


def test_same_seed_identical_results_other_seed_differs():
    data = CodeImages()
    random_codes = random_codes_for(data)
    metrics = ["factor_vae", "mig", "dci"]
    first = evaluate(data, random_codes, metrics, seed=3, preset="fast", progress=False)
    assert first == evaluate(data, random_codes, metrics, seed=3, preset="fast", progress=False)
    assert first != evaluate(data, random_codes, metrics, seed=4, preset="fast", progress=False)


def test_shared_draws_are_encoded_once():
    data = CodeImages()
    seen = []

    def represent(images):
        seen.append(len(images))
        return identity(images)

    evaluate(
        data, represent, ["mig", "unsupervised", "sap"], preset="fast", progress=False, code_cache_bytes=0
    )
    assert (
        sum(seen) == 5000 + 2500
    )  # without the grid table: the 5000 training points once, SAP's test set once


def test_grid_table_encodes_each_state_once_and_changes_no_value():
    """Every metric indexes one table of the grid's codes: each state drawn is encoded once, and
    the scores are those of the path that encodes every draw (same seed, same states)."""
    data = CodeImages((3, 4, 5, 6))  # 360 states
    random_codes = random_codes_for(data)
    seen = []

    def represent(images):
        seen.append(data.index_of(images[:, 0, :, 0].astype(np.int64)))
        return random_codes(images)

    cached = evaluate(data, represent, preset="fast", progress=False)
    states = np.concatenate(seen)
    assert len(states) == len(np.unique(states)) <= len(data)  # FactorVAE + BetaVAE draw ~860k images
    assert cached == evaluate(data, random_codes, preset="fast", progress=False, code_cache_bytes=0)


def test_grid_too_large_for_the_budget_falls_back_and_says_so(capsys):
    data = CodeImages((3, 4, 5, 6))
    random_codes = random_codes_for(data)
    with pytest.warns(UserWarning, match="code cache off: 360 states x 6 codes"):
        out = evaluate(data, random_codes, ["mig", "factor_vae"], preset="fast", code_cache_bytes=1000)
    assert "code cache off" in capsys.readouterr().out
    assert out == evaluate(data, random_codes, ["mig", "factor_vae"], preset="fast", progress=False)


def test_overrides_change_settings_and_name_the_variant():
    data = CodeImages()

    def tiny(images):  # an untrained encoder's scale
        return (1e-3 * images[:, 0, :, 0]).astype(np.float32)

    out = evaluate(
        data,
        tiny,
        ["factor_vae"],
        preset="fast",
        overrides={"factor_vae": {"pruning": "relative"}},
        progress=False,
    )
    assert out["factor_vae_fast_relative.eval_accuracy"] == 1.0
    with pytest.raises(ValueError, match="not being run"):
        evaluate(data, tiny, ["mig"], overrides={"factor_vae": {"pruning": "relative"}})


def test_names_are_validated():
    data = CodeImages()
    with pytest.raises(ValueError, match="unknown metrics.*factor_vae"):
        evaluate(data, identity, ["fvae"])
    with pytest.raises(ValueError, match="unknown preset"):
        evaluate(data, identity, ["mig"], preset="quick")


def test_variant_naming_rules():
    dci = METRICS["dci"]
    assert variant_suffix("dci", dci, {}) == ""
    assert variant_suffix("dci", dci, FAST["dci"]) == "_fast"
    assert variant_suffix("dci", dci, {"importance": "lightgbm"}) == "_lightgbm"
    assert variant_suffix("dci", dci, {**FAST["dci"], "importance": "gbt"}) == "_fast_gbt"
    assert variant_suffix("dci", dci, {"num_train": 100}) == "_custom"
    assert variant_suffix("dci", dci, {"n_jobs": 2, "encode_batch_size": 7}) == ""
    fvae = METRICS["factor_vae"]
    assert variant_suffix("factor_vae", fvae, {"pruning": "relative"}) == "_relative"
    assert (
        variant_suffix("factor_vae", fvae, {**FAST["factor_vae"], "pruning": "relative"}) == "_fast_relative"
    )


def test_factor_free_datasets_get_the_unsupervised_scores_only():
    class Folder:
        def __len__(self):
            return 100

        def images_at(self, index):
            return np.stack([index % 10, index // 10], 1).astype(np.uint8)[:, None, :, None]

    out = evaluate(Folder(), lambda x: x[:, 0, :, 0].astype(np.float32), preset="fast", progress=False)
    assert set(key.split(".")[0] for key in out) == {"unsupervised_fast"}
    with pytest.raises(ValueError, match="need a dataset with ground-truth factors"):
        evaluate(Folder(), identity, ["mig"])
