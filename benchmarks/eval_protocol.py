"""The evaluation protocol's cost: eval.py's work on N test images at 128^2, before and after.

Usage (from the repository root):

    python benchmarks/eval_protocol.py                      # this checkout, 1,000 images
    python benchmarks/eval_protocol.py --code=/tmp/before --images=4 --label=before

Measures ``jpeg_jax.evaluate.evaluate`` end to end (data pipeline, sampling, projection,
consistency, Inception features, FID/KID, figures) on N random 128x128 crops of the photos bundled
with scikit-image, with ``--samples`` samples per image and ``--repeats`` FID samplings. Models:
the demo-size generator (``configs/demo.py``'s 32 features, 2 RRDBs, growth 16; noise on) and the
FID Inception, both with random weights (speed does not depend on their values). ``--code=DIR``
imports ``jpeg_jax`` from another checkout (e.g. ``git archive`` of an older commit) to time the
code before a change; options that code does not know (batch size, reference statistics) are
left out. After the run this script times, with the same code, the FID and KID of one row on
``--images`` x 2048 random features, so that the end-of-run cost of a subset run can be
extrapolated to N images.

For the code of this checkout the reference statistics of a separate set of ``--images`` crops
(``jpeg_jax.fid_stats``) are computed first and timed on their own (``--same_set``: none, FID
against the test images' ground truth as before; the rows can then be compared with a run of
the old code on the same images).

Prints a table and merges ``{label: ...}`` into ``benchmarks/results/eval_protocol.json``.
"""

from __future__ import annotations

import argparse
import os
import sys


def _args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=1000)
    p.add_argument("--reference_images", type=int, default=0, help="default: --images")
    p.add_argument("--samples", type=int, default=16)
    p.add_argument("--repeats", type=int, default=3, help="FID samplings (eval.py --fid_repeats)")
    p.add_argument("--batch_size", type=int, default=8, help="images per generator call")
    p.add_argument("--code", default="", help="import jpeg_jax from this checkout instead")
    p.add_argument("--label", default="after")
    p.add_argument(
        "--same_set",
        action="store_true",
        help="no reference statistics: FID against the test images (as the code before)",
    )
    p.add_argument("--workdir", default="/tmp/jpeg_jax_eval_bench")
    p.add_argument("--out", default="benchmarks/results/eval_protocol.json")
    p.add_argument(
        "--flops",
        action="store_true",
        help="only count XLA's FLOPs of one paper-size generator sample (128^2) and one FID "
        "Inception image (the inputs of the GPU projection in RESULTS.md)",
    )
    return p.parse_args()


ARGS = _args() if __name__ == "__main__" else None
if ARGS is not None and ARGS.code:
    sys.path.insert(0, os.path.abspath(ARGS.code))

from jpeg_jax.platform import configure_xla, restart_with_huge_pages  # noqa: E402

if __name__ == "__main__":
    restart_with_huge_pages()  # XLA:CPU's scratch memory in 2 MiB pages (jpeg_jax.platform)
configure_xla()

import datetime  # noqa: E402
import inspect  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from jpeg_jax import evaluate, export, input_pipeline, metrics  # noqa: E402
from jpeg_jax.datasets import embedded  # noqa: E402
from jpeg_jax.models import Generator, inception  # noqa: E402
from jpeg_jax.models.convert_inception import save_variables  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # benchmarks.*
from benchmarks import bench_utils  # noqa: E402

DEMO_GENERATOR = {"num_feat": 32, "num_block": 2, "num_grow_ch": 16, "noise": True, "film": False}


def make_crops(root: str, count: int, seed: int) -> str:
    """``count`` random square crops (side 128..short side) of the embedded photos, at 128^2."""
    if os.path.isdir(root) and len(os.listdir(root)) == count:
        return root
    os.makedirs(root, exist_ok=True)
    rng = np.random.default_rng(seed)
    photos = [embedded.load_photo(name) for name in embedded.PHOTOS]
    for i in range(count):
        photo = photos[i % len(photos)]
        h, w = photo.shape[:2]
        side = int(rng.integers(128, min(h, w) + 1))
        top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        crop = Image.fromarray(photo[top : top + side, left : left + side])
        crop.resize((128, 128), Image.Resampling.LANCZOS).save(os.path.join(root, f"{i:05d}.png"))
    return root


