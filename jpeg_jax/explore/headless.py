"""Driving the explorer page from a headless Chromium: the browser test and the latency benchmark.

The server runs as its own process, as a user starts it; the browser is Debian's Chromium
(``apt-get install -y chromium``) driven by Playwright (the ``test`` extra), never a browser
Playwright would download.
"""

from __future__ import annotations

import os
import queue
import re
import subprocess
import sys
import threading
import time

import numpy as np

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
_INSTALL = "apt-get update && apt-get install -y chromium chromium-driver"

PIXELS_JS = """() => {
  const img = document.getElementById("view-img");
  const canvas = document.createElement("canvas");
  canvas.width = img.naturalWidth;
  canvas.height = img.naturalHeight;
  const context = canvas.getContext("2d");
  context.drawImage(img, 0, 0);
  return [canvas.height, canvas.width,
          Array.from(context.getImageData(0, 0, canvas.width, canvas.height).data)];
}"""


def start_server(
    checkpoint: str, *, cwd: str | None = None, env: dict | None = None, timeout: float = 240
) -> tuple[subprocess.Popen, str]:
    """``python -m jpeg_jax.explore --checkpoint CHECKPOINT --port 0`` -> (process, page URL).

    Raises RuntimeError with the server's output when it does not start within ``timeout``.
    """
    process = subprocess.Popen(
        [sys.executable, "-m", "jpeg_jax.explore", "--checkpoint", checkpoint, "--port", "0"],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in process.stdout], daemon=True).start()
    output, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            if process.poll() is not None:
                break
            continue
        output.append(line)
        found = re.search(r"serving (http://\S+/)", line)
        if found:
            return process, found.group(1)
    process.kill()
    raise RuntimeError(f"the explorer server did not start: {''.join(output)}")


def stop_server(process: subprocess.Popen, timeout: float = 60) -> int:
    """SIGTERM (a graceful stop) and the exit status."""
    process.terminate()
    process.communicate(timeout=timeout)
    return process.returncode


def launch_chromium(playwright, profile: str, **kwargs):
    """A headless Chromium context with a fresh profile folder ``profile``.

    Raises RuntimeError naming the fix when ``/usr/bin/chromium`` is missing.
    """
    if not os.path.exists(CHROMIUM):
        raise RuntimeError(f"no browser at {CHROMIUM}: install Debian's Chromium ({_INSTALL})")
    kwargs.setdefault("viewport", {"width": 1280, "height": 900})
    return playwright.chromium.launch_persistent_context(
        profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS, **kwargs
    )


def view_pixels(page) -> np.ndarray:
    """The shown view image's pixels as the browser decoded them, uint8 ``(H, W, 3)``."""
    h, w, data = page.evaluate(PIXELS_JS)
    return np.asarray(data, np.uint8).reshape(h, w, 4)[..., :3]


def drag_box(page, box, size) -> None:
    """Drags over the shown image from (left, top) to (right, bottom), in image pixels of an
    image of ``size`` ``(H, W)``."""
    r = page.locator("#view-img").bounding_box()
    point = lambda x, y: (r["x"] + x / size[1] * r["width"], r["y"] + y / size[0] * r["height"])
    page.mouse.move(*point(box[0], box[1]))
    page.mouse.down()
    page.mouse.move(*point((box[0] + box[2]) / 2, (box[1] + box[3]) / 2), steps=4)
    page.mouse.move(*point(box[2], box[3]), steps=4)
    page.mouse.up()


def selected_box(page) -> list[int]:
    """The page's snapped selection ``[left, top, right, bottom]`` (waits for it)."""
    page.wait_for_selector('#selection[data-box]:not([data-box=""])')
    return [int(v) for v in page.get_attribute("#selection", "data-box").split(",")]


def wait_for_new_view(page, shown: str) -> str:
    """Waits until the view image shows something other than ``shown``; its key."""
    page.wait_for_function(
        f"document.getElementById('view-img').dataset.loaded !== {shown!r}"
        " && document.getElementById('view-img').dataset.loaded !== undefined"
    )
    return page.get_attribute("#view-img", "data-loaded")
