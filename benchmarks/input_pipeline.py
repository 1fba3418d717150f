"""Input-pipeline throughput: training patches per second on this machine's CPUs.

Usage (from the repository root; about two minutes):

    python benchmarks/input_pipeline.py                 # all sources, stage breakdown, knobs
    python benchmarks/input_pipeline.py --seconds 5 --sources png128

Sources, generated into a temporary directory from the embedded photos (no download):
(a) ``png128``: 128 x 128 PNGs (FFHQ-128-like), (b) ``jpeg03mp``: 640 x 480 JPEGs at QF 90
(~0.3 megapixel, ImageNet-like), (c) ``embedded``: the embedded photos themselves.

Stages, each a pipeline of its own with the same parallelism, so the differences say where the
time goes: ``read+decode`` (file read and full decode), ``patch`` (+ crop, resize to 128,
flip; JPEG sources decode only the crop window), ``full`` (the real training pipeline: + libjpeg
encode/decode at a blind QF, tables, batching to float32, to numpy). Prints a table and writes
``benchmarks/results/input_pipeline.json``.
"""

from __future__ import annotations

from jpeg_jax.platform import configure_xla

configure_xla()

import argparse  # noqa: E402
import os  # noqa: E402
import pathlib  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402

from jpeg_jax import input_pipeline  # noqa: E402
from jpeg_jax.datasets import embedded, transforms  # noqa: E402
from jpeg_jax.platform import hide_accelerators_from_tensorflow  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # benchmarks.*
from benchmarks import bench_utils  # noqa: E402

PATCH, BATCH = 128, 64


def make_sources(root: pathlib.Path, count: int) -> dict[str, str]:
    """Writes the (a) and (b) file sources from random crops of the embedded photos."""
    rng = np.random.default_rng(0)
    photos = [image for _, image in embedded.load_split("all")]
    specs = {"png128": ((128, 128), "png"), "jpeg03mp": ((480, 640), "jpg")}
    for name, ((height, width), ext) in specs.items():
        (root / name).mkdir()
        for k in range(count):
            photo = photos[k % len(photos)]
            scale = max(height / photo.shape[0], width / photo.shape[1], 0.5)
            side_h, side_w = int(height / scale), int(width / scale)
            top = rng.integers(0, photo.shape[0] - min(side_h, photo.shape[0]) + 1)
            left = rng.integers(0, photo.shape[1] - min(side_w, photo.shape[1]) + 1)
            crop = Image.fromarray(photo[top : top + side_h, left : left + side_w])
            crop = crop.resize((width, height), Image.Resampling.BICUBIC)
            options = {"quality": 90} if ext == "jpg" else {}
            crop.save(root / name / f"{k:05d}.{ext}", **options)
    return {name: str(root / name) for name in specs}


def _items(config) -> tf.data.Dataset:
    """Encoded bytes of the source, repeated, as the training pipeline reads them."""
    source = input_pipeline.open_source(config, "all", process_index=0, process_count=1)
    dataset = tf.data.Dataset.from_tensor_slices(source.items).repeat()
    if source.items_are_paths:
        dataset = dataset.map(tf.io.read_file, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset


def stage_dataset(config, stage: str, threads: int) -> tf.data.Dataset:
    """The pipeline up to one stage, batched, for timing."""
    if stage == "full":
        return input_pipeline.build_train_dataset(
            config, batch_size_per_process=BATCH, seed=0, process_index=0, process_count=1
        )
    dataset = _items(config)
    if stage == "read+decode":
        fn = lambda data: tf.shape(transforms.decode(data))  # noqa: E731
    else:
        fn = lambda data: transforms.random_patch(  # noqa: E731
            data, tf.random.uniform([2], 0, 2**30, tf.int64), PATCH
        )
    dataset = dataset.map(fn, num_parallel_calls=threads, deterministic=True)
    return dataset.batch(BATCH).prefetch(tf.data.AUTOTUNE)


def measure(dataset: tf.data.Dataset, seconds: float) -> tuple[float, float]:
    """Items per second (wall clock) and process CPU milliseconds per item, after a warm-up.

    On a shared machine the wall-clock rate depends on the neighbours' load; CPU time per item
    does much less, and ``cores * 1000 / cpu_ms`` is what this pipeline could do alone.
    """
    iterator = dataset.as_numpy_iterator()
    for _ in range(3):
        next(iterator)
    count, start, cpu_start = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - start < seconds:
        next(iterator)
        count += BATCH
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return count / wall, 1e3 * cpu / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per measurement")
    parser.add_argument("--sources", default="png128,jpeg03mp,embedded")
    parser.add_argument("--files", type=int, default=256, help="files per generated source")
    parser.add_argument("--out", default="benchmarks/results/input_pipeline.json")
    args = parser.parse_args()
    hide_accelerators_from_tensorflow()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folders = make_sources(pathlib.Path(tmp), args.files)
        for name in args.sources.split(","):
            config = input_pipeline.default_data_config()
            config.update(patch_size=PATCH, quality_mode="blind", train_split="all")
            if name != "embedded":
                config.update(source="folder", path=folders[name])
            variants = [(stage, -1) for stage in ("read+decode", "patch", "full")]
            variants.append(("full", 2))  # knob: fixed 2 threads instead of AUTOTUNE
            for stage, threads in variants:
                config.num_parallel_calls = threads
                dataset = stage_dataset(config, stage, tf.data.AUTOTUNE if threads < 0 else threads)
                rate, cpu_ms = measure(dataset, args.seconds)
                row = {"source": name, "stage": stage, "threads": threads, "per_s": rate}
                row.update(cpu_ms=cpu_ms, per_s_2cores_cpu_bound=2e3 / cpu_ms)
                rows.append(row)
                print(
                    f"{name:10s} {stage:12s} threads={'auto' if threads < 0 else threads:4} "
                    f"{rate:7.0f} /s wall  {cpu_ms:6.3f} CPU-ms each  "
                    f"{2e3 / cpu_ms:7.0f} /s on 2 free cores",
                    flush=True,
                )
    info = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": bench_utils.machine(),
        "cpus": os.cpu_count(),
        "loadavg_1min": os.getloadavg()[0],
        "tensorflow": tf.__version__,
        "batch": BATCH,
        "patch": PATCH,
        "rows": rows,
    }
    bench_utils.write_json(args.out, info)
    print(f"load average {info['loadavg_1min']:.1f} on {info['cpus']} CPUs")


if __name__ == "__main__":
    main()
