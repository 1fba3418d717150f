"""Held-out metrics of a training run's checkpoints: how a demo model moves while it trains.

Usage (from the repository root, after demo trainings, e.g. ``python -m jpeg_jax.demo_table``):

    python benchmarks/demo_checkpoints.py runs/demo/regression:3000,4000,4500 runs/demo:4500

Each ``WORKDIR:STEPS`` names a ``train.py`` working directory and checkpoint steps. The EMA
generator of each checkpoint is exported (cached under ``runs/demo_checkpoints/``) and restores the
photos of ``benchmarks/demo_variants.py`` (the held-out ``astronaut`` and three photos outside the
embedded set) at QF 10: its deterministic output (the noise-free path, what a regression model is
evaluated on) and 4 samples. Per photo: PSNR, the round-trip consistency RMSE (grey levels) and its
split into the JPEG's colour components (Y, Cb, Cr of the round-trip error), in-bin %.

Prints a table and merges results into ``benchmarks/results/demo_checkpoints.json``.
"""

from __future__ import annotations

from jpeg_jax.platform import configure_xla

configure_xla()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import bench_utils  # noqa: E402
from benchmarks.demo_variants import PHOTOS, load_photo  # noqa: E402
from jpeg_jax import demo, export, export_checkpoint  # noqa: E402
from jpeg_jax.jpeg.consistency import libjpeg_compress  # noqa: E402

QUALITY = 10
NUM_SAMPLES = 4
CACHE = os.path.join("runs", "demo_checkpoints")
OUT = os.path.join("benchmarks", "results", "demo_checkpoints.json")
# Rows of jpeg_jax's RGB -> YCbCr (JFIF), for the colour split of the round-trip error.
YCBCR = np.array(
    [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]],
    np.float32,
)


def export_step(workdir: str, step: int) -> str:
    """Export directory of ``workdir``'s checkpoint ``step`` (written once, then reused)."""
    key = os.path.abspath(workdir).strip("/").replace("/", "_")
    out = os.path.join(CACHE, f"{key}_{step}")
    if os.path.exists(os.path.join(out, "model.json")):
        return out
    try:
        export_checkpoint.export_latest_checkpoint(workdir, out, step=step)
    except export.ExportError as e:
        raise SystemExit(f"error: {e}") from None
    return out


def metrics(images: np.ndarray, x: np.ndarray, image) -> dict[str, float]:
    """The table's metrics of ``(N, H, W, 3)`` restorations plus the Y/Cb/Cr consistency split."""
    values = demo.image_metrics(images, x / np.float32(255.0), image)
    trip = libjpeg_compress(jnp.asarray(images), image.qtables, subsampling=image.subsampling)
    error = np.asarray(trip, np.float32) - image.pixels.astype(np.float32)
    for name, row in zip(("y", "cb", "cr"), YCBCR, strict=True):
        values[f"consistency_{name}"] = float(np.sqrt(np.mean(np.square(error @ row))))
    return values


def evaluate(path: str) -> dict:
    model = export.load(path)
    results = {}
    for name in PHOTOS:
        x = load_photo(name)
        image = demo.encode_photo(x, QUALITY)
        det = demo.draw_samples(model, image, 1, deterministic=True)
        samples = demo.draw_samples(model, image, NUM_SAMPLES, seed=0)
        results[name] = {
            "deterministic": metrics(det, x, image),
            "samples": metrics(samples, x, image),
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="WORKDIR:STEP[,STEP...]")
    args = parser.parse_args()
    record = {}
    if os.path.exists(OUT):
        with open(OUT) as f:
            record = json.load(f)
    record.setdefault("runs", {})
    record["machine"] = bench_utils.machine()
    record["date"] = bench_utils.utc_now()
    print(
        "| run | step | photo | PSNR | consistency | Y | Cb | Cr | in-bin % | PSNR, 4 samples"
        " | consistency, 4 samples |"
    )
    print("|---|---:|---|" + "---:|" * 8)
    for spec in args.runs:
        workdir, _, steps = spec.rpartition(":")
        if not workdir or not steps:
            raise SystemExit(f"error: {spec!r} is not WORKDIR:STEP[,STEP...]")
        for step in (int(s) for s in steps.split(",")):
            result = evaluate(export_step(workdir, step))
            record["runs"][f"{os.path.abspath(workdir)}:{step}"] = result
            for photo, r in result.items():
                d, s = r["deterministic"], r["samples"]
                keys = ("psnr", "consistency_rmse", "consistency_y", "consistency_cb")
                cells = [f"{d[k]:.2f}" for k in (*keys, "consistency_cr", "in_bin")]
                cells += [f"{s['psnr']:.2f}", f"{s['consistency_rmse']:.2f}"]
                print(f"| {workdir} | {step} | {photo} | " + " | ".join(cells) + " |", flush=True)
    bench_utils.write_json(OUT, record)


if __name__ == "__main__":
    main()
