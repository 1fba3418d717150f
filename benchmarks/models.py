"""Paper-scale generator speed on CPU, beside BasicSR's PyTorch RRDBNet, and train-step memory.

Usage (from the repository root; a few minutes on 2 cores):

    python benchmarks/models.py                  # speed table, JAX vs torch (if installed)
    python benchmarks/models.py --memory         # + compiled memory of a G+D step, batch 32
    python benchmarks/models.py --variants loop,split,scan,scan_remat --skip-torch
    python benchmarks/models.py --cases "" --skip-torch --remat-memory   # remat memory only
    python benchmarks/models.py --variants split --cases fwdbwd_b4 --malloc huge,kept

Torch and the JAX variants are timed interleaved, round by round, so ratios share the load, and
by default each runs in its own worker process (``--in-process`` puts them all in this one), so
that one implementation's memory traffic does not land on the next one's allocator: XLA:CPU's
multi-GB scratch buffer is mmapped and unmapped on every call, and the implementation timed
right after another one's call paid for it (``benchmarks/RESULTS.md``). The order rotates each
round. ``--malloc`` runs every implementation once per glibc malloc setting (:data:`MALLOCS`),
each in its own process started with that ``GLIBC_TUNABLES`` (ratios against torch with the same
setting); without it the workers inherit this program's (``platform.MALLOC_TUNABLES``).

Variants are Generator options; what they leave open (``conv_impl``, ``split_convs``) is chosen
for this backend by :func:`jpeg_jax.platform.resolve_generator`, as in training; ``xla_*`` are
the variant GPUs/TPUs run. Prints a table and writes ``benchmarks/results/models.json``. FLOP
counts are analytic (the convolutions' multiply-adds x 2): 139.27 GFLOP per 128^2 forward,
backward counted as 2x forward.
"""

from __future__ import annotations

from jpeg_jax.platform import configure_xla, huge_pages_environment, restart_with_huge_pages

if __name__ == "__main__":
    restart_with_huge_pages()  # XLA:CPU's scratch memory in 2 MiB pages (jpeg_jax.platform)
configure_xla()

import argparse  # noqa: E402
import multiprocessing  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from functools import partial  # noqa: E402
from unittest import mock  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from jpeg_jax.models import Critic, Generator, ops  # noqa: E402
from jpeg_jax.models.generator import RRDB  # noqa: E402
from jpeg_jax.platform import resolve_generator  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # benchmarks.*
from benchmarks import bench_utils  # noqa: E402

SIZE = 128
GIB = 2.0**30


