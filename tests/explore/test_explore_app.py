"""The explorer's API against a tiny trained EncDiff run (and a tiny VAE): known answers from the
library's own pictures, batching and caching invariants, and clear 4xx errors."""

import base64
import io
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from diffdrl.data.image_dataset import resize_shorter_and_crop
from diffdrl.explore.app import create_app
from diffdrl.explore.render_queue import RenderKey, RenderQueue
from diffdrl.explore.session import Explorer
from diffdrl.metrics.reconstruction import psnr
from diffdrl.training.runs import load_run
from diffdrl.viz.grid import to_uint8
from diffdrl.viz.interchange import interchange
from diffdrl.viz.render import inverted_start, reconstruct, render_units, shared_start
from diffdrl.viz.traversal import traverse, unit_ranges
from helpers.explore import SMALL


def pixels(data_url_or_png) -> np.ndarray:
    raw = data_url_or_png
    if isinstance(raw, str):
        raw = base64.b64decode(raw.split(",", 1)[1])
    return np.array(Image.open(io.BytesIO(raw)).convert("RGB"))


def png_bytes(array: np.ndarray, fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format=fmt)
    return out.getvalue()


def pick(client, seed: int) -> dict:
    response = client.post("/api/images/random", json={"seed": seed})
    assert response.status_code == 200, response.text
    return response.json()


def test_info_describes_units_with_factor_labels_and_observed_ranges(client, explorer):
    info = client.get("/api/info").json()
    assert info["num_units"] == 3 and len(info["units"]) == 3 and info["diffusion"]
    assert info["sampler"] in info["samplers"] and "ddpm" not in info["samplers"]  # stochastic: not batched
    factor_names = [f["name"] for f in info["factors"]]
    assert factor_names == list(explorer.run.data.factor_names)
    for unit in info["units"]:
        assert unit["low"] < unit["median"] < unit["high"]
        assert unit["label"].split(": ")[1] in factor_names  # the factor it informs most
        assert unit["anchors"] is None  # EncDiff without DyGA
    observed = explorer.project(explorer.reference_units)
    inside = ((observed >= explorer.low) & (observed <= explorer.high)).float().mean(0)
    assert torch.all(inside >= 0.95)  # 1%-99% quantiles


def test_unit_factor_fit_is_cached_per_run(explorer):
    path = explorer.cache_dir / "unit_factor.json"
    assert path.is_file()
    again = Explorer(explorer.run, cache_dir=explorer.cache_dir, **SMALL)
    try:
        np.testing.assert_array_equal(again.importance, explorer.importance)
    finally:
        again.close()


def test_images_by_seed_and_by_factors_come_from_the_dataset(client, explorer):
    a = pick(client, 3)
    assert pick(client, 3)["image_id"] == a["image_id"]
    codes, images = explorer.run.sample(1, 3)
    np.testing.assert_array_equal(pixels(a["png"]), images[0])
    assert a["factors"] == codes[0].tolist()
    by_factors = client.post("/api/images/factors", json={"factors": a["factors"]}).json()
    assert by_factors["image_id"] == a["image_id"]
    np.testing.assert_array_equal(pixels(client.get(f"/api/images/{a['image_id']}").content), images[0])
    bad = client.post("/api/images/factors", json={"factors": [99, 0, 0, 0, 0, 0]})
    assert bad.status_code == 400 and "out of range" in bad.json()["error"]
    short = client.post("/api/images/factors", json={"factors": [0]})
    assert short.status_code == 400 and "shape" in short.json()["error"]


def test_render_is_the_library_render_of_the_slider_values(client, explorer):
    a = pick(client, 1)
    values = [u["high"] for u in explorer.info()["units"]]
    r = client.post(
        "/api/render",
        json={
            "image_id": a["image_id"],
            "values": values,
            "sampler": "ddim",
            "steps": 4,
            "seed": 5,
            "start": "noise",
        },
    )
    assert r.status_code == 200, r.text
    units = torch.tensor(values)[None]  # scalar units: the slider value is the unit
    expected = to_uint8(render_units(explorer.model, units, x_T=shared_start(explorer.model, 5), steps=4))[0]
    assert np.abs(pixels(r.json()["png"]).astype(int) - expected).max() <= 1  # batch-size rounding at most
    own = client.post(
        "/api/render",
        json={"image_id": a["image_id"], "sampler": "ddim", "steps": 4, "seed": 5, "start": "noise"},
    )
    assert not np.array_equal(pixels(own.json()["png"]), pixels(r.json()["png"]))


