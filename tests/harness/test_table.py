import csv
import json

import numpy as np
import pytest

from diffdrl.cli import main
from diffdrl.harness.table import group, matches, mean_std, read_cells, score_name, select_keys, write_table


def write_cell(root, method, seed, scores=None, status="done", error=None, dataset="synth-shapes3d", **extra):
    directory = root / dataset / method / f"seed{seed}"
    directory.mkdir(parents=True)
    record = {
        "method": method,
        "dataset": dataset,
        "seed": seed,
        "preset": "tiny-cpu" if method == "encdiff" else f"tiny-cpu-{method}",
        "set_overrides": [],
        "budget_minutes": 10.0,
        "status": status,
        "step": 600 + seed,
        "scores": scores or {},
        "error": error,
        **extra,
    }
    (directory / "cell.json").write_text(json.dumps(record))


@pytest.fixture
def sweep_dir(tmp_path):
    """encdiff: two done seeds (FactorVAE 0.5, 0.7), one missing; dyga: one done, one failed."""
    root = tmp_path / "sweeps" / "a"
    write_cell(
        root, "encdiff", 0, {"factor_vae.eval_accuracy": 0.5, "mig": 0.1, "dci_fast.disentanglement": 0.3}
    )
    write_cell(root, "encdiff", 1, {"factor_vae.eval_accuracy": 0.7, "mig": 0.3, "sap": 0.2})
    write_cell(root, "dyga", 0, {"factor_vae.eval_accuracy": 0.9, "mig": 0.4})
    write_cell(root, "dyga", 1, status="failed", error="NonFiniteLossError: loss is nan | at step 3")
    grid = {"methods": ["encdiff", "dyga"], "datasets": ["synth-shapes3d"], "seeds": [0, 1, 2]}
    (root / "sweep.json").write_text(json.dumps(grid))
    return root


def test_mean_and_sample_std_over_seeds():
    mean, std, n = mean_std([0.5, 0.7])
    assert (mean, n) == (pytest.approx(0.6), 2)
    assert std == pytest.approx(np.sqrt(0.02)) == pytest.approx(0.141421, abs=1e-6)  # ddof=1, not 0.1
    assert mean_std([0.9]) == (pytest.approx(0.9), None, 1)


def test_score_patterns_match_every_protocol_of_a_metric():
    assert matches("dci.disentanglement", "dci.disentanglement")
    assert matches("dci_fast.disentanglement", "dci.disentanglement")
    assert matches("mig_fast", "mig") and matches("factor_vae_fast_relative.eval_accuracy", "factor_vae")
    assert not matches("dci.completeness", "dci.disentanglement") and not matches("modularity", "mig")
    cells = [{"status": "done", "scores": {"mig_fast": 0.1, "dci.completeness": 0.2, "sap": 0.3}}]
    assert select_keys(cells) == ["dci.completeness", "mig_fast"]  # headline scores, defaults' order
    assert select_keys([{"status": "done", "scores": {"sap": 0.3}}]) == ["sap"]  # no headline: all
    with pytest.raises(ValueError, match="no score matches 'nope'"):
        select_keys(cells, ["nope"])


@pytest.mark.parametrize(
    "key, name",
    [
        ("factor_vae.eval_accuracy", "FactorVAE"),
        ("factor_vae_fast.eval_accuracy", "FactorVAE (fast)"),
        ("dci_fast.informativeness_test", "DCI I (fast)"),
        ("mig_fast", "MIG (fast)"),
        ("factor_vae.train_accuracy", "`factor_vae.train_accuracy`"),
        ("migration", "`migration`"),
    ],
)
def test_score_names(key, name):
    assert score_name(key) == name


def test_table_writes_markdown_csv_and_png(sweep_dir, tmp_path):
    md, table, png = write_table([sweep_dir], tmp_path / "out" / "cmp")
    text = md.read_text()
    rows = {line.split(" | ")[0]: line for line in text.splitlines() if line.startswith("| ")}
    assert "0.600 ± 0.141 (2)" in rows["| encdiff @ 10 min"] and "600–601" in rows["| encdiff @ 10 min"]
    assert "0.900 ± — (1)" in rows["| dyga @ 10 min"]  # no std from one seed
    assert "| FactorVAE |" in text and "| DCI D (fast) |" in text  # a fast score is never unlabelled
    assert "SAP" not in text  # not a headline score
    assert "ddof=1" in text
    assert "dyga/seed1: failed: NonFiniteLossError: loss is nan \\| at step 3" in text  # escaped pipe
    assert "encdiff/seed2: missing" in text and "dyga/seed2: missing" in text

    lines = list(csv.DictReader(table.open()))
    (fvae,) = [r for r in lines if r["method"] == "encdiff" and r["score"] == "factor_vae.eval_accuracy"]
    assert float(fvae["mean"]) == pytest.approx(0.6) and float(fvae["std"]) == pytest.approx(0.141421, 1e-5)
    assert (fvae["n"], fvae["seeds"], fvae["values"], fvae["budget_minutes"]) == (
        "2",
        "0 1",
        "0.5 0.7",
        "10.0",
    )
    (single,) = [r for r in lines if r["method"] == "dyga" and r["score"] == "factor_vae.eval_accuracy"]
    assert single["std"] == "" and single["n"] == "1"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert not list(md.parent.glob(".*tmp*"))  # atomic writes leave no temporaries


def test_rows_are_grouped_by_budget_and_seeds_counted_once(sweep_dir, tmp_path):
    other = tmp_path / "sweeps" / "b"
    write_cell(other, "encdiff", 0, {"mig": 0.5}, budget_minutes=20.0)
    cells, sweeps = read_cells([sweep_dir, other, tmp_path / "sweeps"])  # overlapping dirs: read once
    rows = group(cells, sweeps)
    assert [(r.method, r.budget_minutes, r.seeds) for r in rows] == [
        ("encdiff", 10.0, [0, 1]),
        ("encdiff", 20.0, [0]),
        ("dyga", 10.0, [0]),
    ]
    write_cell(tmp_path / "sweeps" / "c", "encdiff", 1, {"mig": 0.5})
    with pytest.raises(ValueError, match="seed 1 of encdiff @ 10 min twice"):
        group(*read_cells([tmp_path / "sweeps"]))


def test_table_command(sweep_dir, tmp_path, capsys):
    stem = tmp_path / "t"
    assert main(["table", str(sweep_dir), "--out", str(stem), "--metrics", "mig,dci"]) == 0
    assert capsys.readouterr().out.splitlines() == [f"wrote {stem}.{ext}" for ext in ("md", "csv", "png")]
    text = (tmp_path / "t.md").read_text()
    assert "| 0.200 ± 0.141 (2) | 0.300 ± — (1) |" in text and "factor_vae" not in text
    assert main(["table", str(sweep_dir), "--out", str(stem), "--metrics", "nope"]) == 2
    assert "no score matches 'nope'" in capsys.readouterr().err
    assert main(["table", str(tmp_path / "absent"), "--out", str(stem)]) == 2
