"""End to end in headless Chromium (Debian's ``chromium``, driven by Playwright) against a live
explorer over the tiny trained run: the page loads, edits start from the picked image's inversion
(the image comes back until a slider moves), sliders and swaps show the library's images, and bad
input gets a clear error in the page and a 4xx from the server. Few and quick."""

import base64
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from diffdrl.metrics.reconstruction import psnr
from diffdrl.viz.grid import to_uint8
from diffdrl.viz.interchange import interchange
from diffdrl.viz.render import inverted_start, render_units, shared_start

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
STEPS = 4


@pytest.fixture(scope="module")
def page(live_server, tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} missing: install Debian's chromium (.ci/run does: apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=CHROMIUM,
            headless=True,
            args=ARGS,
        )
        page = context.new_page()
        page.set_default_timeout(60_000)
        page.goto(live_server)
        page.wait_for_selector("body[data-ready='1']")
        page.select_option("#sampler", "ddim")  # interchange's sampler, to compare with it
        page.fill("#steps", str(STEPS))
        page.dispatch_event("#steps", "change")
        settle(page)
        yield page
        context.close()


def settle(page) -> None:
    page.wait_for_function("window.explorer.idle()")


def shown(page, selector: str) -> np.ndarray:
    src = page.get_attribute(selector, "src")
    return np.array(Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).convert("RGB"))


def image_of(page, base: str, which: str) -> np.ndarray:
    image_id = page.evaluate(f"window.explorer.state.{which}.image_id")
    return np.array(Image.open(io.BytesIO(page.request.get(f"{base}/api/images/{image_id}").body())))


def psnr_of(a: np.ndarray, b: np.ndarray) -> float:
    return float(psnr(*(torch.from_numpy(x)[None].float() / 255 for x in (a, b)))[0])


def test_edits_start_from_the_picked_image_and_fresh_noise_regenerates(page, live_server, explorer):
    picked = image_of(page, live_server, "a")
    assert page.input_value("#start") == "inversion"  # the default: the image itself
    assert psnr_of(shown(page, "#edited"), picked) >= 25  # every slider at the image's own value
    assert page.inner_text("#edited-caption").startswith("PSNR")
    assert "dB" in page.inner_text("#roundtrip-psnr") and "dB" in page.inner_text("#regen-psnr")
    assert np.abs(shown(page, "#roundtrip-a").astype(int) - shown(page, "#edited")).max() <= 1
    page.focus(".unit-slider[data-unit='0']")  # one slider to its top, by keyboard as a user would
    page.keyboard.press("End")
    settle(page)
    moved = shown(page, "#edited")
    assert np.abs(moved.astype(int) - picked).sum() > 0
    values = torch.tensor([page.evaluate("window.explorer.state.values")])
    x_T = inverted_start(explorer.model, picked[None], STEPS)
    expected = to_uint8(render_units(explorer.model, values, x_T=x_T, steps=STEPS))[0]
    assert np.abs(moved.astype(int) - expected).max() <= 1  # the library's edit from inversion
    page.select_option("#start", "noise")
    settle(page)
    assert page.get_attribute("#edited", "data-start") == "noise"
    assert "fresh noise, seed 0" in page.inner_text("#edited-start")
    fresh = to_uint8(render_units(explorer.model, values, x_T=shared_start(explorer.model, 0), steps=STEPS))[
        0
    ]
    assert np.abs(shown(page, "#edited").astype(int) - fresh).max() <= 1  # a regeneration from noise
    page.select_option("#start", "inversion")
    page.click("#reset-all")
    settle(page)
    assert np.abs(shown(page, "#edited").astype(int) - shown(page, "#roundtrip-a")).max() <= 1


def test_the_page_loads_and_a_slider_changes_the_image(page, live_server, explorer):
    labels = page.locator(".unit-label").all_inner_texts()
    assert len(labels) == 3
    assert all(any(f in label for f in explorer.run.data.factor_names) for label in labels)
    before = shown(page, "#edited")
    for i in range(3):  # each slider to its top, by keyboard as a user would
        page.focus(f".unit-slider[data-unit='{i}']")
        page.keyboard.press("End")
    settle(page)
    after = shown(page, "#edited")
    assert np.abs(after.astype(int) - before).sum() > 0  # the image changed
    values = torch.tensor([[u["high"] for u in explorer.info()["units"]]])
    x_T = inverted_start(explorer.model, image_of(page, live_server, "a")[None], STEPS)
    expected = to_uint8(render_units(explorer.model, values, x_T=x_T, steps=STEPS))
    assert np.abs(after.astype(int) - expected[0]).max() <= 1  # and it is the library's render


def test_swapping_a_unit_shows_the_librarys_swap(page, live_server, explorer):
    page.click(".swap[data-unit='1']")
    page.wait_for_selector("#swap-result[data-unit='1']")
    settle(page)
    source, target = image_of(page, live_server, "a"), image_of(page, live_server, "b")
    grid = interchange(explorer.model, source[None], target[None], steps=STEPS, start="inversion")
    assert np.abs(shown(page, "#swap-result").astype(int) - grid.swapped[1, 0]).max() <= 1
    page.hover(".unit[data-unit='2'] .unit-label")  # the token under the cursor: its attention map
    page.wait_for_selector("#attention-overlay:not([hidden])")
    assert (
        page.get_attribute("#attention-overlay", "src")
        == explorer.attention(page.evaluate("window.explorer.state.a.image_id"))[2]
    )


def error_after(page, action) -> str:
    page.evaluate("window.explorer.clearError()")
    action()
    page.wait_for_selector("#error:not([hidden])")
    settle(page)
    return page.inner_text("#error-text")


def test_bad_input_gets_clear_errors_in_the_page_and_4xx(page, live_server, explorer):
    big = b"\x89PNG\r\n\x1a\n" + bytes(explorer.max_upload_bytes)
    files = {"name": "big.png", "mimeType": "image/png", "buffer": big}
    text = error_after(page, lambda: page.set_input_files("#upload-a", files=[files]))
    assert "upload too large" in text and "HTTP 413" in text
    files = {"name": "notes.png", "mimeType": "image/png", "buffer": b"just some text"}
    text = error_after(page, lambda: page.set_input_files("#upload-b", files=[files]))
    assert "not a PNG or JPEG image" in text and "HTTP 415" in text
    text = error_after(page, lambda: page.evaluate("window.explorer.swap(7).catch(() => null)"))
    assert "unit index 7 out of range" in text and "HTTP 400" in text
    path = "/api/images/..%2f..%2fconfig.yaml"
    text = error_after(page, lambda: page.evaluate(f"window.explorer.api('{path}').catch(() => null)"))
    assert "image_id must be 16 lowercase hex digits" in text and "HTTP 400" in text
    for path in (
        "/static/..%2f..%2f..%2fpyproject.toml",
        "/static/%2e%2e/app.py",
        "/static/app.py",
        "/app.py",
    ):
        response = page.request.get(live_server + path)
        assert 400 <= response.status < 500 and "error" in response.json(), path
        assert "import" not in response.text()
