"""Cost of one demo training step by model size, batch and patch size (regression and GAN).

Usage (from the repository root; a few minutes on 2 CPU cores):

    python benchmarks/demo_steps.py
    python benchmarks/demo_steps.py --repeats 30
    python benchmarks/demo_steps.py --base-only --stack unrolled   # demo size, RRDBs unrolled

For each case (generator width / RRDBs / growth, batch, patch), compiles the demo's training
step (``configs/demo.py`` with those overrides) as ``train.py`` does, on synthetic batches, and
times ``--repeats`` steps after one warm-up step, cases interleaved round by round (the minimum
over rounds is kept, so load changes hit all cases alike). Reports milliseconds per step, per
1000 training pixels, and CPU seconds per step (process time / steps). Kinds of step: a
regression warm-up step (G on MSE), the same with the critic trained on G's output
(``regression_warmup_critic_steps``), a GAN step, and a GAN step with the FM moments. The first
call of each (XLA's compilation plus one step) is reported as the compile time. ``--stack``
runs the RRDBs as the config says (scanned, ``model.generator.scan``), or scanned or unrolled
for every case.

Prints a table and writes ``benchmarks/results/demo_steps.json``.
"""

from __future__ import annotations

from jpeg_jax.platform import configure_xla, restart_with_huge_pages

if __name__ == "__main__":
    restart_with_huge_pages()  # as train.py
configure_xla()

import argparse  # noqa: E402
import datetime  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks import bench_utils  # noqa: E402
from configs import demo as demo_config  # noqa: E402
from jpeg_jax import jpeg, train_state, train_step  # noqa: E402

RESULTS = os.path.join(ROOT, "benchmarks", "results", "demo_steps.json")
# (num_feat, num_block, num_grow_ch, batch, patch) -> kinds of step timed
BASE = (32, 2, 16, 8, 32)
CASES = {
    BASE: ("regression", "warmup_critic", "gan", "gan_fm"),
    (32, 2, 16, 16, 32): ("regression",),
    (32, 2, 16, 4, 64): ("regression",),
    (32, 1, 16, 8, 32): ("regression",),
    (48, 1, 24, 8, 32): ("regression",),
}
STATIC = {  # (moments, warmup, critic_learns) of the compiled step
    "regression": (False, True, False),
    "warmup_critic": (False, True, True),
    "gan": (False, False, True),
    "gan_fm": (True, False, True),
}


def batch_of(batch: int, patch: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, (batch, patch, patch, 3)).astype(np.float32)
    x = np.round(x * 255) / 255
    qtables = np.broadcast_to(np.asarray(jpeg.quality_to_qtables(10)), (batch, 2, 8, 8))
    y = np.asarray(jpeg.compress(x, qtables), np.float32)
    return {"x": x, "y": y, "qtables": np.array(qtables, np.int32)}


def build(case, kind: str, stack: str = "config"):
    """(compiled step, state, batch, static args) for one case; ``stack``: "config", "scan" or
    "unrolled" (the RRDBs' ``model.generator.scan``)."""
    feat, blocks, grow, batch, patch = case
    config = demo_config.get_config()
    config.batch_size, config.data.patch_size = batch, patch
    g = config.model.generator
    g.num_feat, g.num_block, g.num_grow_ch = feat, blocks, grow
    if stack != "config":
        g.scan = stack == "scan"
    models = train_state.make_models(config)
    optimizers = train_state.make_optimizers(config)
    mesh = train_step.make_mesh(jax.devices()[:1])
    state = train_step.replicate(
        mesh, train_state.init_state(config, models, optimizers, jax.random.key(0))
    )
    step = train_step.compile_step(
        train_step.make_train_step(config, models, optimizers), mesh, state
    )
    data = train_step.global_batch(mesh, batch_of(batch, patch))
    return step, state, data, STATIC[kind]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--stack",
        choices=("config", "scan", "unrolled"),
        default="config",
        help="RRDB stacking: the demo config's (scanned), or scanned/unrolled for every case",
    )
    parser.add_argument("--base-only", action="store_true", help="only the demo's own size")
    parser.add_argument("--out", default=RESULTS, help="JSON file to write")
    args = parser.parse_args()
    runs, compile_s = {}, {}
    cases = {BASE: CASES[BASE]} if args.base_only else CASES
    for case, kinds in cases.items():
        for kind in kinds:
            step, state, data, static = build(case, kind, args.stack)
            t0 = time.perf_counter()
            state, m = step(state, data, jax.random.key(1), *static)  # compile + warm up
            jax.block_until_ready(m)
            compile_s[(case, kind)] = time.perf_counter() - t0
            runs[(case, kind)] = [step, state, data, static, [], []]
    for _ in range(args.rounds):
        for run in runs.values():
            step, state, data, static, walls, cpus = run
            w0, c0 = time.perf_counter(), time.process_time()
            for _ in range(args.repeats):
                state, m = step(state, data, jax.random.key(1), *static)
            jax.block_until_ready(m)
            walls.append((time.perf_counter() - w0) / args.repeats)
            cpus.append((time.process_time() - c0) / args.repeats)
            run[1] = state
    load = bench_utils.load_average()
    rows = []
    print(f"load average {' '.join(f'{v:.2f}' for v in load)}; RRDB stacking: {args.stack}")
    print(
        "| feat/blocks/grow | batch x patch² | kind | ms/step | ms per 1000 px | CPU s/step "
        "| compile + 1st step s |"
    )
    print("|---|---|---|---:|---:|---:|---:|")
    for (case, kind), (_, _, _, _, walls, cpus) in runs.items():
        feat, blocks, grow, batch, patch = case
        wall, cpu = min(walls), min(cpus)
        pixels = batch * patch * patch
        rows.append(
            {
                "num_feat": feat,
                "num_block": blocks,
                "num_grow_ch": grow,
                "batch": batch,
                "patch": patch,
                "kind": kind,
                "ms_per_step": 1e3 * wall,
                "ms_per_kpixel": 1e6 * wall / pixels,
                "cpu_s_per_step": cpu,
                "compile_s": compile_s[(case, kind)],
            }
        )
        print(
            f"| {feat}/{blocks}/{grow} | {batch} x {patch}² | {kind} | {1e3 * wall:.1f} | "
            f"{1e6 * wall / pixels:.2f} | {cpu:.3f} | {compile_s[(case, kind)]:.1f} |"
        )
    out = {
        "date_utc": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M"),
        "load_average": load,
        "repeats": args.repeats,
        "rounds": args.rounds,
        "stack": args.stack,
        "rows": rows,
    }
    bench_utils.write_json(args.out, out)


if __name__ == "__main__":
    main()
