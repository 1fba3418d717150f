"""The explorer page in a real browser: Debian's headless Chromium driven by Playwright.

The server runs as its own process (``python -m jpeg_jax.explore --port 0``), as a user starts
it (:mod:`jpeg_jax.explore.headless`). Nothing is downloaded: Playwright drives
``/usr/bin/chromium`` (``.ci/run`` installs it), never a browser of its own; without it the test
fails, saying how to install it.

The screenshot goes to ``tmp_path``; the README's ``docs/explore.png`` is this test run with the
demo model::

    JPEG_JAX_EXPLORE_CHECKPOINT=runs/demo/export JPEG_JAX_EXPLORE_SCREENSHOT=docs/explore.png \\
        python -m pytest -q tests/test_explore_browser.py
"""

import io
import os
from urllib.parse import urljoin

import numpy as np
import pytest
from jpeg_helpers import photo, pillow_jpeg
from model_helpers import random_params
from PIL import Image

from jpeg_jax import decode, export
from jpeg_jax.explore import headless
from jpeg_jax.models import Generator

GENERATOR = dict(num_feat=8, num_block=1, num_grow_ch=4, noise=True, film=True)
TIMEOUT_MS = 300_000  # model work on a loaded 2-core machine


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = os.environ.get("JPEG_JAX_EXPLORE_CHECKPOINT")
    if path:
        return os.path.abspath(path)
    params = random_params(Generator(**GENERATOR), seed=0)
    return str(export.save(tmp_path_factory.mktemp("export") / "tiny", GENERATOR, params))


def _playwright():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the python package `playwright` is missing: pip install -e '.[test]'")
    return sync_playwright


def _start(checkpoint, folder):
    """The server with its own empty working, home and temporary folders."""
    for name in ("cwd", "home", "tmp"):
        (folder / name).mkdir(parents=True)
    env = dict(os.environ, HOME=str(folder / "home"), TMPDIR=str(folder / "tmp"))
    try:
        return headless.start_server(checkpoint, cwd=folder / "cwd", env=env)
    except RuntimeError as e:
        pytest.fail(str(e))


def _wait_status(page, words):
    page.wait_for_function(f"document.getElementById('status').textContent.includes({words!r})")


DROP_JS = """([name, bytes]) => {
  const data = new DataTransfer();
  data.items.add(new File([new Uint8Array(bytes)], name, {type: "image/jpeg"}));
  document.dispatchEvent(new DragEvent("drop", {dataTransfer: data, bubbles: true}));
}"""


def _check_bad_file(page, path):
    """Dropped on the page: the decoder's one-line message is shown."""
    page.evaluate(DROP_JS, [path.name, list(path.read_bytes())])
    page.wait_for_selector("#error:not([hidden])")
    with pytest.raises(decode.InputError) as e:
        decode.read_checked(path.read_bytes(), 16.0)
    assert page.inner_text("#error") == f"{path.name}: {decode.describe_error(e.value)}"


def _check_redraw(page, size):
    """Drag a rectangle, re-draw it: every pixel outside is unchanged, inside changed."""
    headless.drag_box(page, [size[1] * 0.3, size[0] * 0.25, size[1] * 0.7, size[0] * 0.7], size)
    left, top, right, bottom = headless.selected_box(page)
    assert left % 16 == 0 and top % 16 == 0 and right > left and bottom > top
    before, shown = headless.view_pixels(page), page.get_attribute("#view-img", "data-loaded")
    page.click("#redraw")
    headless.wait_for_new_view(page, shown)
    after = headless.view_pixels(page)
    outside = np.ones(size, bool)
    outside[top:bottom, left:right] = False
    np.testing.assert_array_equal(after[outside], before[outside])
    inside = (slice(top, bottom), slice(left, right))
    assert np.abs(after[inside].astype(int) - before[inside]).max() > 0