def random_models(workdir: str) -> tuple[str, str]:
    """Random demo-size generator export and random FID Inception weights."""
    model = Generator(**DEMO_GENERATOR)
    shapes = jax.eval_shape(
        lambda: model.init(
            {"params": jax.random.key(0), "noise": jax.random.key(0)}, np.zeros((1, 16, 16, 3))
        )
    )["params"]
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda s: 0.05 * rng.standard_normal(s.shape).astype(np.float32), shapes)
    path = os.path.join(workdir, "export")
    if not os.path.exists(path):
        export.save(path, DEMO_GENERATOR, params)
    weights = {}
    for key, shape in inception.variable_shapes().items():
        if key.endswith("kernel"):
            weights[key] = rng.standard_normal(shape) * np.sqrt(2 / np.prod(shape[:-1]))
        elif key.endswith(("/var", "scale")):
            weights[key] = rng.uniform(0.8, 1.2, shape)
        else:
            weights[key] = 0.05 * rng.standard_normal(shape)
    inception_path = os.path.join(workdir, "inception.npz")
    save_variables(weights, inception_path)
    return path, inception_path


def data_config(path: str):
    config = input_pipeline.default_data_config()
    config.source, config.path, config.eval_split, config.eval_quality = "folder", path, "all", 5
    config.check_files = False
    if "fid_reference_split" in config:
        config.fid_reference_split = "all"
    return config


def tail_costs(count: int) -> dict:
    """Seconds of the end-of-run statistics on ``count`` x 2048 random features, this code.

    ``fid_pairwise_s``: ``metrics.fid_from_features`` (what the code before ran for every row and
    repeat); ``fid_reference_first_s`` / ``fid_reference_next_s``: a row against reference
    statistics (the first includes the reference's matrix square root, later rows reuse it);
    ``kid_100x1000_s``: KID of one row with 100 subsets of 1000 (sets of max(count, 2000)).
    """
    rng = np.random.default_rng(1)
    real, fake = rng.normal(size=(2, count, inception.FEATURE_DIM)).astype(np.float32)
    out = {}
    t0 = time.perf_counter()
    metrics.fid_from_features(real, fake)
    out["fid_pairwise_s"] = time.perf_counter() - t0
    try:
        from jpeg_jax import fid_stats
    except ImportError:
        fid_stats = None
    if fid_stats is not None:
        reference = fid_stats.ReferenceStatistics.from_features(real)
        t0 = time.perf_counter()
        reference.fid(fake)
        t1 = time.perf_counter()
        reference.fid(fake[::-1])
        out["fid_reference_first_s"] = t1 - t0
        out["fid_reference_next_s"] = time.perf_counter() - t1
    big = rng.normal(size=(2, max(count, 2000), inception.FEATURE_DIM)).astype(np.float32)
    t0 = time.perf_counter()
    metrics.kid(big[0], big[1])
    out["kid_100x1000_s"] = time.perf_counter() - t0
    return out


class PhaseTimer:
    """Wall seconds spent in named functions (wrapped in place; results are waited for)."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}

    def wrap(self, owner, name: str, label: str) -> None:
        original = getattr(owner, name)

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            out = jax.block_until_ready(original(*args, **kwargs))
            self.seconds[label] = self.seconds.get(label, 0.0) + time.perf_counter() - t0
            self.calls[label] = self.calls.get(label, 0) + 1
            return out

        setattr(owner, name, timed)


def instrument() -> PhaseTimer | None:
    """Time the protocol's phases in the code of this checkout (None for older code)."""
    if not hasattr(evaluate, "sample_images"):
        return None
    from jpeg_jax import jpeg, sampling

    timer = PhaseTimer()
    timer.wrap(evaluate, "sample_images", "generator")
    timer.wrap(sampling, "project_exact", "projection")
    timer.wrap(jpeg, "consistency", "consistency (libjpeg round trip)")
    timer.wrap(jpeg, "read_jpeg", "read_jpeg")
    timer.wrap(metrics.InceptionFeatureExtractor, "resize", "inception resize")
    timer.wrap(metrics.InceptionFeatureExtractor, "features_of_resized", "inception network")
    timer.wrap(evaluate, "_add_fid", "FID and KID (end of run)")
    timer.wrap(evaluate, "_write_figures", "figures")
    return timer


