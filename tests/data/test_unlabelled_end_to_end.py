"""An unlabelled image folder goes through the whole CLI by config alone."""

import numpy as np
from PIL import Image

from diffdrl.cli import main
from helpers.tiny import TINY


def test_image_folder_train_encode_info_preview(tmp_path, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    run = tmp_path / "run"
    argv = [
        "train",
        "--out",
        str(run),
        "--no-progress",
        *TINY,
        "train.steps=1",
        "data.name=image-folder",
        f"data.path={folder}",
    ]
    assert main(argv) == 0
    assert main(["encode", str(run), "--out", str(tmp_path / "codes.npz"), "--num", "5"]) == 0
    codes = np.load(tmp_path / "codes.npz", allow_pickle=False)
    assert codes["units"].shape == (5, 3) and "factors" not in codes
    assert main(["datasets", "info", "image-folder", "--path", str(folder), "--resolution", "16"]) == 0
    assert "no ground-truth factors" in capsys.readouterr().out
    out = tmp_path / "preview.png"
    assert (
        main(
            [
                "datasets",
                "preview",
                "image-folder",
                "--path",
                str(folder),
                "--resolution",
                "16",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert out.read_bytes()[:4] == b"\x89PNG"