def test_render_from_inversion_is_the_librarys_edit_from_inversion(client, explorer):
    a = pick(client, 1)
    image = pixels(a["png"])
    values = [u["high"] for u in explorer.info()["units"]]
    body = {"image_id": a["image_id"], "sampler": "ddim", "steps": 4}
    edited = client.post("/api/render", json={**body, "values": values, "start": "inversion"})
    assert edited.status_code == 200, edited.text
    x_T = inverted_start(explorer.model, image[None], 4)
    expected = to_uint8(render_units(explorer.model, torch.tensor([values]), x_T=x_T, steps=4))[0]
    assert np.abs(pixels(edited.json()["png"]).astype(int) - expected).max() <= 1
    own = client.post("/api/render", json=body).json()  # the default start: the inversion
    trip = reconstruct(explorer.model, image[None], steps=4, start="inversion")
    assert np.abs(pixels(own["png"]).astype(int) - to_uint8(trip)[0]).max() <= 1
    np.testing.assert_allclose(
        own["psnr"],
        float(psnr(*[torch.tensor(x / 255)[None] for x in (image, pixels(own["png"]))])),
        atol=0.01,
    )
    inverted = explorer.queue.inverted
    for seed in (0, 9):  # the seed draws no inverted x_T: one cached render, and nothing inverted again
        again = client.post("/api/render", json={**body, "values": values, "seed": seed}).json()
        assert again["png"] == edited.json()["png"]
    assert explorer.queue.inverted == inverted
    fresh = client.post("/api/render", json={**body, "start": "noise"}).json()
    assert fresh["png"] != own["png"]


def test_an_upload_is_edited_from_its_inversion_too(client, explorer):
    photo = np.random.default_rng(1).integers(0, 256, (24, 20, 3), dtype=np.uint8)
    up = client.post("/api/images/upload", content=png_bytes(photo)).json()
    image = pixels(up["png"])
    r = client.post("/api/render", json={"image_id": up["image_id"], "sampler": "ddim", "steps": 4}).json()
    trip = to_uint8(reconstruct(explorer.model, image[None], steps=4, start="inversion"))[0]
    assert np.abs(pixels(r["png"]).astype(int) - trip).max() <= 1


def test_an_image_is_inverted_once_per_steps(explorer):
    image = explorer.random_image(21)
    before = explorer.queue.inverted
    for values in ([0.1, 0.2, 0.3], [0.3, 0.2, 0.1], None):
        for sampler in ("ddim", "dpm++"):
            explorer.render(image.id, values, sampler, 3, start="inversion")
    assert explorer.queue.inverted == before + 1  # one DDIM inversion serves both samplers
    explorer.render(image.id, None, "ddim", 5)
    assert explorer.queue.inverted == before + 2


@pytest.mark.parametrize("start", ["noise", "inversion"])
def test_swap_equals_the_interchange_grid(client, explorer, start):
    a, b = pick(client, 1), pick(client, 2)
    source, target = pixels(a["png"])[None], pixels(b["png"])[None]
    grid = interchange(explorer.model, source, target, steps=4, seed=7, start=start)
    ids = {"source_id": a["image_id"], "target_id": b["image_id"]}
    options = {"sampler": "ddim", "steps": 4, "seed": 7, "start": start}
    for unit in range(3):
        r = client.post("/api/swap", json={**ids, "unit": unit, **options})
        assert r.status_code == 200, r.text
        assert np.abs(pixels(r.json()["png"]).astype(int) - grid.swapped[unit, 0]).max() <= 1
    every = client.post("/api/swap", json={**ids, "unit": "all", **options})
    x_T = (
        inverted_start(explorer.model, source, 4) if start == "inversion" else shared_start(explorer.model, 7)
    )
    target_render = to_uint8(render_units(explorer.model, explorer.model.encode(target), x_T=x_T, steps=4))[0]
    assert np.abs(pixels(every.json()["png"]).astype(int) - target_render).max() <= 1


