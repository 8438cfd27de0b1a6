"""The load test's client logic against the live test server (its full run is a benchmark)."""

import asyncio
import importlib.util
import os
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "explore_load.py"


def test_concurrent_clients_lose_no_response_and_share_batches(live_server):
    spec = importlib.util.spec_from_file_location("explore_load", SCRIPT)
    load = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(load)
    row = asyncio.run(
        load.run_clients(live_server, clients=4, requests=2, options=load.setting("noise:ddim:3"))
    )
    assert row["responses"] == 8 and row["lost"] == 0 and row["inverted"] == 0
    assert row["p50_ms"] <= row["p95_ms"] <= row["max_ms"]
    assert 1 <= row["batches"] <= 8 and row["mean_batch"] >= 1
    row = asyncio.run(load.run_clients(live_server, 3, 2, options={}, image_seed=500))
    assert row["responses"] == 6 and row["lost"] == 0
    assert row["inverted"] == 3  # the default start: each client's image once, on its first render


def test_first_renders_time_new_images_and_the_pages_pick(live_server):
    spec = importlib.util.spec_from_file_location("explore_load", SCRIPT)
    load = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(load)
    pid = os.getpid()  # the live test server runs in this process
    default = asyncio.run(load.first_renders(live_server, 2, {}, image_seed=700, pid=pid))
    assert default["images"] == 2 and default["page_pick"]["p50_ms"] > 0
    assert default["first_render_server_cpu"]["p50_ms"] > 0  # a render costs the server CPU
    assert default["first_render"]["p50_ms"] <= default["first_render"]["max_ms"]
    noise = asyncio.run(load.first_renders(live_server, 2, load.setting("noise:dpm++:2"), image_seed=800))
    assert noise["page_pick"] is None and noise["options"]["start"] == "noise"
    assert noise["first_render_server_cpu"] is None  # no pid given
    with pytest.raises(ValueError, match="START:SAMPLER:STEPS"):
        load.setting("noise:dpm++")
