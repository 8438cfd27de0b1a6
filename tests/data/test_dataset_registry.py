import numpy as np
import pytest

from diffdrl.cli import main
from diffdrl.data import DATASETS, make_dataset
from diffdrl.data.validation import check_array, verify_file

READERS = sorted(name for name in DATASETS if not name.startswith("synth-"))


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match="shapes3d.*synth-xyobject"):
        make_dataset("no-such-set")


@pytest.mark.parametrize("name", READERS)
def test_readers_need_a_path(name, tmp_path):
    with pytest.raises(ValueError, match="data.path"):
        make_dataset(name)
    with pytest.raises(FileNotFoundError, match="no such"):
        make_dataset(name, str(tmp_path / "missing"))


@pytest.mark.parametrize("name", READERS)
def test_cli_missing_path_is_one_line_exit_2(name, tmp_path, capsys):
    assert main(["datasets", "info", name, "--path", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing" in err


def test_cli_lists_every_dataset(capsys):
    assert main(["datasets", "list"]) == 0
    assert capsys.readouterr().out.split() == sorted(DATASETS)


def test_verify_file(tmp_path):
    path = tmp_path / "3dshapes.h5"
    path.write_bytes(b"abc")
    with pytest.raises(ValueError, match="3dshapes.h5: size 3 bytes, the published file has 267573662"):
        verify_file(path)
    verify_file(path, published=False)  # nothing known: nothing to check
    sha = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"  # sha256("abc")
    verify_file(path, size=3, sha256=sha)
    with pytest.raises(ValueError, match="does not match"):
        verify_file(path, size=3, sha256="0" * 64)


def test_check_array_messages():
    with pytest.raises(ValueError, match=r"f: 'x' must have shape \(n, \*, 3\), got \(2, 3\)"):
        check_array("f", "x", np.zeros((2, 3)), ndim=3, tail=(3,))
    with pytest.raises(ValueError, match="'x' must be integer, got float64"):
        check_array("f", "x", np.zeros((2, 3)), ndim=2, kind="i")
    check_array("f", "x", np.zeros((2, 4, 3), np.uint8), ndim=3, tail=(None, 3), kind="u8")
