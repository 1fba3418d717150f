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
from jpeg_jax.jpeg.color import rgb_to_ycbcr  # noqa: E402
from jpeg_jax.jpeg.consistency import libjpeg_compress  # noqa: E402

QUALITY = 10
NUM_SAMPLES = 4
CACHE = os.path.join("runs", "demo_checkpoints")
OUT = os.path.join("benchmarks", "results", "demo_checkpoints.json")


def export_dir(workdir: str, step: int) -> str:
    """The cached export of ``workdir``'s checkpoint ``step``."""
    key = os.path.abspath(workdir).strip("/").replace("/", "_")
    return os.path.join(CACHE, f"{key}_{step}")


def is_cached(workdir: str, step: int) -> bool:
    """Whether that export is on disk."""
    return os.path.exists(os.path.join(export_dir(workdir, step), "model.json"))


def parse_runs(specs: list[str]) -> list[tuple[str, int]]:
    """The ``(workdir, step)`` pairs of ``WORKDIR:STEP[,STEP...]`` specs, each one with a cached
    export or a complete checkpoint in a training directory.

    Raises:
      ValueError: a spec not of that form, or a step with neither.
    """
    runs = []
    for spec in specs:
        workdir, _, steps = spec.rpartition(":")
        try:
            numbers = [int(s) for s in steps.split(",")]
        except ValueError:
            numbers = []
        if not workdir or not numbers:
            raise ValueError(f"{spec!r} is not WORKDIR:STEP[,STEP...]")
        missing = [step for step in numbers if not is_cached(workdir, step)]
        if missing:
            try:
                export_checkpoint.check_steps(workdir, missing)
            except export.ExportError as e:
                raise ValueError(str(e)) from None
        runs += [(workdir, step) for step in numbers]
    return runs


def export_step(workdir: str, step: int) -> str:
    """Export directory of ``workdir``'s checkpoint ``step`` (written once, then reused)."""
    out = export_dir(workdir, step)
    if is_cached(workdir, step):
        return out
    try:
        export_checkpoint.export_run(workdir, out, step=step)
    except export.ExportError as e:
        raise SystemExit(f"error: {e}") from None
    return out


def metrics(images: np.ndarray, x: np.ndarray, image) -> dict[str, float]:
    """The table's metrics of ``(N, H, W, 3)`` restorations plus the Y/Cb/Cr consistency split."""
    values = demo.image_metrics(images, x / np.float32(255.0), image)
    trip = libjpeg_compress(jnp.asarray(images), image.qtables, subsampling=image.subsampling)
    # The Y, Cb, Cr of the error are the differences of the planes (their chroma offsets cancel).
    planes = (
        rgb_to_ycbcr(np.asarray(trip, np.float32)),
        rgb_to_ycbcr(image.pixels.astype(np.float32)),
    )
    for name, got, want in zip(("y", "cb", "cr"), *planes, strict=True):
        values[f"consistency_{name}"] = float(np.sqrt(np.mean(np.square(got - want))))
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
    try:
        runs = parse_runs(args.runs)
    except ValueError as e:
        parser.error(str(e))
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
    for workdir, step in runs:
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
