"""A bounded load test of ``diffdrl explore`` on loopback: N concurrent clients, each making a fixed
number of slider requests (renders of random slider positions, so every one misses the cache).

Render settings are measured side by side in one invocation (``--settings``), so a before/after
comparison shares the machine's load: by default "noise:dpm++:10" (x_T drawn from the seed,
DPM-Solver++ at 10 steps: the explorer's default before edits started from the image) and the
server's own default (now the picked image's DDIM inversion, computed on its first render and
cached). Before the load, on the idle server, ``--first`` newly picked images each get one render
request of their own units, timed alone (wall clock, and the server's CPU seconds, which other
jobs on the machine do not inflate): a new image's first render, its inversion included when
starting from it; for the server's default also the page's pick (its three renders at once: the
round trip, the fresh-noise regeneration and the edit at the image's own values). Under load each
client's image is new to the server too, so its first slider request includes the inversion.

The server runs as its own process (``python -m diffdrl explore RUN``), so its resident memory is
measured alone (Linux: /proc/PID/status). For each N it records p50/p95/max latency, throughput,
lost responses (no answer, or not HTTP 200) and the server's RSS; the test fails (exit 1) on a
crash, a lost response, or RSS growth past ``--rss-bound-mib`` over the whole test (the explorer's
caches are bounded: 1024 PNGs and 256 images, well under a MiB at these sizes, so growth beyond
the bound would mean a leak).

    python benchmarks/explore_load.py                      # trains a tiny run in a temp dir first
    python benchmarks/explore_load.py --run runs/demo --clients 8,32 --requests 10 \
        --out benchmarks/results/explore_load-demo-cpu.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from diffdrl.atomic import atomic_write_text

TINY = [  # the test suite's tiny model: 16x16, 3 units
    "data.resolution=16",
    "model.units=3",
    "model.token_dim=4",
    "model.encoder.width=8",
    "model.token_bank.hidden=[8]",
    "model.denoiser.channels=[8,16]",
    "model.denoiser.cross_attention=[false,true]",
    "model.denoiser.heads=2",
    "model.denoiser.norm_groups=4",
    "model.schedule.timesteps=50",
    "train.batch_size=4",
    "train.eval_batch_size=4",
    "train.steps=4",
    "train.eval_every=4",
    "train.checkpoint_every=4",
    "train.device=cpu",
]


def tiny_run(root: Path) -> Path:
    from diffdrl.training.config import load_config
    from diffdrl.training.trainer import train

    train(load_config("tiny-cpu", TINY), root / "tiny", progress=False)
    return root / "tiny"


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (Linux: /proc/PID/stat), all its threads:
    what a request costs the server whatever else the machine is running."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ms(latencies) -> dict:
    ms = np.asarray(latencies) * 1000
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p95_ms": round(float(np.percentile(ms, 95)), 1),
        "max_ms": round(float(ms.max()), 1),
    }


def setting(spec: str) -> dict:
    """The render options of a ``--settings`` entry: "default" (the server's own: nothing sent) or
    START:SAMPLER:STEPS, e.g. "noise:dpm++:10" (the explorer's only path before edits started from
    the image)."""
    if spec == "default":
        return {}
    parts = spec.split(":")
    if len(parts) != 3 or parts[0] not in ("noise", "inversion") or not parts[2].isdigit():
        raise ValueError(
            f"a setting is 'default' or START:SAMPLER:STEPS with START noise or inversion, got {spec!r}"
        )
    return {"start": parts[0], "sampler": parts[1], "steps": int(parts[2])}


async def first_renders(
    base: str, images: int, options: dict, image_seed: int, timeout=300.0, pid: int | None = None
) -> dict:
    """Latency of a new image's first render (one request of its own units, alone on the server)
    with the render ``options`` over ``images`` images the server has not seen (seeds from
    ``image_seed``); for the server's default options also of the page's pick: its round trip,
    fresh-noise regeneration and edit at the image's own values, requested at once (explorer.js).
    With the server's ``pid``, also the server's CPU seconds per first render."""
    import httpx

    first, pick, cpu = [], [], []
    phases = ((first, False), (pick, True)) if not options else ((first, False),)
    async with httpx.AsyncClient(base_url=base, timeout=timeout) as http:
        for k in range(images):
            for times, page in phases:
                seed = image_seed + 2 * k + page
                image = (await http.post("/api/images/random", json={"seed": seed})).json()
                own = {"image_id": image["image_id"], **options}
                bodies = [own]
                if page:
                    bodies = [
                        {**own, "start": "inversion"},
                        {**own, "start": "noise"},
                        {**own, "values": image["values"]},
                    ]
                begin, cpu_begin = time.perf_counter(), cpu_seconds(pid) if pid else 0.0
                answers = await asyncio.gather(*(http.post("/api/render", json=b) for b in bodies))
                times.append(time.perf_counter() - begin)
                if pid and not page:
                    cpu.append(cpu_seconds(pid) - cpu_begin)
                if any(a.status_code != 200 for a in answers):
                    raise RuntimeError(f"a first render failed: {[a.text for a in answers]}")
    return {
        "options": options or "server default",
        "images": images,
        "first_render": _ms(first),
        "first_render_server_cpu": _ms(cpu) if cpu else None,
        "page_pick": _ms(pick) if pick else None,
    }


async def run_clients(
    base: str,
    clients: int,
    requests: int,
    seed: int = 0,
    timeout: float = 300.0,
    options: dict | None = None,
    image_seed: int = 0,
) -> dict:
    """``clients`` concurrent clients, each picking an image (seed ``image_seed + k``) and making
    ``requests`` slider renders one after another with the render ``options`` (start, sampler,
    steps; none: the server's defaults); latencies of the renders, and how many got no HTTP 200
    answer."""
    import httpx

    options = options or {}
    async with httpx.AsyncClient(base_url=base, timeout=timeout) as http:
        info = (await http.get("/api/info")).json()
        low = np.array([u["low"] for u in info["units"]])
        high = np.array([u["high"] for u in info["units"]])
        status_before = (await http.get("/api/status")).json()

        async def client(k: int) -> tuple[list[float], int]:
            rng = np.random.default_rng([seed, k])
            pick = {"seed": int(image_seed + k)}
            image = (await http.post("/api/images/random", json=pick)).json()["image_id"]
            latencies, lost = [], 0
            for _ in range(requests):
                values = (low + rng.random(len(low)) * (high - low)).tolist()
                begin = time.perf_counter()
                try:
                    body = {"image_id": image, "values": values, **options}
                    r = await http.post("/api/render", json=body)
                    ok = r.status_code == 200 and r.json()["png"].startswith("data:image/png;base64,")
                except (httpx.HTTPError, ValueError):
                    ok = False
                latencies.append(time.perf_counter() - begin)
                lost += not ok
            return latencies, lost

        begin = time.perf_counter()
        results = await asyncio.gather(*(client(k) for k in range(clients)))
        wall = time.perf_counter() - begin
        status_after = (await http.get("/api/status")).json()
    latencies = np.array([t for r in results for t in r[0]])
    batches = status_after["batches"] - status_before["batches"]
    rendered = status_after["rendered"] - status_before["rendered"]
    return {
        "options": options or "server default",
        "clients": clients,
        "requests_per_client": requests,
        "responses": int(len(latencies)),
        "lost": int(sum(r[1] for r in results)),
        **_ms(latencies),
        "inverted": status_after["inverted"] - status_before["inverted"],
        "throughput_per_s": round(len(latencies) / wall, 2),
        "wall_s": round(wall, 2),
        "batches": batches,
        "mean_batch": round(rendered / batches, 2) if batches else None,
    }


def start_server(run: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "diffdrl", "explore", str(run), "--port", str(port)]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_ready(server: subprocess.Popen, base: str, limit: float = 600.0) -> None:
    import httpx

    deadline = time.time() + limit
    while time.time() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited ({server.returncode}):\n{server.stdout.read()}")
        try:
            if httpx.get(base + "/api/info", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"the server did not answer within {limit} s")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", help="run directory (default: train the tiny test model in a temp dir)")
    parser.add_argument("--clients", default="8,32", help="comma-separated client counts (default 8,32)")
    parser.add_argument("--requests", type=int, default=10, help="slider requests per client (default 10)")
    parser.add_argument(
        "--settings",
        default="noise:dpm++:10,default",
        help="render settings compared side by side: 'default' (the server's) or START:SAMPLER:STEPS "
        "(default: noise:dpm++:10, the explorer's default before edits started from the image, and default)",
    )
    parser.add_argument("--first", type=int, default=8, help="new images timed alone per setting (default 8)")
    parser.add_argument("--rss-bound-mib", type=float, default=150.0, help="allowed server RSS growth")
    parser.add_argument("--out", default="benchmarks/results/explore_load-cpu.json")
    args = parser.parse_args()
    counts = [int(c) for c in args.clients.split(",")]
    if args.requests < 1 or args.first < 1 or any(c < 1 for c in counts):
        parser.error("--clients, --requests and --first must be positive")
    try:
        settings = [setting(spec) for spec in args.settings.split(",")]
    except ValueError as err:
        parser.error(str(err))

    import httpx

    with tempfile.TemporaryDirectory() as tmp:
        run = Path(args.run) if args.run else tiny_run(Path(tmp))
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = start_server(run, port)
        try:
            wait_ready(server, base)
            info = httpx.get(base + "/api/info", timeout=30).json()
            for options in settings:  # warm-up: first batches, allocator, caches, each setting's path
                asyncio.run(run_clients(base, 4, 3, seed=99, options=options, image_seed=10**6))
            rss = [rss_mib(server.pid)]
            firsts, rows, fresh = [], [], 2 * 10**6  # image seeds no earlier phase picked
            for options in settings:
                firsts.append(asyncio.run(first_renders(base, args.first, options, fresh, pid=server.pid)))
                fresh += 2 * args.first
                print(json.dumps(firsts[-1]))
            for n in counts:
                for options in settings:
                    row = asyncio.run(run_clients(base, n, args.requests, options=options, image_seed=fresh))
                    fresh += n
                    rss.append(rss_mib(server.pid))
                    row["server_rss_mib"] = round(rss[-1], 1)
                    rows.append(row)
                    print(json.dumps(row))
            crashed = server.poll() is not None
        finally:
            server.terminate()
            server.wait(30)
    growth = rss[-1] - rss[0]
    failures = [f"N={r['clients']}: {r['lost']} lost responses" for r in rows if r["lost"]]
    if crashed:
        failures.append("the server crashed")
    if growth > args.rss_bound_mib:
        failures.append(f"server RSS grew {growth:.1f} MiB, over the {args.rss_bound_mib} MiB bound")
    record = {
        "run": str(args.run or "tiny test model (trained 4 steps in a temp dir)"),
        "server_default": f"{info['start']}, {info['sampler']}, {info['steps']} steps",
        "resolution": info["resolution"],
        "first_renders": firsts,
        "cpu_count": os.cpu_count(),
        "torch_threads": os.environ.get("OMP_NUM_THREADS"),
        "rss_after_warmup_mib": round(rss[0], 1),
        "rss_growth_mib": round(growth, 1),
        "rss_bound_mib": args.rss_bound_mib,
        "rows": rows,
        "passed": not failures,
        "failures": failures,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(record, indent=2))
    print(
        f"RSS after warm-up {rss[0]:.1f} MiB, growth {growth:.1f} MiB "
        f"(bound {args.rss_bound_mib}); wrote {out}"
    )
    for failure in failures:
        print(f"FAILED: {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
