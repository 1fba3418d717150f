"""Explorer latency as a user sees it: first sample of a 512² JPEG on screen, a region re-draw.

Usage (from the repository root, after the demo: ``python train.py --config=configs/demo.py
--workdir=runs/demo``; needs Debian's Chromium, ``apt-get install -y chromium``, and the
``test`` extra's Playwright; a few minutes on 2 CPU cores):

    python benchmarks/explore.py
    python benchmarks/explore.py --checkpoint EXPORT --region 128 --repeats 5

Starts ``jpeg-jax-explore`` as its own process and drives the page in headless Chromium
(:mod:`jpeg_jax.explore.headless`). The page itself times each step (``performance.now()``) from
the user's action to the ``load`` event of the image it shows:

- first sample on screen: from picking the file (upload, header checks, decode, the first
  sample, PNG, transfer) to the first sample shown. "cold" is the server's first photo (it
  includes XLA's compilation for that image size); "warm" opens a photo of the same size again.
- region re-draw: from the click to the re-drawn sample shown, for a ``region x region`` box in
  the middle of the photo. "cold" is the first re-draw (compiles the crop's shape), then
  ``repeats`` warm ones.

Beside each, the model work the server reports (the job's seconds). The photo is the demo's
held-out astronaut (512², JPEG quality 10). Prints a table and writes
``benchmarks/results/explore.json``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import statistics
import sys
import tempfile

from jpeg_jax import jpeg
from jpeg_jax.datasets import embedded
from jpeg_jax.explore import headless

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # benchmarks.*
from benchmarks import bench_utils  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "explore.json")
TIMEOUT_MS = 600_000


def _timed(page, action, key: str) -> tuple[float, float]:
    """Runs ``action`` and returns the page's ``document.body.dataset[key]`` (ms) and the model
    seconds of the status line."""
    page.evaluate(f"delete document.body.dataset.{key}")
    action()
    page.wait_for_function(f"document.body.dataset.{key} !== undefined")
    page.wait_for_function("document.getElementById('progress').hidden")
    ms = float(page.evaluate(f"document.body.dataset.{key}"))
    status = page.inner_text("#status")
    model = re.search(r"\(([\d.]+) s of model work\)", status)
    return ms, float(model.group(1)) if model else float("nan")


def bench(args, folder: str) -> dict:
    from playwright.sync_api import sync_playwright

    photo = embedded.load_photo(embedded.HELD_OUT[0])
    files = []
    for i in range(args.repeats + 1):  # distinct names: each pick is a new file for the page
        files.append(os.path.join(folder, f"astronaut_{i}.jpg"))
        with open(files[-1], "wb") as f:
            f.write(jpeg.pillow_encode(photo, quality=10))
    size = photo.shape[:2]
    process, url = headless.start_server(os.path.abspath(args.checkpoint), cwd=folder)
    out = {"first_sample_ms": [], "redraw_ms": [], "redraw_model_s": []}
    try:
        with sync_playwright() as p:
            context = headless.launch_chromium(p, os.path.join(folder, "profile"))
            page = context.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(url)
            page.fill("#count", str(args.samples))
            for path in files:
                ms, _ = _timed(page, lambda path=path: page.set_input_files("#file", path),
                               "firstSampleMs")  # fmt: skip
                out["first_sample_ms"].append(ms)
                page.wait_for_function("document.getElementById('progress').hidden")
            top = (size[0] - args.region) // 2 // 16 * 16
            left = (size[1] - args.region) // 2 // 16 * 16
            headless.drag_box(page, [left, top, left + args.region, top + args.region], size)
            box = headless.selected_box(page)
            assert box == [left, top, left + args.region, top + args.region], box
            for _ in range(args.repeats + 1):
                ms, model = _timed(page, lambda: page.click("#redraw"), "redrawMs")
                out["redraw_ms"].append(ms)
                out["redraw_model_s"].append(model)
            context.close()
    finally:
        headless.stop_server(process)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", default="runs/demo/export", help="an export directory")
    p.add_argument("--region", type=int, default=128, help="side of the re-drawn region (px)")
    p.add_argument("--samples", type=int, default=4, help="the page's sample count")
    p.add_argument("--repeats", type=int, default=5, help="warm measurements")
    p.add_argument("--out", default=RESULTS)
    args = p.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="jpeg-jax-bench-") as folder:
        out = bench(args, folder)
    load_after = os.getloadavg()
    first, redraw = out["first_sample_ms"], out["redraw_ms"]
    summary = {
        "first_sample_cold_s": first[0] / 1e3,
        "first_sample_warm_median_s": statistics.median(first[1:]) / 1e3,
        "first_sample_warm_min_s": min(first[1:]) / 1e3,
        "redraw_cold_s": redraw[0] / 1e3,
        "redraw_warm_median_s": statistics.median(redraw[1:]) / 1e3,
        "redraw_warm_min_s": min(redraw[1:]) / 1e3,
        "redraw_model_warm_median_s": statistics.median(out["redraw_model_s"][1:]),
    }
    record = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "load_average_before": load_before,
        "load_average_after": load_after,
        "cpu_count": os.cpu_count(),
        "checkpoint": args.checkpoint,
        "photo": "astronaut 512x512, JPEG quality 10",
        "config": {k: getattr(args, k) for k in ("region", "samples", "repeats")},
        "raw": out,
        "summary": summary,
    }
    print(f"explore latency: {args.checkpoint}, 512² JPEG, {args.region}² region; load "
          f"{load_before[0]:.1f} -> {load_after[0]:.1f} on {os.cpu_count()} CPUs")  # fmt: skip
    print("| step | cold (s) | warm median (s) | warm min (s) |\n|---|---:|---:|---:|")
    for name, key in (("first sample on screen", "first_sample"), ("region re-draw", "redraw")):
        s = summary
        print(f"| {name} | {s[key + '_cold_s']:.2f} | {s[key + '_warm_median_s']:.2f} "
              f"| {s[key + '_warm_min_s']:.2f} |")  # fmt: skip
    print(f"re-draw model work (warm median): {summary['redraw_model_warm_median_s']:.2f} s")
    bench_utils.write_json(args.out, record)


if __name__ == "__main__":
    main()
