"""The load test's client logic against the live test server (its full run is a benchmark)."""

import asyncio
import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "explore_load.py"


def test_concurrent_clients_lose_no_response_and_share_batches(live_server):
    spec = importlib.util.spec_from_file_location("explore_load", SCRIPT)
    load = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(load)
    row = asyncio.run(load.run_clients(live_server, clients=4, requests=2, start="noise"))
    assert row["responses"] == 8 and row["lost"] == 0 and row["inverted"] == 0
    assert row["p50_ms"] <= row["p95_ms"] <= row["max_ms"]
    assert 1 <= row["batches"] <= 8 and row["mean_batch"] >= 1
    row = asyncio.run(load.run_clients(live_server, 3, 2, start="inversion", image_seed=500))
    assert row["responses"] == 6 and row["lost"] == 0
    assert row["inverted"] == 3  # each client's image once, on its first render


def test_first_renders_time_new_images_and_the_pages_pick(live_server):
    spec = importlib.util.spec_from_file_location("explore_load", SCRIPT)
    load = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(load)
    inverted = asyncio.run(load.first_renders(live_server, 2, "inversion", image_seed=700))
    assert inverted["images"] == 2 and inverted["page_pick"]["p50_ms"] > 0
    assert inverted["first_render"]["p50_ms"] <= inverted["first_render"]["max_ms"]
    noise = asyncio.run(load.first_renders(live_server, 2, "noise", image_seed=800))
    assert noise["page_pick"] is None  # the page picks from inversion by default
