"""End to end: the explorer's four pages in headless Chromium (Debian's ``chromium``, driven by Playwright).

The test serves the app on a small untrained zfnet-mini, clicks a unit on the Units page and reads the
projection's pixels back from the page, then works the Live image, Occlusion and Arithmetic pages.
It skips, saying why, only when Chromium or Playwright is missing (``make test`` installs Chromium
with apt-get when it runs as root).

``python tests/test_serve_browser.py DIR [--model NAME --weights FILE]`` takes the README's
screenshots of the demo model (or of the given one) instead.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]  # fmt: skip
# The page's pixels, read through a canvas (the projections are same-origin data: URLs).
READ_PIXELS = """(img) => {
  const c = document.createElement("canvas");
  c.width = img.naturalWidth; c.height = img.naturalHeight;
  const ctx = c.getContext("2d");
  ctx.drawImage(img, 0, 0);
  return Array.from(ctx.getImageData(0, 0, c.width, c.height).data);
}"""

pytestmark = pytest.mark.browser


def chromium_missing() -> str | None:
    """Why the browser test cannot run here, or None."""
    if not CHROMIUM.exists():
        return (
            f"Chromium is not installed at {CHROMIUM} (Debian package 'chromium'; `make test` installs it "
            "with apt-get when run as root)"
        )
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed (pip install playwright)"
    return None


def wait_until(page, script: str, timeout: float = 60.0):
    """Poll a JS expression until it is truthy (the page's CSP forbids Playwright's eval-based waits)."""
    deadline = time.monotonic() + timeout
    while not (value := page.evaluate(script)):
        if time.monotonic() > deadline:
            raise TimeoutError(f"still false after {timeout} s: {script}")
        time.sleep(0.05)
    return value


def rgb(pixels: list[int], width: int) -> np.ndarray:
    return np.asarray(pixels, np.uint8).reshape(-1, width, 4)[:, :, :3]


def open_browser(playwright, viewport=(1280, 900)):
    return playwright.chromium.launch_persistent_context(
        tempfile.mkdtemp(prefix="deconvlab-chromium-"),
        executable_path=str(CHROMIUM),
        headless=True,
        args=CHROMIUM_ARGS,
        viewport={"width": viewport[0], "height": viewport[1]},
    )


def show_units(page, url: str, card: int = 0) -> dict:
    """Open the Units page, click a channel's card; returns the channel and the first projection's pixels."""
    page.goto(url + "#units")
    page.wait_for_selector(".card img", timeout=120_000)
    wait_until(page, "[...document.querySelectorAll('.card img')].slice(0, 6).every(i => i.complete)")
    chosen = page.locator(".card").nth(card)
    channel = int(chosen.get_attribute("data-channel"))
    chosen.click()
    page.wait_for_selector("#unit-projections img.projection")
    wait_until(
        page,
        "[...document.querySelectorAll('#unit-projections img')].every(i => i.complete && i.naturalWidth)",
    )
    first = page.locator("#unit-projections img.projection").first
    width = first.evaluate("img => img.naturalWidth")
    return {"channel": channel, "pixels": rgb(first.evaluate(READ_PIXELS), width)}


def show_live(page, url: str, image: str, channel: int, y: int, x: int, height: int, width: int):
    """Open the Live image page on ``image``, click unit (y, x) of ``channel``: the projection's pixels."""
    page.goto(url + "#live")
    page.wait_for_selector("#live-image option", state="attached")
    page.select_option("#live-image", image)
    canvas = page.locator(f"#live-maps[data-image='{image}'] .map[data-channel='{channel}'] canvas")
    canvas.wait_for()
    box = canvas.bounding_box()
    canvas.click(position={"x": (x + 0.5) * box["width"] / width, "y": (y + 0.5) * box["height"] / height})
    page.wait_for_selector("#live-projection[src^='data:']")
    wait_until(page, "document.getElementById('live-projection').complete")
    img = page.locator("#live-projection")
    return rgb(img.evaluate(READ_PIXELS), img.evaluate("i => i.naturalWidth"))


