"""Fixtures of the explorer tests: explorers over tiny trained runs, a TestClient, a live server."""

import socket
import threading
import time

import pytest
import torch

from diffdrl.explore.app import create_app
from diffdrl.explore.session import Explorer
from diffdrl.training.config import load_config
from diffdrl.training.runs import load_run
from diffdrl.training.trainer import train
from helpers.explore import SMALL
from helpers.tiny import TINY


@pytest.fixture(scope="session")
def explorer(trained_tiny, tmp_path_factory):
    """An explorer over the session's tiny trained EncDiff run, its tokens scaled up: a 4-step model
    barely reads its units, and the page's tests must see a moved slider move pixels."""
    run = load_run(trained_tiny.path)
    with torch.no_grad():
        run.model.token_bank.weights[-1].mul_(30.0)
        run.model.token_bank.biases[-1].mul_(30.0)
    ex = Explorer(run, cache_dir=tmp_path_factory.mktemp("explore_cache"), **SMALL)
    yield ex
    ex.close()


@pytest.fixture(scope="session")
def client(explorer):
    from starlette.testclient import TestClient

    with TestClient(create_app(explorer)) as c:
        yield c


@pytest.fixture(scope="session")
def vae_run(tmp_path_factory):
    """A tiny beta-VAE run (a one-pass decoder), trained two steps."""
    out = tmp_path_factory.mktemp("explore_vae") / "run"
    train_overrides = [o for o in TINY if o.startswith(("data.", "train."))]
    config = load_config(
        "tiny-cpu-betavae",
        [*train_overrides, "model.units=3", "model.channels=[8,8]", "model.hidden=16", "train.steps=2"],
    )
    train(config, out, progress=False)
    return out


@pytest.fixture(scope="session")
def live_server(client, explorer):
    """The explorer's app served by uvicorn on a free loopback port, in a thread; yields its URL."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(explorer), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started:
        if time.time() > deadline or not thread.is_alive():
            raise RuntimeError("the explorer's test server did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(10)