@pytest.mark.slow
def test_explore_page_in_headless_chromium(tmp_path, checkpoint):
    sync_playwright = _playwright()
    demo = "JPEG_JAX_EXPLORE_CHECKPOINT" in os.environ
    size = (256, 256) if demo else (96, 128)  # (height, width)
    photo_path = tmp_path / "astronaut.jpg"  # the demo's held-out photo, QF 10 as it trains
    crop = (slice(30, 30 + size[0]), slice(150, 150 + size[1]))
    photo_path.write_bytes(pillow_jpeg(photo("astronaut", crop), 10, "4:2:0"))
    bad_path = tmp_path / "notes.jpg"
    bad_path.write_bytes(b"hello, not an image\n")
    screenshot = os.environ.get("JPEG_JAX_EXPLORE_SCREENSHOT", str(tmp_path / "explore.png"))
    checkpoint_files = sorted(os.walk(checkpoint))
    process, url = _start(checkpoint, tmp_path / "server")
    assert url.startswith("http://127.0.0.1:")  # this computer only, by default
    try:
        with sync_playwright() as p:
            try:
                context = headless.launch_chromium(p, str(tmp_path / "profile"))
            except RuntimeError as e:
                pytest.fail(str(e))
            page = context.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(url)
            _check_bad_file(page, bad_path)

            # Open the JPEG: samples appear beside the JPEG decode, with their consistency.
            page.set_input_files("#file", str(photo_path))
            page.wait_for_selector('#view-img[data-loaded^="sample:0:"]')
            _wait_status(page, "4 samples at temperature 1.00")
            assert page.is_hidden("#error")
            page.wait_for_function(
                "document.getElementById('consistency').textContent.includes('in-bin')"
            )
            assert page.evaluate("document.getElementById('jpeg-img').naturalWidth") == size[1]
            first = headless.view_pixels(page)
            assert first.shape == (*size, 3)

            # The temperature control: new samples (the same noise, scaled).
            shown = page.get_attribute("#view-img", "data-loaded")
            page.locator("#temperature").fill("0.5")
            _wait_status(page, "4 samples at temperature 0.50")
            headless.wait_for_new_view(page, shown)
            assert np.abs(headless.view_pixels(page).astype(int) - first).max() > 0

            # Browse: the next sample, back; the mean and uncertainty views.
            page.click("#next")
            page.wait_for_selector('#view-img[data-loaded^="sample:1:"]')
            page.click("#prev")
            page.wait_for_selector('#view-img[data-loaded^="sample:0:"]')
            page.click("#views button[data-view=std]")
            page.wait_for_selector('#view-img[data-loaded^="std:"]')
            page.click("#views button[data-view=sample]")
            page.wait_for_selector('#view-img[data-loaded^="sample:0:"]')

            _check_redraw(page, size)

            # Principal components of the region.
            page.click("#components")
            page.wait_for_selector("#pcs:not([hidden]) .pc-row img")
            page.wait_for_function(
                "[...document.querySelectorAll('#pcs img')].every(i => i.naturalWidth > 0)"
            )
            assert page.locator(".pc-row").count() == 3
            assert "% of the variance" in page.inner_text("#pcs")

            # Flicker cycles through the samples; zoom; the download of what is shown.
            page.click("#flicker")
            page.wait_for_selector('#view-img[data-loaded^="sample:1:"]')
            page.click("#flicker")
            index = int(page.inner_text("#index-text").split("/")[0]) - 1  # where it stopped
            page.wait_for_selector(f'#view-img[data-loaded^="sample:{index}:"]')
            page.click("#prev")
            page.wait_for_selector(f'#view-img[data-loaded^="sample:{(index - 1) % 4}:"]')
            index = (index - 1) % 4
            page.select_option("#zoom", "2")
            assert page.locator("#view-stage").bounding_box()["width"] == 2 * size[1]
            page.select_option("#zoom", "fit")
            download = page.request.get(urljoin(url, page.get_attribute("#download", "href")))
            disposition = download.headers["content-disposition"]
            assert f'filename="astronaut_sample{index + 1}.png"' in disposition
            shown = np.asarray(Image.open(io.BytesIO(download.body())).convert("RGB"))
            np.testing.assert_array_equal(shown, headless.view_pixels(page))

            # The before/after slider.
            page.select_option("#layout", "slider")
            page.locator("#compare").fill("45")
            assert page.is_visible("#before-img")
            page.screenshot(path=screenshot, full_page=True)
            context.close()
    finally:
        status = headless.stop_server(process)
    assert status == 0
    assert os.path.getsize(screenshot) > 10_000
    # The server wrote nothing: not in its folder, home or the export; its temp folder is gone.
    folders = [tmp_path / "server" / name for name in ("cwd", "home", "tmp")]
    assert [list(os.scandir(folder)) for folder in folders] == [[], [], []]
    assert sorted(os.walk(checkpoint)) == checkpoint_files
