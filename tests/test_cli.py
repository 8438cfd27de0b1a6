import subprocess
import sys

import numpy as np
import pytest

from diffdrl.cli import main
from helpers.tiny import TINY


def test_train_then_encode(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--no-progress", *TINY, "train.steps=2"]) == 0
    assert (run / "config.yaml").is_file()
    out = tmp_path / "codes.npz"
    assert main(["encode", str(run), "--out", str(out), "--num", "10"]) == 0
    codes = np.load(out)
    assert codes["units"].shape == (10, 3) and codes["units"].dtype == np.float32
    assert codes["factors"].shape == (10, 6)
    assert list(codes["factor_sizes"]) == [10, 10, 10, 8, 4, 15]
    assert np.isfinite(codes["units"]).all()


def test_encode_user_images_and_reject_bad_ones(tmp_path, capsys):
    run = tmp_path / "run"
    main(["train", "--out", str(run), "--no-progress", *TINY, "train.steps=1"])
    images = np.random.default_rng(0).integers(0, 256, (5, 16, 16, 3), dtype=np.uint8)
    np.save(tmp_path / "imgs.npy", images)
    assert (
        main(["encode", str(run), "--out", str(tmp_path / "c.npz"), "--images", str(tmp_path / "imgs.npy")])
        == 0
    )
    assert np.load(tmp_path / "c.npz")["units"].shape == (5, 3)
    np.save(tmp_path / "wrong.npy", images[:, :8])
    assert (
        main(["encode", str(run), "--out", str(tmp_path / "d.npz"), "--images", str(tmp_path / "wrong.npy")])
        == 2
    )
    assert "wrong.npy: images of shape (n, H, W, C) = (5, 8, 16, 3)" in capsys.readouterr().err
    assert not (tmp_path / "d.npz").exists()
    (tmp_path / "corrupt.npz").write_bytes(b"PK\x03\x04 truncated")
    argv = ["encode", str(run), "--out", str(tmp_path / "e.npz"), "--images", str(tmp_path / "corrupt.npz")]
    assert main(argv) == 2
    assert "not a readable .npy/.npz" in capsys.readouterr().err


def test_resume_flag_continues_and_plain_rerun_refuses(tmp_path, capsys):
    run = str(tmp_path / "run")
    assert main(["train", "--out", run, "--no-progress", *TINY, "train.steps=2"]) == 0
    assert main(["train", "--out", run, "--no-progress", *TINY, "train.steps=2"]) == 2
    assert "already holds checkpoints" in capsys.readouterr().err
    assert main(["train", "--out", run, "--resume", "--no-progress", "train.steps=3"]) == 0
    assert "to step 3" in capsys.readouterr().out
    assert (
        main(["train", "--out", run, "--resume", "--no-progress"]) == 0
    )  # finished: a no-op, as make demo reruns
    assert "already at step 3 of 3" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--dry-run", "train.stepz=1"], "unknown config key train.stepz"),
        (["train", "--config", "nope", "--dry-run"], "unknown preset 'nope'"),
        (["encode", "does/not/exist", "--out", "x.npz"], "not a diffdrl run directory"),
    ],
)
def test_user_errors_are_one_line_with_nonzero_exit(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_dry_run_prints_resolved_config(capsys):
    assert main(["train", "--dry-run", "train.steps=42"]) == 0
    assert "steps: 42" in capsys.readouterr().out


def test_module_entry_point():
    done = subprocess.run(
        [sys.executable, "-m", "diffdrl", "train", "--dry-run"], capture_output=True, text=True
    )
    assert done.returncode == 0 and "synth-shapes3d" in done.stdout


def test_datasets_commands(tmp_path, capsys):
    assert main(["datasets", "list"]) == 0
    assert "synth-shapes3d" in capsys.readouterr().out
    assert main(["datasets", "info", "synth-shapes3d", "--resolution", "32"]) == 0
    out = capsys.readouterr().out
    assert "480000 images" in out and "orientation" in out
    assert (
        main(
            ["datasets", "preview", "synth-shapes3d", "--resolution", "16", "--out", str(tmp_path / "p.png")]
        )
        == 0
    )
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["datasets", "info", "no-such-set"]) == 2
    assert "unknown dataset 'no-such-set'" in capsys.readouterr().err


def test_evaluate_trained_and_untrained(tmp_path, capsys):
    import json

    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--no-progress", *TINY, "train.steps=1"]) == 0
    assert main(["evaluate", str(run), "--metrics", "mig,dci", "--preset", "fast"]) == 0
    record = json.loads((run / "metrics.json").read_text())
    assert record["checkpoint"] == "step_1" and record["preset"] == "fast"
    assert {"mig_fast", "dci_fast.disentanglement"} <= set(record["scores"])
    assert "dci_fast.disentanglement" in capsys.readouterr().out
    assert main(["evaluate", str(run), "--metrics", "mig", "--preset", "fast", "--untrained"]) == 0
    assert json.loads((run / "metrics_untrained.json").read_text())["weights"] == "untrained"
    assert main(["evaluate", str(run), "--metrics", "nope"]) == 2
    assert "unknown metrics" in capsys.readouterr().err


