"""Single-convolution speed on XLA:CPU: forward, d/dx and d/dkernel (two formulations).

Usage (from the repository root; about two minutes on 2 cores):

    python benchmarks/conv_grads.py

For the paper generator's convolution shapes (3x3, 64^2 after the pixel unshuffle; RDB inputs
with the noise channel, 65-193 channels) it times, interleaved round by round:
- ``fwd``: the convolution itself;
- ``dx``: its input gradient as ``jpeg_jax.models.ops.conv_backward`` computes it;
- ``dk_plain``: the weight gradient in the canonical form XLA would build (image channels as
  the batch, the image batch as the contracted features);
- ``dk``: ``jpeg_jax.models.ops.kernel_grad`` (fewer-channel operand as the image, row
  slabs in the features), what the generator uses on CPU.
Prints a table of GFLOP/s and writes ``benchmarks/results/conv_grads.json``.
"""

from __future__ import annotations

from jpeg_jax.platform import configure_xla, restart_with_huge_pages

if __name__ == "__main__":
    restart_with_huge_pages()  # XLA:CPU's scratch memory in 2 MiB pages (jpeg_jax.platform)
configure_xla()

import argparse  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from functools import partial  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from jpeg_jax.models import ops  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # benchmarks.*
from benchmarks import bench_utils  # noqa: E402

SHAPES = (  # (batch, side, in channels, out channels)
    (4, 64, 65, 32),
    (4, 64, 129, 32),
    (4, 64, 193, 64),
    (4, 64, 32, 32),
    (4, 64, 32, 64),
    (4, 128, 65, 64),
    (1, 64, 129, 32),
    (1, 64, 193, 64),
    (8, 64, 129, 32),
)
TINY_SHAPES = ((2, 8, 9, 4),)


def dk_plain(x, g):
    """d/dkernel with the image batch as the contracted features (XLA's canonical form)."""
    out = ops.conv_same(x.transpose(3, 1, 2, 0), g.transpose(1, 2, 0, 3), None, ((1, 1),) * 2)
    return out.transpose(1, 2, 0, 3)


def dx(x, g, k):
    """d/dx as the generator computes it on CPU (the unused d/dkernel is dropped by XLA)."""
    return ops.conv_backward(None, ((x,), k), g)[0][0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=7, help="timed rounds (median)")
    parser.add_argument("--out", default="benchmarks/results/conv_grads.json")
    parser.add_argument(
        "--tiny", action="store_true", help="one small shape, for the test suite (not a timing)"
    )
    args = parser.parse_args()
    rows = []
    for b, s, cin, cout in TINY_SHAPES if args.tiny else SHAPES:
        keys = jax.random.split(jax.random.key(0), 3)
        x = jax.random.normal(keys[0], (b, s, s, cin))
        g = jax.random.normal(keys[1], (b, s, s, cout))
        k = jax.random.normal(keys[2], (3, 3, cin, cout))
        fns = {
            "fwd": (jax.jit(ops.conv_same), x, k),
            "dx": (jax.jit(partial(dx, x)), g, k),
            "dk_plain": (jax.jit(dk_plain), x, g),
            "dk": (jax.jit(lambda x, g: ops.kernel_grad(x, g, 3)), x, g),
        }
        _, vjp = jax.vjp(ops.conv_same, x, k)  # XLA's own gradients, the reference
        ref_dx, ref_dk = vjp(g)
        for name, ref in (("dx", ref_dx), ("dk", ref_dk), ("dk_plain", ref_dk)):
            fn, a0, a1 = fns[name]
            scale = float(jnp.max(jnp.abs(ref)))
            np.testing.assert_allclose(fn(a0, a1), ref, rtol=1e-4, atol=1e-5 * scale, err_msg=name)
        times = {name: [] for name in fns}
        for fn, a0, a1 in fns.values():
            jax.block_until_ready(fn(a0, a1))
        for _ in range(args.iters):
            for name, (fn, a0, a1) in fns.items():
                t0 = time.perf_counter()
                jax.block_until_ready(fn(a0, a1))
                times[name].append(time.perf_counter() - t0)
        gflop = 2 * b * s * s * 9 * cin * cout / 1e9
        row = {"batch": b, "side": s, "cin": cin, "cout": cout, "gflop": gflop}
        for name, t in times.items():
            row[f"{name}_ms"] = float(np.median(t)) * 1e3
            row[f"{name}_gflops"] = gflop / float(np.median(t))
        rows.append(row)
        print(
            f"batch {b} {s}^2 {cin:3d}->{cout:3d}: "
            + " | ".join(f"{n} {row[f'{n}_gflops']:5.0f}" for n in fns)
            + " GFLOP/s",
            flush=True,
        )
    print("\n| batch | side | in -> out | fwd | dx | dk (plain) | dk (slabs) | dk speed-up |")
    print("|---:|---:|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['batch']} | {r['side']} | {r['cin']} -> {r['cout']} | {r['fwd_gflops']:.0f} | "
            f"{r['dx_gflops']:.0f} | {r['dk_plain_gflops']:.0f} | {r['dk_gflops']:.0f} | "
            f"{r['dk_plain_ms'] / r['dk_ms']:.2f}x |"
        )
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "loadavg": os.getloadavg(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
        "unit": "GFLOP/s (2 x multiply-adds / median time)",
        "rows": rows,
    }
    bench_utils.write_json(args.out, result)


if __name__ == "__main__":
    main()
