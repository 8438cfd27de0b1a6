from diffdrl.cli import main


def test_train_autoencoder_report_and_refusals(tiny_stage_overrides, tmp_path, capsys):
    run = tmp_path / "vq"
    args = ["--config", "tiny-cpu-first-stage", "--out", str(run), "--no-progress"]
    tiny = [*tiny_stage_overrides, "model.codebook_size=16", "data.resolution=16", "train.steps=2"]
    assert main(["train-autoencoder", *args, *tiny]) == 0
    assert "exported the first stage" in capsys.readouterr().out
    assert (run / "diffusers" / "first_stage.json").is_file()
    assert (run / "diffusers" / "diffusion_pytorch_model.safetensors").is_file()
    assert main(["report", str(run), "--out", str(tmp_path / "report")]) == 0
    page = (tmp_path / "report" / "report.html").read_text()
    assert "PSNR" in page and "Codebook usage" in page
    assert (tmp_path / "report" / "reconstruction.png").is_file()
    capsys.readouterr()
    assert main(["evaluate", str(run), "--preset", "fast", "--metrics", "mig"]) == 2
    err = capsys.readouterr().err
    assert "has no latent units" in err and err.count("\n") == 1
    assert main(["train-autoencoder", "--config", "tiny-cpu", "--out", str(tmp_path / "x"), "--dry-run"]) == 2
    assert "trains first stages" in capsys.readouterr().err
