"""Every command, given bad input, exits non-zero with one line that names the problem, prints
no traceback and changes no file (the run directories and the output folder are hashed before and
after). The cases share one tiny trained run (and variants of it) per session; each runs
in-process through ``diffdrl.cli.main``."""

import hashlib
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from diffdrl.cli import main
from helpers.tiny import TINY


def tree_digest(*roots: Path) -> dict[str, str]:
    """sha256 of every file (and the list of folders) under ``roots``."""
    out = {}
    for root in roots:
        for path in sorted(Path(root).rglob("*")):
            out[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
    return out


@pytest.fixture(scope="module")
def world(trained_tiny, tmp_path_factory):
    """{name: path}: the trained run (R), its variants and a folder of bad files (B)."""
    base = tmp_path_factory.mktemp("bad_inputs")
    run = base / "run"
    shutil.copytree(trained_tiny.path, run)
    binary = base / "binary_run"
    shutil.copytree(run, binary)
    (binary / "config.yaml").write_bytes(bytes(range(256)))
    empty = base / "no_checkpoint_run"
    empty.mkdir()
    shutil.copy(run / "config.yaml", empty / "config.yaml")
    corrupt = base / "corrupt_run"
    shutil.copytree(run, corrupt)
    newest = sorted((corrupt / "checkpoints").iterdir())[-1]
    data = (newest / "model.safetensors").read_bytes()
    (newest / "model.safetensors").write_bytes(data[: len(data) // 2])

    bad = base / "bad"
    bad.mkdir()
    rng = np.random.default_rng(0)
    images = lambda *shape: rng.integers(0, 256, shape, dtype=np.uint8)  # noqa: E731
    np.save(bad / "ok2.npy", images(2, 16, 16, 3))
    np.save(bad / "ok3.npy", images(3, 16, 16, 3))
    np.save(bad / "px8.npy", images(2, 8, 8, 3))
    np.save(bad / "px32.npy", images(2, 32, 32, 3))
    np.save(bad / "rgba.npy", images(2, 16, 16, 4))
    np.save(bad / "empty.npy", images(0, 16, 16, 3))
    np.save(bad / "float.npy", images(2, 16, 16, 3).astype(np.float32))
    np.save(bad / "hwc.npy", images(16, 16, 3))
    np.savez(bad / "noimages.npz", x=images(2, 16, 16, 3))
    (bad / "corrupt.npz").write_bytes(b"PK\x03\x04 truncated")
    (bad / "text.npy").write_text("not an array\n")
    with zipfile.ZipFile(bad / "junk.pt2", "w") as z:  # a zip header, then random bytes
        z.writestr("junk/data.pkl", b"x")
    (bad / "junk.pt2").write_bytes((bad / "junk.pt2").read_bytes()[:30] + rng.bytes(200))
    (bad / "junk.pt").write_bytes(rng.bytes(300))
    (bad / "binary.yaml").write_bytes(bytes(range(256)))
    (bad / "list.yaml").write_text("- 1\n- 2\n")
    (bad / "broken.yaml").write_text("train: {steps: [\n")
    (bad / "afile").write_text("a file, not a folder\n")
    folder = bad / "bad_images"
    folder.mkdir()
    for name in ("a.png", "b.jpg"):
        (folder / name).write_bytes(b"\x89PNG\r\n\x1a\n" + rng.bytes(64))
    return {"R": run, "BIN": binary, "EMPTY": empty, "CORRUPT": corrupt, "B": bad}


NEW = ["train", "--no-progress", "--out", "{T}/new", *TINY]
# (argv with {R}/{BIN}/{EMPTY}/{CORRUPT}/{B}/{T} placeholders, text the one-line error must hold)
CASES = [
    # top level
    ([], "the following arguments are required: command"),
    (["nosuchcommand"], "invalid choice: 'nosuchcommand'"),
    # train
    (["train", "--dry-run", "train.stepz=1"], "unknown config key train.stepz"),
    (["train", "--config", "nope", "--dry-run"], "unknown preset 'nope'"),
    # train-autoencoder (the same run options as train, and first stages only)
    (["train-autoencoder", "--config", "tiny-cpu", "--dry-run"], "train-autoencoder trains first stages"),
    (["train-autoencoder", "--dry-run", "model.codebook_sise=3"], "unknown config key model.codebook_sise"),
    (["train-autoencoder", "--dry-run", "train.steps=0"], "train.steps must be >= 1"),
    (["train", "--config", "{B}/binary.yaml", "--dry-run"], "binary.yaml: not a text YAML file"),
    (["train", "--config", "{B}/list.yaml", "--dry-run"], "expected a mapping at the top level"),
    (["train", "--config", "{B}/broken.yaml", "--dry-run"], "broken.yaml: not valid YAML"),
    (["train", "--config", "{B}/missing.yaml", "--dry-run"], "config file not found"),
    (["train", "--dry-run", "train.steps=0"], "train.steps must be >= 1"),
    (["train", "--dry-run", "train.steps=abc"], "train.steps: expected an integer"),
    (["train", "--dry-run", "train.lr=-1"], "train.lr must be > 0"),
    (["train", "--dry-run", "model.name=nope"], "model.name must be one of"),
    (["train", "--dry-run", "notanoverride"], "is not of the form key.sub=value"),
    (["train", "--dry-run", "data.resolution=4"], "data.resolution must be >= 8"),
    (["train", "--bogus-flag"], "unrecognized arguments: --bogus-flag"),
    (
        [*NEW, "data.name=image-folder", "data.path={B}/bad_images"],
        "not a readable image",
    ),
    ([*NEW, "data.name=image-folder", "data.path={B}/nowhere"], "no such folder"),
    ([*NEW, "data.name=nope"], "unknown dataset 'nope'"),
    (["train", "--no-progress", "--out", "{R}", *TINY], "already holds checkpoints"),
    (["train", "--out", "{R}", "--resume-from", "step_99", "--no-progress"], "no checkpoint"),
    (["train", "--out", "{R}", "--resume", "train.steps=-1"], "train.steps must be >= 1"),
    (["train", "--out", "{BIN}", "--resume"], "config.yaml: not a text YAML file"),
    (["train", "--out", "{CORRUPT}", "--resume", "--no-progress"], "--resume-from step_2"),
    # encode
    (["encode", "{R}"], "the following arguments are required: --out"),
    (["encode", "{T}/nowhere", "--out", "{T}/x.npz"], "not a diffdrl run directory"),
    (["encode", "{B}", "--out", "{T}/x.npz"], "not a diffdrl run directory (no config.yaml)"),
    (["encode", "{R}", "--out", "{T}/x.npz", "--num", "0"], "argument --num: must be an integer >= 1"),
    (["encode", "{R}", "--out", "{T}/x.npz", "--num", "-5"], "argument --num: must be an integer >= 1"),
    (["encode", "{R}", "--out", "{T}/x.npz", "--num", "abc"], "argument --num: must be an integer"),
    (["encode", "{R}", "--out", "{T}/x.npz", "--batch-size", "0"], "argument --batch-size"),
    (["encode", "{R}", "--out", "{T}/x.npz", "--seed", "-1"], "argument --seed: must be an integer >= 0"),
    (["encode", "{R}", "--out", "{T}/x.npz", "--weights", "raw"], "argument --weights: invalid choice"),
    (["encode", "{R}", "--out", "{T}", "--num", "2"], "is a directory, not a file to write"),
    (["encode", "{R}", "--out", "{B}/afile/x.npz"], "afile is a file, not a folder"),
    (["encode", "{R}", "--out", "{T}/x.npz", "--images", "{B}/missing.npy"], "images file not found"),
    (
        ["encode", "{R}", "--out", "{T}/x.npz", "--images", "{B}/px8.npy"],
        "px8.npy: images of shape (n, H, W, C) = (2, 8, 8, 3)",
    ),
    (
        ["encode", "{R}", "--out", "{T}/x.npz", "--images", "{B}/px32.npy"],
        "px32.npy: images of shape (n, H, W, C) = (2, 32, 32, 3)",
    ),
    (
        ["encode", "{R}", "--out", "{T}/x.npz", "--images", "{B}/rgba.npy"],
        "rgba.npy: images of shape (n, H, W, C) = (2, 16, 16, 4)",
    ),
    (["encode", "{R}", "--out", "{T}/x.npz", "--images", "{B}/empty.npy"], "empty.npy: holds no images"),
    (
        ["encode", "{R}", "--out", "{T}/x.npz", "--images", "{B}/float.npy"],
        "float.npy: images must be a uint8",
    ),
    (
        ["encode", "{R}", "--out", "{T}/x.npz", "--images", "{B}/hwc.npy"],
        "hwc.npy: images must be a uint8 array of shape (n, H, W, C)",
    ),
    (["encode", "{R}", "--out", "{T}/x.npz", "--images", "{B}/noimages.npz"], "no 'images' array (keys: x)"),
    (["encode", "{R}", "--out", "{T}/x.npz", "--images", "{B}/corrupt.npz"], "corrupt.npz: not a readable"),
    (["encode", "{R}", "--out", "{T}/x.npz", "--images", "{B}/text.npy"], "text.npy: not a readable"),
    (["encode", "{BIN}", "--out", "{T}/x.npz"], "config.yaml: not a text YAML file"),
    (["encode", "{EMPTY}", "--out", "{T}/x.npz"], "has no checkpoint yet"),
    (["encode", "{CORRUPT}", "--out", "{T}/x.npz"], "model.safetensors is corrupt"),
    # datasets
    (["datasets", "info", "no-such-set"], "unknown dataset 'no-such-set'"),
    (["datasets", "preview"], "needs a dataset NAME"),
    (["datasets", "bogus"], "argument action: invalid choice"),
    (
        ["datasets", "info", "synth-shapes3d", "--resolution", "4"],
        "argument --resolution: must be an integer >= 8",
    ),
    (["datasets", "info", "shapes3d"], "set data.path"),
    (["datasets", "info", "image-folder", "--path", "{B}/nowhere"], "no such folder"),
    (["datasets", "info", "image-folder", "--path", "{B}/afile"], "expected a folder"),
    (
        [
            "datasets",
            "preview",
            "image-folder",
            "--path",
            "{B}/bad_images",
            "--resolution",
            "16",
            "--out",
            "{T}/p.png",
        ],
        "not a readable image",
    ),
    # evaluate
    (["evaluate", "{T}/nowhere"], "not a diffdrl run directory"),
    (["evaluate", "{R}", "--metrics", "nope"], "unknown metrics"),
    (["evaluate", "{R}", "--preset", "bogus"], "argument --preset: invalid choice"),
    (["evaluate", "{R}", "--seed", "-3"], "argument --seed"),
    (["evaluate", "{R}", "--representation", "pixels"], "argument --representation: invalid choice"),
    (["evaluate", "{BIN}"], "config.yaml: not a text YAML file"),
    (["evaluate", "{EMPTY}"], "has no checkpoint yet"),
    (["evaluate", "{CORRUPT}"], "model.safetensors is corrupt"),
    # swap
    (["swap", "{R}", "--pairs", "0"], "argument --pairs: must be an integer >= 1, got '0'"),
    (["swap", "{R}", "--pairs", "-1"], "argument --pairs: must be an integer >= 1, got '-1'"),
    (["swap", "{R}", "--source", "{B}/ok2.npy"], "--source and --target go together"),
    (["swap", "{R}", "--source", "{B}/rgba.npy", "--target", "{B}/rgba.npy"], "rgba.npy: images of shape"),
    (
        ["swap", "{R}", "--source", "{B}/ok2.npy", "--target", "{B}/ok3.npy"],
        "--source has 2 images and --target 3",
    ),
    (["swap", "{R}", "--source", "{B}/ok2.npy", "--target", "{B}/missing.npy"], "images file not found"),
    (["swap", "{R}", "--steps", "0"], "argument --steps"),
    (["swap", "{R}", "--start", "bogus"], "argument --start: invalid choice"),
    (["swap", "{R}", "--out", "{T}"], "is a directory"),
    (["swap", "{CORRUPT}"], "model.safetensors is corrupt"),
    # traverse
    (["traverse", "{R}", "--values", "0"], "argument --values: must be an integer >= 1"),
    (["traverse", "{R}", "--reference", "0"], "argument --reference"),
    (["traverse", "{R}", "--values", "x"], "argument --values"),
    (["traverse", "{EMPTY}"], "has no checkpoint yet"),
    # interpolate
    (["interpolate", "{R}", "--pairs", "0"], "argument --pairs: must be an integer >= 1"),
    # hspace and edit (checked before any classifier is trained or image drawn)
    (["hspace", "{B}/no_such_run"], "no_such_run is not a diffdrl run directory"),
    (["hspace", "{R}", "--k", "0"], "argument --k: must be an integer >= 1"),
    (["hspace", "{R}", "--methods", "warp"], "unknown h-space method(s) warp"),
    (["edit", "{R}", "--factor", "nope"], "unknown factor 'nope'"),
    (["edit", "{R}", "--factor", "shape", "--value", "-1"], "argument --value: must be an integer >= 0"),
    (["edit", "{R}", "--factor", "shape", "--t-edit", "999"], "t_edit must be in [0, 50)"),
    # explore (bad arguments stop it before any server starts)
    (["explore", "{B}/no_such_run"], "no_such_run is not a diffdrl run directory"),
    (["explore", "{R}", "--port", "0"], "argument --port: must be an integer >= 1"),
    (["explore", "{R}", "--port", "70000"], "argument --port: must be a port number in [1, 65535]"),
    (["explore", "{R}", "--weights", "best"], "argument --weights: invalid choice: 'best'"),
    (["interpolate", "{R}", "--values", "0"], "argument --values"),
    # attention
    (["attention", "{R}", "--num", "0"], "argument --num: must be an integer >= 1"),
    (["attention", "{R}", "--timesteps", "a,b"], "argument --timesteps: must be comma-separated integers"),
    (["attention", "{R}", "--timesteps", "-4"], "argument --timesteps"),
    (["attention", "{R}", "--steps", "5"], "unrecognized arguments: --steps"),
    # sample
    (
        ["sample", "{R}", "--inception", "{B}/junk.pt2"],
        "junk.pt2 is not a TorchScript or torch.export Inception",
    ),
    (
        ["sample", "{R}", "--inception", "{B}/junk.pt"],
        "junk.pt is not a TorchScript or torch.export Inception",
    ),
    (["sample", "{R}", "--lpips", "{B}/missing.pt"], "LPIPS weights not found"),
    (["sample", "{R}", "--num", "0"], "argument --num"),
    (["sample", "{R}", "--sampler", "bogus"], "argument --sampler: invalid choice"),
    (["sample", "{R}", "--steps", "-2"], "argument --steps"),
    # embeddings
    (["embeddings", "{R}", "--units", "a"], "argument --units"),
    (["embeddings", "{R}", "--num", "0"], "argument --num"),
    (["embeddings", "{R}", "--method", "bogus"], "argument --method: invalid choice"),
    # report
    (["report", "{R}", "--pairs", "0"], "argument --pairs"),
    (["report", "{T}/nowhere"], "not a diffdrl run directory"),
    # schedules
    (["schedules", "--out", "{T}"], "is a directory"),
    (["schedules", "--out", "{B}/afile/s.png"], "afile is a file, not a folder"),
    # sweep and table
    (["sweep", "--methods", ",", "--out", "{T}/s"], "--methods needs a comma-separated list"),
    (
        ["sweep", "--methods", "encdiff", "--seeds", "a", "--out", "{T}/s"],
        "--seeds must be comma-separated integers",
    ),
    (["sweep", "--methods", "nope", "--out", "{T}/s"], "nope"),
    (
        ["sweep", "--methods", "encdiff", "--budget-minutes", "-1", "--out", "{T}/s"],
        "argument --budget-minutes",
    ),
    (
        ["sweep", "--methods", "encdiff", "--data-path", "bad", "--out", "{T}/s"],
        "is not of the form DATASET=PATH",
    ),
    (["sweep", "--out", "{T}/s"], "the following arguments are required: --methods"),
    (["table", "--out", "{T}/t"], "the following arguments are required: SWEEP_DIR"),
    (["table", "{T}/nowhere", "--out", "{T}/t"], "nowhere"),
]


def _ids():
    seen: dict[str, int] = {}
    for argv, _ in CASES:
        key = "-".join(a.strip("-") for a in argv[:3] if "{" not in a)[:40] or "empty"
        seen[key] = seen.get(key, 0) + 1
        yield f"{key}#{seen[key]}"


def test_matrix_is_large_and_covers_every_command():
    from diffdrl.cli import build_parser

    commands = set(build_parser()._subparsers._group_actions[0].choices)
    covered = {argv[0] for argv, _ in CASES if argv}
    assert len(CASES) >= 60 and commands <= covered, commands - covered


@pytest.mark.parametrize("argv, message", CASES, ids=list(_ids()))
def test_bad_input_is_one_line_nonzero_and_changes_nothing(argv, message, world, tmp_path, capsys):
    places = {**{k: str(v) for k, v in world.items()}, "T": str(tmp_path)}
    argv = [a.format(**places) for a in argv]
    message = message.format(**places)
    before = tree_digest(*world.values(), tmp_path)
    status = main(argv)
    out, err = capsys.readouterr()
    assert status == 2, (status, err)
    assert "Traceback" not in out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert message in lines[0], lines[0]
    assert tree_digest(*world.values(), tmp_path) == before