def show_occlusion(page, url: str, image: str) -> None:
    page.goto(url + "#occlusion")
    page.wait_for_selector("#occ-image option", state="attached")
    page.select_option("#occ-image", image)
    wait_until(
        page,
        f"document.getElementById('occ-summary').textContent.length > 0 && "
        f"document.getElementById('occ-image').value === '{image}'",
    )
    page.evaluate("document.getElementById('occ-summary').textContent = ''")
    page.locator("#occ-window").fill("16")
    page.locator("#occ-stride").fill("4")
    # wait for the answer to these settings, not a late answer to the image's default ones
    positions = (64 - 16) // 4 + 1
    wait_until(
        page,
        f"document.getElementById('occ-summary').textContent.startsWith('{positions}\u00d7{positions} ')",
    )


def show_arithmetic(page, url: str, settings: dict) -> None:
    page.goto(url + "#arithmetic")
    page.wait_for_selector("#arith-shape:not(:empty)")
    if settings.pop("transposed", False):
        page.check("#arith-transposed")
    for name, value in settings.items():
        page.locator(f"#arith-controls input[data-param='{name}']").fill(str(value))
    wait_until(
        page,
        "document.getElementById('arith-animation').complete && "
        "document.getElementById('arith-animation').naturalWidth > 0",
        timeout=60,
    )


@pytest.fixture(scope="module")
def served():
    why = chromium_missing()
    if why:
        pytest.skip(why)
    from deconvlab.serve import ServeConfig, background_server, create_app
    from test_serve import tiny_loader

    app = create_app(ServeConfig(loader=tiny_loader))
    with background_server(app) as url:
        assert app.state.explorer.wait(120)
        yield app, url


def test_the_four_pages_work_in_chromium(served, tmp_path):
    from playwright.sync_api import sync_playwright

    from deconvlab.arithmetic import conv_transpose_output_shape
    from deconvlab.data import normalize
    from deconvlab.engine import project
    from deconvlab.report.figures import projection_rgb

    app, url = served
    explorer = app.state.explorer
    session = explorer.session()
    layer = session.layers[list(session.layers)[-1]]
    errors = []
    shots = Path(os.environ.get("DECONVLAB_SCREENSHOTS", tmp_path))
    with sync_playwright() as playwright:
        browser = open_browser(playwright)
        page = browser.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

        # Units: click the strongest channel; its first projection is there and not blank
        shown = show_units(page, url)
        page.screenshot(path=shots / "serve-units.png")
        assert shown["pixels"].std() > 0 and (shown["pixels"] != 128).any()
        first = next(c for c in explorer.topk().layers[layer.name].entries(shown["channel"]))
        image, _, (y, x) = first
        y0, y1, x0, x1 = layer.receptive_field.box(y, x)
        direct = project(
            session.model,
            normalize(session.dataset.image(image))[None],
            layer.name,
            torch.tensor([[0, shown["channel"], y, x]]),
        )[0, :, y0:y1, x0:x1]
        np.testing.assert_array_equal(shown["pixels"], projection_rgb(direct))

        # Live image: click the strongest position of a channel of conv2 on a sample photo
        live_layer = session.layers["features.4"]
        from deconvlab.serve.views import activation_maps

        maps = activation_maps(explorer, image="sample:chelsea", layer=live_layer.name)
        channel = int(np.argmax(maps["channel_max"]))
        y, x = maps["strongest"][channel]
        pixels = show_live(page, url, "sample:chelsea", channel, y, x, live_layer.height, live_layer.width)
        page.screenshot(path=shots / "serve-live.png")
        caption = page.text_content("#live-caption")
        assert f"channel {channel} at ({y}, {x})" in caption
        assert pixels.shape == (64, 64, 3) and pixels.std() > 0

        # Occlusion: the maps are drawn, one canvas pixel per occluder position
        show_occlusion(page, url, "dataset:0")
        page.screenshot(path=shots / "serve-occlusion.png")
        positions = (64 - 16) // 4 + 1
        size = page.evaluate(
            "[...['occ-activation', 'occ-probability', 'occ-label']]"
            ".map(id => [document.getElementById(id).width, document.getElementById(id).height])"
        )
        assert size == [[positions, positions]] * 3

        # Arithmetic: the sliders give PyTorch's output shape, the animation and the matrix
        show_arithmetic(page, url, {"transposed": True, "input": 4, "stride": 3, "output_padding": 2})
        page.screenshot(path=shots / "serve-arithmetic.png", full_page=True)
        out = conv_transpose_output_shape(4, 3, stride=3, padding=1, output_padding=2)
        assert page.text_content("#arith-shape") == f"transposed convolution: input 4×4 → output {out}×{out}"
        matrix = page.evaluate(
            "[document.getElementById('arith-matrix').width, document.getElementById('arith-matrix').height]"
        )
        assert matrix == [16, out * out]
        browser.close()
    assert errors == []
    assert all(
        (shots / f"serve-{name}.png").stat().st_size > 10_000 for name in ("units", "live", "occlusion")
    )


