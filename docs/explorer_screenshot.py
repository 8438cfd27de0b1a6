"""Make docs/explorer.png: the explorer over a run, driven in headless Chromium (Playwright).

    python docs/explorer_screenshot.py runs/demo --out docs/explorer.png

It picks two dataset images, leaves the sliders at the first image's own values (so the edited
panel shows the image come back from its inversion; ``--move-slider`` moves the traversed unit's
slider to its top instead), opens one unit's traversal strip, swaps a unit from the second image
and hovers a unit (its attention overlay), then screenshots the page at 1400x1000.
"""

from __future__ import annotations

import argparse
import socket
import tempfile
import threading
import time

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


def main() -> None:
    import uvicorn
    from playwright.sync_api import sync_playwright

    from diffdrl.explore.app import create_app
    from diffdrl.explore.server import open_explorer

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run")
    parser.add_argument("--out", default="docs/explorer.png")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--image-seed", type=int, default=3, help="the random pick of the first image")
    parser.add_argument(
        "--unit", type=int, default=None, help="unit to traverse (default: the most informative)"
    )
    parser.add_argument("--move-slider", action="store_true", help="move the unit's slider to its top")
    args = parser.parse_args()

    explorer = open_explorer(args.run)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(explorer), log_level="warning"))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/"
    unit = args.unit
    if unit is None:
        unit = int(explorer.importance.max(1).argmax()) if explorer.importance is not None else 0
    with sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
        context = p.chromium.launch_persistent_context(
            profile,
            executable_path=args.chromium,
            headless=True,
            args=ARGS,
            viewport={"width": 1400, "height": 1000},
        )
        page = context.new_page()
        page.set_default_timeout(300_000)
        page.goto(url)
        page.wait_for_selector("body[data-ready='1']")
        idle = "window.explorer.idle()"
        page.evaluate(
            f"window.explorer.api('/api/images/random', {{seed: {args.image_seed}}})"
            ".then(window.explorer.useA)"
        )
        page.wait_for_function(idle)
        if args.move_slider:
            page.focus(f".unit-slider[data-unit='{unit}']")
            page.keyboard.press("End")
            page.wait_for_function(idle)
        page.click(f".strip-button[data-unit='{unit}']")
        page.wait_for_selector(f"#strip-{unit}")
        page.click(f".swap[data-unit='{unit}']")
        page.wait_for_selector(f"#swap-result[data-unit='{unit}']")
        page.wait_for_function(idle)
        page.hover(f".unit[data-unit='{unit}'] .unit-label")
        page.wait_for_selector("#attention-overlay:not([hidden])")
        page.wait_for_function(idle)
        page.screenshot(path=args.out, full_page=True)
        context.close()
    server.should_exit = True
    explorer.close()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
