"""The load test's client logic against the live test server (its full run is a benchmark)."""

import asyncio
import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "explore_load.py"


def test_concurrent_clients_lose_no_response_and_share_batches(live_server):
    spec = importlib.util.spec_from_file_location("explore_load", SCRIPT)
    load = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(load)
    row = asyncio.run(load.run_clients(live_server, clients=4, requests=2))
    assert row["responses"] == 8 and row["lost"] == 0
    assert row["p50_ms"] <= row["p95_ms"] <= row["max_ms"]
    assert 1 <= row["batches"] <= 8 and row["mean_batch"] >= 1
