"""Posterior sampling speed of the paper-size generator: tiled vs untiled, batched vs sequential.

Usage (from the repository root; about 5 minutes on 2 CPU cores, half of it compilation):

    python benchmarks/sampling.py
    python benchmarks/sampling.py --size 480 --tile 256 --overlap 32 --repeats 3

Measures ``jpeg_jax.sampling.restore`` end to end (generator, blending, host copies) with the
paper-size ``Generator()`` (noise on, random weights: speed does not depend on their values):

- seconds per megapixel per sample, untiled vs tiled, on a ``size x size`` image; the tiling
  overhead is reported as measured, as its geometric part (pixels processed / image pixels), and
  projected to the CLI's default tiling (1024 / 64) on large images;
- samples per second for ``batch`` samples of a ``tile x tile`` image drawn at once (vmapped
  over noise keys) vs one at a time.

Prints a table and writes ``benchmarks/results/sampling.json``.
"""

from __future__ import annotations

from jpeg_jax.platform import configure_xla, restart_with_huge_pages

if __name__ == "__main__":
    restart_with_huge_pages()  # XLA:CPU's scratch memory in 2 MiB pages (jpeg_jax.platform)
configure_xla()

import argparse  # noqa: E402
import datetime  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402

from jpeg_jax import sampling  # noqa: E402
from jpeg_jax.models import Generator  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # benchmarks.*
from benchmarks import bench_utils  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "sampling.json")
CLI_TILE, CLI_OVERLAP = 1024, 64


def random_params(model: Generator, seed: int = 0):
    """Random weights of the right shapes without compiling ``init`` (a minute at paper size)."""
    shapes = jax.eval_shape(
        lambda: model.init(
            {"params": jax.random.key(0), "noise": jax.random.key(0)}, np.zeros((1, 16, 16, 3))
        )
    )["params"]
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: (0.02 * rng.standard_normal(s.shape)).astype(s.dtype), shapes)


def compare(runs: dict, repeats: int) -> dict:
    """Fastest wall and CPU seconds of each run over ``repeats`` rounds, after a warm-up round.

    The rounds interleave the runs and keep the minimum: on a machine shared with other users,
    load changes during the benchmark hit every variant alike, and the minimum is the least
    disturbed time. Process CPU time is reported beside wall time for the same reason.
    """
    times = bench_utils.timed_rounds(runs, rounds=repeats, warmup=True)
    return {name: (min(t["wall"]), min(t["cpu"])) for name, t in times.items()}


def restorer(model, params, pixels, num: int = 1, **kwargs):
    """A closure drawing ``num`` samples of ``pixels`` with ``restore``."""
    qtables = np.ones((2, 8, 8), np.int32)
    return lambda: sampling.restore(
        (model, params), pixels, num, jax.random.key(0), qtables=qtables, **kwargs
    )


def processed_pixels(size: int, tile: int, overlap: int) -> int:
    """Pixels the generator sees when a ``size x size`` image is tiled."""
    per_axis = len(sampling.tile_origins(size, tile, overlap)) * min(tile, size)
    return per_axis**2


def bench(args) -> dict:
    model = Generator()
    params = random_params(model)
    image = np.random.default_rng(1).uniform(size=(args.size, args.size, 3)).astype(np.float32)
    megapixels = args.size**2 / 1e6
    small = image[: args.tile, : args.tile]
    t = compare(
        {
            "untiled": restorer(model, params, image),
            "tiled": restorer(model, params, image, tile=args.tile, overlap=args.overlap),
            "sequential": restorer(model, params, small, args.batch, batch_size=1),
            "batched": restorer(model, params, small, args.batch, batch_size=args.batch),
        },
        args.repeats,
    )
    geometric = processed_pixels(args.size, args.tile, args.overlap) / args.size**2
    asymptotic = (CLI_TILE / (CLI_TILE - CLI_OVERLAP)) ** 2
    out = {}
    for i, clock in enumerate(("wall", "cpu")):
        untiled, tiled = t["untiled"][i], t["tiled"][i]
        efficiency = tiled / untiled / geometric  # per processed pixel, tiled vs untiled
        out[clock] = {
            "untiled_s_per_mp_per_sample": untiled / megapixels,
            "tiled_s_per_mp_per_sample": tiled / megapixels,
            "tiling_overhead_pct": 100 * (tiled / untiled - 1),
            "per_pixel_overhead_pct": 100 * (efficiency - 1),
            "projected_cli_overhead_pct": 100 * (asymptotic * efficiency - 1),
            "sequential_samples_per_s": args.batch / t["sequential"][i],
            "batched_samples_per_s": args.batch / t["batched"][i],
        }
    out["geometric_overhead_pct"] = 100 * (geometric - 1)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=240, help="image side (untiled vs tiled)")
    p.add_argument("--tile", type=int, default=128)
    p.add_argument("--overlap", type=int, default=16)
    p.add_argument("--batch", type=int, default=4, help="samples for batched vs sequential")
    p.add_argument("--repeats", type=int, default=2, help="timed rounds (best is kept)")
    p.add_argument("--out", default=RESULTS)
    args = p.parse_args()
    results = bench(args)
    config = {k: getattr(args, k) for k in ("size", "tile", "overlap", "batch", "repeats")}
    record = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": bench_utils.machine(),
        "backend": jax.default_backend(),
        "jax": jax.__version__,
        "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
        "generator": "Generator() paper size, noise on, float32",
        "config": config,
        "results": results,
    }
    w, c = results["wall"], results["cpu"]
    rows = [
        (f"untiled {args.size}^2, s / MP / sample", "untiled_s_per_mp_per_sample"),
        (f"tiled {args.tile}/{args.overlap}, s / MP / sample", "tiled_s_per_mp_per_sample"),
        ("tiling overhead, measured %", "tiling_overhead_pct"),
        ("  per processed pixel %", "per_pixel_overhead_pct"),
        (f"  projected to CLI tiles {CLI_TILE}/{CLI_OVERLAP} %", "projected_cli_overhead_pct"),
        (f"one at a time, samples/s ({args.tile}^2)", "sequential_samples_per_s"),
        (f"batched x{args.batch} (vmap), samples/s", "batched_samples_per_s"),
    ]
    print(f"sampling: {record['machine']}, {record['backend']}, best of {args.repeats}")
    print("| measure | wall | CPU time |\n|---|---|---|")
    for name, key in rows:
        print(f"| {name} | {w[key]:.3g} | {c[key]:.3g} |")
    print(f"| geometric overhead (extra pixels) % | {results['geometric_overhead_pct']:.3g} | |")
    bench_utils.write_json(args.out, record)


if __name__ == "__main__":
    main()