def generator_gflop(
    h: int = SIZE, w: int = SIZE, nf: int = 64, nb: int = 23, gc: int = 32, noise: int = 1
) -> float:
    """Analytic forward GFLOP (2 x conv multiply-adds); ``noise`` extra input channels per RDB
    conv and for conv_up1 (139.27 at 128^2 with noise, 138.27 without)."""
    lo = (h // 2) * (w // 2)
    rdb = sum((nf + k * gc + noise) * (gc if k < 4 else nf) for k in range(5)) * 9
    hi = (nf + noise) * nf * 9 + nf * nf * 9 + nf * 3 * 9  # conv_up1, conv_hr, conv_last
    macs = lo * (12 * nf * 9 + nb * 3 * rdb + nf * nf * 9) + h * w * hi
    return 2 * macs / 1e9


# --malloc settings: GLIBC_TUNABLES a worker process starts with.
MALLOCS = {
    "default": "",  # glibc's defaults
    "huge": "glibc.malloc.hugetlb=1",  # transparent huge pages only (the tunable until 2026-12-02)
    "kept": huge_pages_environment({})["GLIBC_TUNABLES"],  # what programs restart with
}


def _worker(conn, impl: str, case: str, size: int) -> None:
    """Worker process: builds one implementation of ``case`` (``impl`` may end in ``@<malloc>``),
    sends its compile seconds (None for torch, "missing" without torch), then times one call per
    request until sent False."""
    global SIZE
    SIZE = size
    impl = impl.split("@")[0]
    if impl == "torch":
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts OpenMP
        fn, compile_s = prepare_torch(case), None
        if fn is None:
            compile_s = "missing"
    else:
        fn, compile_s = prepare_jax(VARIANTS[impl.removeprefix("jax_")], case)
    conn.send(compile_s)
    while conn.recv():
        t0 = time.perf_counter()
        fn()
        conn.send(time.perf_counter() - t0)


class _Workers:
    """One worker process per implementation, started one after another (compiles do not
    overlap); ``fns`` holds callables that run one timed call in their worker."""

    def __init__(self, impls: list[str], case: str):
        ctx = multiprocessing.get_context("spawn")
        self.fns, self.compile_s, self._procs = {}, {}, []
        for impl in impls:
            here, there = ctx.Pipe()
            proc = ctx.Process(target=_worker, args=(there, impl, case, SIZE), daemon=True)
            # glibc reads its tunables when the (spawned) process starts
            malloc = {"GLIBC_TUNABLES": MALLOCS[impl.split("@")[1]]} if "@" in impl else {}
            with mock.patch.dict(os.environ, malloc):
                proc.start()
            self._procs.append((proc, here))
            compile_s = here.recv()
            if compile_s == "missing":
                continue
            if compile_s is not None:
                self.compile_s[impl] = compile_s
            self.fns[impl] = partial(self._call, here)

    @staticmethod
    def _call(conn) -> float:
        conn.send(True)
        return conn.recv()

    def close(self) -> None:
        for proc, conn in self._procs:
            conn.send(False)
            proc.join()


VARIANTS = {  # name -> Generator options; the others are chosen by platform.resolve_generator
    "loop": {"split_convs": False},  # concatenated dense inputs
    "split": {"split_convs": True},
    "scan": {"scan": True},
    "scan_remat": {"scan": True, "remat": True},
    "remat": {"remat": True},
    "xla_loop": {"conv_impl": "xla", "split_convs": False},  # what GPUs/TPUs run
    "xla_scan": {"conv_impl": "xla", "split_convs": False, "scan": True},
    "xla_scan_remat": {"conv_impl": "xla", "split_convs": False, "scan": True, "remat": True},
}


def make_generator(options: dict, backend: str | None = None) -> Generator:
    """The paper-size generator with ``options``, the rest chosen for ``backend`` (default:
    this one) as training does (:func:`jpeg_jax.platform.resolve_generator`)."""
    return Generator(**resolve_generator({"num_grow_ch": 32, **options}, backend=backend))


CASES = ("fwd_b1", "fwd_b8", "fwdbwd_b4")


def prepare_jax(options: dict, case: str) -> tuple:
    """Compiles the paper-size generator (noise on) for one case; returns (run, compile_s)."""
    gen = make_generator(options)
    rngs = {"params": jax.random.key(0), "noise": jax.random.key(1)}
    params = jax.jit(gen.init)(rngs, jnp.full((1, SIZE, SIZE, 3), 0.5), None)["params"]
    fwd = jax.jit(lambda p, y, k: gen.apply({"params": p}, y, None, rngs={"noise": k}))

    def loss(p, y, k):
        return jnp.mean(gen.apply({"params": p}, y, None, rngs={"noise": k}) ** 2)

    fn, batch = (jax.jit(jax.grad(loss)) if case.startswith("fwdbwd") else fwd), _batch(case)
    y, key = jax.random.uniform(jax.random.key(batch), (batch, SIZE, SIZE, 3)), jax.random.key(2)
    t0 = time.perf_counter()
    compiled = fn.lower(params, y, key).compile()
    compile_s = time.perf_counter() - t0
    return (lambda: jax.block_until_ready(compiled(params, y, key))), compile_s


def _batch(case: str) -> int:
    return int(case.split("_b")[1])


def torch_noisy_rrdbnet(torch, nf: int = 64, nb: int = 23, gc: int = 32):
    """BasicSR's RRDBNet (x2 unshuffle, one upsampling) with our noise channels, in PyTorch."""
    nn, F = torch.nn, torch.nn.functional

    def noisy(conv, x):
        z = torch.randn(x.shape[0], 1, *x.shape[2:], dtype=x.dtype)
        return conv(torch.cat([x, z], 1))

    class RDB(nn.Module):
        def __init__(self):
            super().__init__()
            self.convs = nn.ModuleList(
                nn.Conv2d(nf + k * gc + 1, gc if k < 4 else nf, 3, 1, 1) for k in range(5)
            )

        def forward(self, x):
            feats = [x]
            for k, conv in enumerate(self.convs):
                out = noisy(conv, torch.cat(feats, 1))
                if k < 4:
                    feats.append(F.leaky_relu(out, 0.2))
            return x + 0.2 * out

    class RRDB(nn.Module):
        def __init__(self):
            super().__init__()
            self.rdbs = nn.Sequential(RDB(), RDB(), RDB())

        def forward(self, x):
            return x + 0.2 * self.rdbs(x)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv_first = nn.Conv2d(12, nf, 3, 1, 1)
            self.body = nn.Sequential(*[RRDB() for _ in range(nb)])
            self.conv_body = nn.Conv2d(nf, nf, 3, 1, 1)
            self.conv_up1 = nn.Conv2d(nf + 1, nf, 3, 1, 1)
            self.conv_hr = nn.Conv2d(nf, nf, 3, 1, 1)
            self.conv_last = nn.Conv2d(nf, 3, 3, 1, 1)

        def forward(self, x):
            feat = self.conv_first(F.pixel_unshuffle(x, 2))
            feat = feat + self.conv_body(self.body(feat))
            up = F.leaky_relu(noisy(self.conv_up1, F.interpolate(feat, scale_factor=2.0)), 0.2)
            return self.conv_last(F.leaky_relu(self.conv_hr(up), 0.2))

    return Net()


def prepare_torch(case: str):
    """The same case with the PyTorch RRDBNet (2 threads); None when torch is not installed."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(2)
    torch.manual_seed(0)
    net = torch_noisy_rrdbnet(torch)
    y = torch.rand(_batch(case), 3, SIZE, SIZE)
    if case.startswith("fwdbwd"):

        def step():
            net.zero_grad(set_to_none=True)
            (net(y) ** 2).mean().backward()

        return step

    def forward():
        with torch.no_grad():
            net(y)

    return forward


def gan_step(gen: Generator, critic: Critic, opt: optax.GradientTransformation):
    """A representative G+D train step: critic (logistic + R1) then generator (adv + MSE)."""

    def d_loss(dp, gp, x, y, k):
        xh = jax.lax.stop_gradient(gen.apply({"params": gp}, y, None, rngs={"noise": k}))

        def d_real(xr):
            return critic.apply({"params": dp}, xr, y)

        real, vjp = jax.vjp(d_real, x)
        (gx,) = vjp(jnp.ones_like(real))
        r1 = 0.5 * jnp.mean(jnp.sum(gx**2, axis=(1, 2, 3)))
        fake = critic.apply({"params": dp}, xh, y)
        return jnp.mean(jax.nn.softplus(-real) + jax.nn.softplus(fake)) + r1

    def g_loss(gp, dp, x, y, k):
        xh = gen.apply({"params": gp}, y, None, rngs={"noise": k})
        adv = jnp.mean(jax.nn.softplus(-critic.apply({"params": dp}, xh, y)))
        return 1e-3 * adv + jnp.mean((xh - x) ** 2)

    def step(state, x, y, key):
        gp, dp, gs, ds = state
        kd, kg = jax.random.split(key)
        dg = jax.grad(d_loss)(dp, gp, x, y, kd)
        upd, ds = opt.update(dg, ds, dp)
        dp = optax.apply_updates(dp, upd)
        gg = jax.grad(g_loss)(gp, dp, x, y, kg)
        upd, gs = opt.update(gg, gs, gp)
        gp = optax.apply_updates(gp, upd)
        return gp, dp, gs, ds

    return step


def memory_analysis(options: dict, batch: int = 32, backend: str | None = None) -> dict:
    """Compiles (never runs) the paper-size G+D step and returns XLA's memory analysis in GiB;
    the generator's implementation is chosen for ``backend`` (compiled for this one)."""
    gen, critic = make_generator(options, backend), Critic()
    opt = optax.adam(1e-4, b1=0.0, b2=0.99)
    img = jax.ShapeDtypeStruct((batch, SIZE, SIZE, 3), jnp.float32)
    rngs = {"params": jax.random.key(0), "noise": jax.random.key(1)}
    gp = jax.eval_shape(lambda y: gen.init(rngs, y, None), img)["params"]
    dp = jax.eval_shape(lambda y: critic.init(jax.random.key(0), y, y), img)["params"]
    state = (gp, dp, jax.eval_shape(opt.init, gp), jax.eval_shape(opt.init, dp))
    key = jax.eval_shape(lambda: jax.random.key(0))
    t0 = time.perf_counter()
    compiled = jax.jit(gan_step(gen, critic, opt), donate_argnums=0).lower(state, img, img, key)
    compiled = compiled.compile()
    mem = compiled.memory_analysis()
    gib = {
        k: getattr(mem, f"{k}_size_in_bytes") / GIB
        for k in ("argument", "output", "temp", "alias", "generated_code")
    }
    gib["peak_estimate"] = gib["argument"] + gib["output"] + gib["temp"] - gib["alias"]
    gib["compile_s"] = time.perf_counter() - t0
    return gib


def _trunk_grad_temp(mode: str, conv_impl: str, batch: int, size: int, kw: dict) -> float:
    """MiB of XLA temp memory of a compiled forward+backward of ``kw["num_block"]`` unrolled
    RRDBs (no noise), rematerialised per ``mode``: "none", "nn_remat" (Flax's ``nn.remat``,
    i.e. ``jax.checkpoint``) or "in_order" (``ops.checkpoint_in_order``)."""
    n = kw["num_block"]
    block = RRDB(kw["num_feat"], kw["num_grow_ch"], noise=False, conv_impl=conv_impl)
    x = jax.ShapeDtypeStruct((batch, size, size, kw["num_feat"]), jnp.float32)
    one = jax.eval_shape(lambda x: block.init(jax.random.key(0), x), x)["params"]
    params = [one] * n
    apply = lambda p, x, key: block.apply({"params": p}, x)  # noqa: E731
    if mode == "nn_remat":
        apply = jax.checkpoint(apply)  # what nn.remat lowers to for a plain module call
    elif mode == "in_order":
        apply = ops.checkpoint_in_order(apply)

    def loss(params, x):
        for p in params:
            x = apply(p, x, None)
        return jnp.mean(x**2)

    compiled = jax.jit(jax.grad(loss)).lower(params, x).compile()
    return compiled.memory_analysis().temp_size_in_bytes / 2**20


def remat_memory(batch: int = 8, size: int = 32) -> dict:
    """Compiled temp memory (MiB, never run) of rematerialisation variants at a small size:
    unrolled RRDB trunks (none / ``nn.remat`` / in order) and the generator's stackings."""
    kw = dict(num_feat=16, num_block=8, num_grow_ch=8)
    out = {}
    for conv_impl in ("xla", "eigen"):
        for mode in ("none", "nn_remat", "in_order"):
            out[f"trunk_{mode}/{conv_impl}"] = _trunk_grad_temp(mode, conv_impl, batch, size, kw)
        for name, opts in (("loop", {}), ("remat", {"remat": True}), ("scan", {"scan": True}),
                           ("scan_remat", {"scan": True, "remat": True})):  # fmt: skip
            gen = Generator(**kw, noise=False, conv_impl=conv_impl, **opts)
            img = jax.ShapeDtypeStruct((batch, 2 * size, 2 * size, 3), jnp.float32)
            p = jax.eval_shape(lambda y, g=gen: g.init(jax.random.key(0), y), img)["params"]
            loss = lambda p, y, g=gen: jnp.mean(g.apply({"params": p}, y) ** 2)
            compiled = jax.jit(jax.grad(loss)).lower(p, img).compile()
            temp = compiled.memory_analysis().temp_size_in_bytes / 2**20
            out[f"generator_{name}/{conv_impl}"] = temp
    for k, v in out.items():
        print(f"  remat memory {k}: {v:.1f} MiB", flush=True)
    return out


def main() -> None:
    global SIZE
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=3, help="timed rounds per case")
    parser.add_argument("--size", type=int, default=SIZE, help="image side (paper: 128)")
    parser.add_argument("--variants", default="loop,scan_remat", help=", ".join(VARIANTS))
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--memory-variants", default="scan,scan_remat")
    parser.add_argument("--skip-torch", action="store_true")
    parser.add_argument(
        "--in-process", action="store_true", help="time everything in this process (no workers)"
    )
    parser.add_argument("--memory", action="store_true")
    parser.add_argument(
        "--remat-memory", action="store_true", help="compiled memory of the remat variants"
    )
    parser.add_argument(
        "--malloc", default="", help=f"time each implementation per setting: {', '.join(MALLOCS)}"
    )
    parser.add_argument("--out", default="benchmarks/results/models.json")
    args = parser.parse_args()
    SIZE = args.size
    gflop = generator_gflop(SIZE, SIZE)
    results = {
        "size": SIZE,
        "gflop_fwd": gflop,
        "machine": bench_utils.machine(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "loadavg_start": os.getloadavg()[0],
    }
    results["xla_flags"] = os.environ.get("XLA_FLAGS", "")
    results["glibc_tunables"] = os.environ.get("GLIBC_TUNABLES", "")  # both JAX and torch
    cases = tuple(args.cases.split(",")) if args.cases else ()
    variants = list(filter(None, args.variants.split(",")))
    results["isolated_processes"] = not args.in_process
    impls = ([] if args.skip_torch else ["torch"]) + [f"jax_{v}" for v in variants]
    mallocs = list(filter(None, args.malloc.split(",")))
    if unknown := [m for m in mallocs if m not in MALLOCS]:
        parser.error(f"--malloc {','.join(unknown)}: expected some of {', '.join(MALLOCS)}")
    if mallocs:
        if args.in_process:
            parser.error("--malloc needs worker processes (not --in-process)")
        impls = [f"{impl}@{m}" for m in mallocs for impl in impls]
        results["mallocs"] = {m: MALLOCS[m] for m in mallocs}
    for case in cases:
        workers = None
        if args.in_process:
            fns, compile_s = {}, {}
            if "torch" in impls and (step := prepare_torch(case)) is not None:
                fns["torch"] = step
            for impl in [i for i in impls if i != "torch"]:
                fns[impl], compile_s[impl] = prepare_jax(VARIANTS[impl[4:]], case)
        else:
            workers = _Workers(impls, case)
            fns, compile_s = workers.fns, workers.compile_s
        for impl, sec in compile_s.items():
            print(f"  compiled {impl} {case}: {sec:.1f} s")
        timed = bench_utils.timed_rounds(fns, rounds=args.iters, warmup=True, rotate=True)
        for impl, secs in ((name, t["wall"]) for name, t in timed.items()):
            per_img = [sec / _batch(case) for sec in secs]
            entry = {"s_per_img": float(np.median(per_img)), "rounds_s_per_img": per_img}
            if impl in compile_s:
                entry["compile_s"] = compile_s[impl]
            results.setdefault(impl, {})[case] = entry
            rounds = ", ".join(f"{t:.3f}" for t in per_img)
            print(f"  {impl} {case}: {entry['s_per_img']:.3f} s/img (rounds {rounds})", flush=True)
        if workers is not None:
            workers.close()
        fns.clear()
        bench_utils.write_json(args.out, results)
    print(f"{'impl':<21}{'case':<11}{'s/img':>8}{'GFLOP/s':>9}{'vs torch':>9}{'compile s':>10}")
    for impl, r in results.items():
        if not (impl.split("@")[0] == "torch" or impl.startswith("jax_")):
            continue
        torch_name = "@".join(["torch", *impl.split("@")[1:]])  # the same malloc setting
        for case, v in r.items():
            flops = gflop * (3 if case.startswith("fwdbwd") else 1)
            ref = results.get(torch_name, {}).get(case, {}).get("s_per_img")
            ratio = f"{v['s_per_img'] / ref:9.2f}" if ref else f"{'-':>9}"
            comp = f"{v['compile_s']:10.1f}" if "compile_s" in v else f"{'-':>10}"
            speed = f"{v['s_per_img']:8.3f}{flops / v['s_per_img']:9.1f}"
            print(f"{impl:<21}{case:<11}{speed}{ratio}{comp}")
    results["loadavg_end"] = os.getloadavg()[0]
    if args.remat_memory:
        results["remat_memory_mib"] = remat_memory()
    if args.memory:
        for variant in args.memory_variants.split(","):
            m = memory_analysis(VARIANTS[variant])
            results[f"memory_gd_step_b32_{variant}"] = m
            print(
                f"G+D step b32 {variant} (GiB, s): "
                + ", ".join(f"{k}={v:.2f}" for k, v in m.items())
            )
    bench_utils.write_json(args.out, results)


if __name__ == "__main__":
    main()