@pytest.mark.parametrize("start", ["noise", "inversion"])
def test_strip_equals_the_traversal_row(client, explorer, start):
    a = pick(client, 4)
    r = client.post(
        "/api/strip",
        json={
            "image_id": a["image_id"],
            "unit": 2,
            "count": 4,
            "sampler": "ddim",
            "steps": 4,
            "seed": 0,
            "start": start,
        },
    ).json()
    values = unit_ranges(explorer.reference_units, 4, num_units=3)
    rows = traverse(explorer.model, pixels(a["png"]), values, steps=4, seed=0, start=start)
    assert len(r["pngs"]) == 4 and np.allclose(r["values"], values[2].numpy())
    for got, want in zip(r["pngs"], rows[2], strict=True):
        assert np.abs(pixels(got).astype(int) - want).max() <= 1


def test_attention_returns_one_overlay_per_token(client):
    a = pick(client, 1)
    maps = client.post("/api/attention", json={"image_id": a["image_id"]}).json()["maps"]
    overlays = [np.asarray(Image.open(io.BytesIO(base64.b64decode(m.split(",")[1])))) for m in maps]
    assert len(overlays) == 3 and all(o.shape == (16, 16, 4) for o in overlays)


@pytest.mark.parametrize(
    "path, body, needle",
    [
        ("/api/swap", {"unit": 3}, "unit index 3 out of range"),
        ("/api/swap", {"unit": -1}, "unit index -1 out of range"),
        ("/api/swap", {"unit": True}, "unit must be an integer"),
        ("/api/strip", {"unit": 42}, "unit index 42 out of range"),
        ("/api/render", {"values": [0.0]}, "values must be a list of 3"),
        ("/api/render", {"values": [0.0, "x", 1.0]}, "values must be numbers"),
        ("/api/render", {"sampler": "ddpm"}, "sampler must be one of"),
        ("/api/render", {"steps": 0}, "steps must be an integer in [1, 200]"),
        ("/api/render", {"steps": 201, "start": "inversion"}, "steps must be an integer in [1, 200]"),
        ("/api/render", {"start": "image"}, "start must be one of ('noise', 'inversion')"),
        ("/api/strip", {"unit": 0, "start": "inversion", "steps": 10**6}, "steps must be an integer"),
        ("/api/render", {"seed": -1}, "seed must be an integer"),
        ("/api/render", {"bogus": 1}, "unknown field(s) bogus"),
    ],
)
def test_bad_requests_are_400_with_a_clear_json_error(client, path, body, needle):
    a, b = pick(client, 1), pick(client, 2)
    ids = {"/api/swap": {"source_id": a["image_id"], "target_id": b["image_id"]}}.get(
        path, {"image_id": a["image_id"]}
    )
    r = client.post(path, json={**ids, **body})
    assert r.status_code == 400 and needle in r.json()["error"], r.text


def test_unknown_and_malformed_image_ids(client):
    for start in ("inversion", "noise"):
        r = client.post("/api/render", json={"image_id": "0123456789abcdef", "start": start})
        assert r.status_code == 404 and "no image" in r.json()["error"]
    r = client.post("/api/render", json={"image_id": "../../config.yaml"})
    assert r.status_code == 400 and "16 lowercase hex digits" in r.json()["error"]


def test_uploads_are_resized_as_the_data_and_bad_ones_refused(client, explorer):
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)
    expected = np.asarray(resize_shorter_and_crop(Image.fromarray(photo), 16, 16))
    for fmt in ("PNG", "JPEG"):
        r = client.post(
            "/api/images/upload", content=png_bytes(photo, fmt), headers={"content-type": "image/png"}
        )
        assert r.status_code == 200, r.text
        got = pixels(r.json()["png"])
        assert got.shape == (16, 16, 3) and r.json()["source"] == "upload"
        if fmt == "PNG":
            np.testing.assert_array_equal(got, expected)
    too_big = b"\x89PNG\r\n\x1a\n" + bytes(explorer.max_upload_bytes)
    r = client.post("/api/images/upload", content=too_big)
    assert r.status_code == 413 and "too large" in r.json()["error"]
    r = client.post("/api/images/upload", content=b"GIF89a not what we take")
    assert r.status_code == 415 and "not a PNG or JPEG" in r.json()["error"]
    r = client.post("/api/images/upload", content=png_bytes(photo)[:60])
    assert r.status_code == 415 and "corrupt PNG" in r.json()["error"]
    bomb = io.BytesIO()
    Image.new("1", (5000, 5000)).save(bomb, format="PNG")  # small file, 25M pixels
    r = client.post("/api/images/upload", content=bomb.getvalue())
    assert r.status_code == 413 and "5000x5000 pixels" in r.json()["error"]