def test_evaluate_metric_options_are_recorded_overrides(tmp_path, monkeypatch):
    """--dci-importance sklearn asks for scikit-learn's own GBT and --factor-vae-pruning relative for
    scale-free pruning, each as a per-metric override (so their keys are dci_sklearn.* and
    factor_vae*_relative.*, never the canonical ones), recorded in the JSON; unknown values exit 2."""
    import json

    import diffdrl.api

    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--no-progress", *TINY, "train.steps=1"]) == 0
    seen = {}

    def fake_evaluate_run(run, metrics, **kwargs):
        seen.update(kwargs)
        return {"dci_sklearn.disentanglement": 0.5}

    monkeypatch.setattr(diffdrl.api, "evaluate_run", fake_evaluate_run)
    assert main(["evaluate", str(run), "--metrics", "dci", "--dci-importance", "sklearn"]) == 0
    assert seen["overrides"] == {"dci": {"importance": "sklearn"}}
    assert json.loads((run / "metrics.json").read_text())["overrides"] == seen["overrides"]
    assert main(["evaluate", str(run), "--metrics", "dci"]) == 0
    assert seen["overrides"] is None  # the preset's estimator (gbt when canonical)
    assert main(["evaluate", str(run), "--dci-importance", "xgboost"]) == 2
    assert (
        main(["evaluate", str(run), "--factor-vae-pruning", "relative", "--dci-importance", "sklearn"]) == 0
    )
    assert seen["overrides"] == {"dci": {"importance": "sklearn"}, "factor_vae": {"pruning": "relative"}}
    assert main(["evaluate", str(run), "--factor-vae-pruning", "none"]) == 2
    out = tmp_path / "new" / "folder" / "scores.json"  # made when written, not an error after scoring
    assert main(["evaluate", str(run), "--metrics", "dci", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["scores"] == {"dci_sklearn.disentanglement": 0.5}


def test_evaluate_token_representation(tmp_path):
    import json

    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--no-progress", *TINY, "train.steps=1"]) == 0
    argv = ["evaluate", str(run), "--metrics", "mig", "--preset", "fast", "--representation", "tokens"]
    assert main(argv) == 0
    record = json.loads((run / "metrics.json").read_text())
    assert record["representation"] == "tokens" and 0 <= record["scores"]["mig_fast"] <= 1


def test_sample_reports_fid_and_lpips_with_user_networks(tmp_path, capsys):
    import warnings

    import torch

    class Stats(torch.nn.Module):
        def forward(self, x):
            x = x.float()
            return torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3))], 1)

    class Dist(torch.nn.Module):
        def forward(self, a, b):
            return (a - b).abs().mean(dim=(1, 2, 3))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(Stats()).save(str(tmp_path / "inception.pt"))
        torch.jit.script(Dist()).save(str(tmp_path / "lpips.pt"))
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--no-progress", *TINY, "train.steps=1"]) == 0
    base = ["sample", str(run), "--num", "4", "--steps", "2"]
    assert main(base) == 0
    assert "FID and LPIPS need feature networks" in capsys.readouterr().out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        assert (
            main(
                [*base, "--inception", str(tmp_path / "inception.pt"), "--lpips", str(tmp_path / "lpips.pt")]
            )
            == 0
        )
    out = capsys.readouterr().out
    assert "fid " in out and "lpips " in out and "need feature networks" not in out
    assert main([*base, "--inception", str(tmp_path / "missing.pt")]) == 2
    assert "Inception weights not found" in capsys.readouterr().err


def test_a_file_that_is_no_exported_network_is_one_line(trained_tiny, tmp_path):
    bad = tmp_path / "not_a_model.pt2"
    bad.write_bytes(b"not a zip archive")
    done = subprocess.run(
        [sys.executable, "-m", "diffdrl", "sample", str(trained_tiny.path), "--inception", str(bad)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    err = done.stderr.strip().splitlines()
    assert len(err) == 1, done.stderr  # torch.export's own traceback is silenced
    assert f"{bad} is not a TorchScript or torch.export Inception network" in err[0]


@pytest.mark.parametrize("made", [False, True])
def test_resume_without_config_needs_a_run(made, tmp_path, capsys):
    run = tmp_path / "tinyy"
    if made:
        run.mkdir()  # a folder, but no run in it
    for flag in (["--resume"], ["--resume-from", "step_2"]):
        assert main(["train", "--out", str(run), *flag, "--no-progress", *TINY, "train.steps=1"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"{run} holds no run to resume" in err[0] and "--config" in err[0], err
        assert run.exists() == made and not (made and any(run.iterdir()))  # nothing trained, nothing written
    # with --config, --resume resumes or starts (make demo relies on it)
    argv = ["train", "--config", "tiny-cpu", "--out", str(run), "--resume", "--no-progress", *TINY]
    assert main([*argv, "train.steps=1"]) == 0
    assert main([*argv, "train.steps=2"]) == 0
    assert "resuming" in capsys.readouterr().out and (run / "checkpoints" / "step_2").is_dir()


@pytest.mark.parametrize(
    "command, hint",
    [("train", "--resume"), ("sweep", "rerun the same command")],
)
def test_interrupt_names_how_to_continue(command, hint, monkeypatch, capsys):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(f"diffdrl.cli{'_harness' if command == 'sweep' else ''}.cmd_{command}", interrupted)
    argv = ["train", "--out", "unused"] if command == "train" else ["sweep", "--methods", "x", "--out", "u"]
    assert main(argv) == 130
    assert hint in capsys.readouterr().err


@pytest.mark.parametrize("command", ["attention", "embeddings"])
def test_picture_commands_without_a_sampler_reject_steps(command, tmp_path, capsys):
    (tmp_path / "config.yaml").write_text("{}\n")
    assert main([command, str(tmp_path), "--steps", "5"]) == 2
    err = capsys.readouterr().err
    assert "--steps" in err and len(err.strip().splitlines()) == 1 and "--help" in err
