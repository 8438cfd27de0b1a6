"""``diffdrl explore``: loopback by default, user errors as one line and exit 2."""

import uvicorn

from diffdrl.cli import build_parser, main
from diffdrl.explore import server
from helpers.explore import SMALL


def test_binds_loopback_unless_told_otherwise(trained_tiny, monkeypatch, capsys):
    args = build_parser().parse_args(["explore", str(trained_tiny.path)])
    assert (args.host, args.port) == ("127.0.0.1", 8008)
    served = {}
    real = server.open_explorer  # the real explorer, with the tests' quick unit-label fit
    monkeypatch.setattr(server, "open_explorer", lambda run_dir, **kw: real(run_dir, **kw, **SMALL))
    monkeypatch.setattr(uvicorn, "run", lambda app, host, port, **kw: served.update(host=host, port=port))
    assert main(["explore", str(trained_tiny.path), "--port", "8123"]) == 0
    assert served == {"host": "127.0.0.1", "port": 8123}
    assert "http://127.0.0.1:8123/" in capsys.readouterr().out
    assert main(["explore", str(trained_tiny.path), "--host", "0.0.0.0"]) == 0
    assert served["host"] == "0.0.0.0" and "no authentication" in capsys.readouterr().out


def test_user_errors_exit_2(tmp_path, trained_tiny, capsys):
    assert main(["explore", str(tmp_path / "missing")]) == 2
    assert "not a diffdrl run directory" in capsys.readouterr().err
    assert main(["explore", str(trained_tiny.path), "--port", "70000"]) == 2
    assert "argument --port: must be a port number in [1, 65535], got '70000'" in capsys.readouterr().err