def take_screenshots(folder: str, model: str | None = None, weights: str | None = None) -> None:
    """The README's screenshots: the demo model (trained on first use), or ``model`` with ``weights``."""
    from playwright.sync_api import sync_playwright

    from deconvlab.serve import ServeConfig, background_server, create_app

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    app = create_app(ServeConfig(model=model, weights=Path(weights) if weights else None))
    with background_server(app) as url, sync_playwright() as playwright:
        assert app.state.explorer.wait(3600), app.state.explorer.status()
        browser = open_browser(playwright, viewport=(1280, 820))
        page = browser.new_page()
        show_units(page, url, card=1)
        page.screenshot(path=out / "serve-units.png")
        live = app.state.explorer.session().layers["features.4"]
        from deconvlab.serve.views import activation_maps

        maps = activation_maps(app.state.explorer, image="sample:chelsea", layer=live.name)
        channel = int(np.argmax(maps["channel_max"]))
        show_live(page, url, "sample:chelsea", channel, *maps["strongest"][channel], live.height, live.width)
        page.screenshot(path=out / "serve-live.png")
        show_occlusion(page, url, app.state.explorer.image_refs()["dataset"][0])
        page.screenshot(path=out / "serve-occlusion.png")
        show_arithmetic(page, url, {"transposed": True, "input": 5, "stride": 2, "output_padding": 1})
        page.screenshot(path=out / "serve-arithmetic.png", full_page=True)
        browser.close()
    for path in sorted(out.glob("serve-*.png")):
        print(path, len(path.read_bytes()), "bytes")


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Screenshots of the explorer's four pages.")
    parser.add_argument("folder", nargs="?", default="docs/images")
    parser.add_argument("--model", help="registered model (default: the demo model)")
    parser.add_argument("--weights", help="its weight file")
    options = parser.parse_args()
    take_screenshots(options.folder, options.model, options.weights)


def test_the_units_page_names_the_files_the_scan_could_not_read(tmp_path):
    """On a folder with a corrupt file, the Units page lists it with the reason the reader gives."""
    why = chromium_missing()
    if why:
        pytest.skip(why)
    from PIL import Image
    from playwright.sync_api import sync_playwright

    from deconvlab.data import UnreadableImage, read_image
    from deconvlab.serve import ServeConfig, background_server, create_app

    broken = tmp_path / "train" / "a" / "000-broken.png"
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        for i in range(3):
            path = tmp_path / "train" / name / f"{i + 1:03d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(path)
    with pytest.raises(UnreadableImage) as error:
        read_image(broken)
    config = ServeConfig(model="zfnet-mini", data=str(tmp_path), split="train", layers=("features.0",))
    app = create_app(config)
    with background_server(app) as url, sync_playwright() as playwright:
        assert app.state.explorer.wait(120)
        browser = open_browser(playwright)
        page = browser.new_page()
        page.goto(url + "#units")
        page.wait_for_selector(".card img", timeout=120_000)
        page.wait_for_selector("#units-skipped:not([hidden])")
        text = page.locator("#units-skipped").text_content()
        browser.close()
    assert text == f"Skipped, could not be read (1): {broken}: {error.value.reason}"