def run(args) -> dict:
    workdir = args.workdir
    test = make_crops(os.path.join(workdir, "test"), args.images, seed=0)
    export_path, inception_path = random_models(workdir)
    supported = inspect.signature(evaluate.evaluate).parameters
    kwargs = {"num_samples": args.samples, "fid_repeats": args.repeats}
    kwargs["inception_path"] = inception_path
    record = {"images": args.images, "samples": args.samples, "repeats": args.repeats}
    if "batch_size" in supported:
        kwargs["batch_size"] = args.batch_size
        record["batch_size"] = args.batch_size
    if "fid_reference" in supported and not args.same_set:
        from jpeg_jax import fid_stats

        count = args.reference_images or args.images
        reference = make_crops(os.path.join(workdir, "reference"), count, seed=1)
        stats = os.path.join(workdir, f"reference_{count}.npz")
        if os.path.exists(stats):
            os.remove(stats)
        extractor = metrics.InceptionFeatureExtractor.from_file(inception_path)
        t0 = time.perf_counter()
        fid_stats.load_or_compute(stats, data_config(reference), extractor, inception_path)
        record["reference_s"] = time.perf_counter() - t0
        record["reference_images"] = count
        kwargs["fid_reference"] = stats
    out = os.path.join(workdir, f"out_{args.label}")
    timer = instrument()
    t0 = time.perf_counter()
    result = evaluate.evaluate(export_path, data_config(test), out, **kwargs)
    record["eval_s"] = time.perf_counter() - t0
    if timer is not None:
        record["phases_s"], record["phase_calls"] = timer.seconds, timer.calls
    record["eval_s_per_image"] = record["eval_s"] / args.images
    record["rows"] = result["rows"]
    record.update(tail_costs(args.images))
    return record


def flop_counts() -> dict:
    """XLA's FLOP counts: paper-size generator, one 128^2 sample; FID Inception, one image.

    The generator is counted unrolled: XLA's cost analysis counts a ``lax.scan`` body once.
    """
    model = Generator()
    shapes = jax.eval_shape(
        lambda: model.init(
            {"params": jax.random.key(0), "noise": jax.random.key(0)}, np.zeros((1, 16, 16, 3))
        )
    )
    y = jax.ShapeDtypeStruct((1, 128, 128, 3), np.float32)
    sample = jax.jit(lambda v, y: model.apply(v, y, rngs={"noise": jax.random.key(0)}))
    g = sample.lower(shapes, y).cost_analysis()["flops"]
    net = inception.FIDInceptionV3()
    variables = jax.eval_shape(
        net.init, jax.random.key(0), jax.ShapeDtypeStruct((1, 128, 128, 3), np.float32)
    )
    batch = jax.ShapeDtypeStruct((50, 128, 128, 3), np.float32)
    i = jax.jit(net.apply).lower(variables, batch).cost_analysis()["flops"] / 50
    return {"generator_gflop_per_sample_128": g / 1e9, "inception_gflop_per_image": i / 1e9}


def main() -> None:
    args = ARGS
    if args.flops:
        counts = flop_counts()
        print(json.dumps(counts, indent=2))
        _merge(args.out, "flops", counts)
        return
    record = run(args)
    record.update(
        date=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        machine=bench_utils.machine(),
        load=os.getloadavg(),
        backend=jax.default_backend(),
        code=os.path.abspath(args.code) if args.code else "this checkout",
        generator=f"{DEMO_GENERATOR} random weights; FID Inception random weights",
    )
    print(f"eval protocol ({args.label}): {args.images} images 128^2, {args.samples} samples")
    print("| measure | value |\n|---|---|")
    keys = ("reference_s", "eval_s", "eval_s_per_image", "fid_pairwise_s")
    keys += ("fid_reference_first_s", "fid_reference_next_s", "kid_100x1000_s")
    for key in keys:
        if key in record:
            print(f"| {key} | {record[key]:.4g} |")
    for phase, seconds in record.get("phases_s", {}).items():
        print(f"| in {phase} | {seconds:.4g} s ({record['phase_calls'][phase]} calls) |")
    _merge(args.out, args.label, record)


def _merge(path: str, label: str, record: dict) -> None:
    """Add ``{label: record}`` to the JSON file (other labels kept)."""
    results = {}
    if os.path.exists(path):
        with open(path) as f:
            results = json.load(f)
    results[label] = record
    bench_utils.write_json(path, results, default=float)


if __name__ == "__main__":
    main()