TRAVERSALS = [
    "/static/..%2f..%2f..%2fpyproject.toml",
    "/static/..%2fapp.py",
    "/static/%2e%2e/session.py",
    "/static/..%5capp.py",
    "/static/%2fetc%2fpasswd",
    "/static/sub/explorer.js",
    "/api/images/..%2f..%2fconfig.yaml",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_path_traversal_is_refused_with_json(client, path):
    r = client.get(path)
    assert r.status_code == 400 and "error" in r.json(), r.text
    assert "traversal" in r.json()["error"] or "hex digits" in r.json()["error"]


@pytest.mark.parametrize(
    "path",
    [
        "/app.py",
        "/static/",
        "/static/__init__.py",
        "/static/app.py",
        "/config.yaml",
        "/explore/app.py",
        "/static/explorer.js.bak",
    ],
)
def test_nothing_outside_the_static_files_is_served(client, path):
    r = client.get(path)
    assert 400 <= r.status_code < 500 and "error" in r.json()
    assert "import" not in r.text and "def " not in r.text


def test_static_files_and_openapi(client):
    assert "diffdrl explorer" in client.get("/").text
    assert client.get("/static/explorer.js").headers["content-type"].startswith("text/javascript")
    paths = client.get("/api/openapi.json").json()["paths"]
    assert {"/api/render", "/api/swap", "/api/strip", "/api/images/upload", "/api/attention"} <= set(paths)
    assert "summary" in paths["/api/swap"]["post"]


def test_concurrent_renders_are_batched_and_equal_to_single_renders(explorer):
    base = explorer.image(explorer.random_image(11).id)
    seeds = list(range(100, 112))
    results = {}

    def one(seed):
        results[seed] = explorer.render(base.id, None, "ddim", 3, seed, "noise")

    before = explorer.queue.batches
    threads = [threading.Thread(target=one, args=(s,)) for s in seeds]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert explorer.queue.batches - before < len(seeds)  # some renders shared a batch
    for seed in seeds[:3]:
        alone = to_uint8(
            render_units(explorer.model, base.units[None], x_T=shared_start(explorer.model, seed), steps=3)
        )[0]
        assert np.abs(pixels(results[seed]).astype(int) - alone).max() <= 1
    hits = explorer.queue.hits
    assert explorer.render(base.id, None, "ddim", 3, seeds[0], "noise") == results[seeds[0]]
    assert explorer.queue.hits == hits + 1


def test_the_cache_is_a_bounded_lru(explorer):
    q = RenderQueue(explorer.model, cache_size=2)
    try:
        units = torch.zeros(3)
        keys = [
            RenderKey("a", bytes([i]), None if not explorer.diffusion else "ddim", 1, 0) for i in range(3)
        ]
        for key in keys:
            q.render(key, units).result()
        assert list(q._cache) == keys[1:]
        q.render(keys[1], units).result()  # a hit moves it to the end
        assert list(q._cache) == [keys[2], keys[1]]
    finally:
        q.close()


def test_a_vae_decodes_without_sampling_options(vae_run, tmp_path):
    ex = Explorer(load_run(vae_run), cache_dir=tmp_path, **SMALL)
    try:
        from starlette.testclient import TestClient

        with TestClient(create_app(ex)) as c:
            info = c.get("/api/info").json()
            assert not info["diffusion"] and info["samplers"] == [] and not info["attention"]
            a = pick(c, 1)
            values = [u["low"] for u in info["units"]]
            r = c.post("/api/render", json={"image_id": a["image_id"], "values": values})
            expected = to_uint8(ex.model.decode(torch.tensor([values])))[0]
            np.testing.assert_array_equal(pixels(r.json()["png"]), expected)
            for option in ({"steps": 4}, {"start": "inversion"}):
                r = c.post("/api/render", json={"image_id": a["image_id"], **option})
                assert r.status_code == 400 and "decodes its units in one pass" in r.json()["error"]
            r = c.post("/api/attention", json={"image_id": a["image_id"]})
            assert r.status_code == 400 and "no tokens" in r.json()["error"]
    finally:
        ex.close()
