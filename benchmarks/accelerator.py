"""The paper's training step and posterior sampling on one GPU/TPU: speed, memory, FLOPs, MFU.

Usage (from the repository root):

    python benchmarks/accelerator.py            # on a GPU/TPU: under 8 minutes on one H100/H200
    python benchmarks/accelerator.py --tiny     # tiny models, any backend (the tests run it)

Train step: ``configs/ffhq.py`` with the implementation choices made for this backend
(:func:`jpeg_jax.platform.resolve_generator`), batch 32 at 128², QF 5. Case ``fm_off`` is the
plain step (7 of every 8), ``fm_on`` adds FM on the paper's 16 samples of 8 images; each in
float32 and bfloat16 (``model.generator.dtype``). The trunk is scanned (short compiles;
``--no-scan`` unrolls it); remat is switched on only for a case whose compiled memory would
exceed 90 % of the device's. Per case: compile seconds, step time (median of ``--steps`` after
``--warmup``), images/s, compiled memory (argument + output + temp - alias) and the device's peak
bytes in use so far, model FLOPs per step from XLA's cost analysis of the *unrolled*,
non-rematerialised step (XLA counts a scanned body once), TFLOP/s and MFU against
:data:`PEAK_TFLOPS` for the device kind (``--peak-tflops`` for other devices). Then
``--profile-steps`` more steps under ``jax.profiler``: the device time per step by kind of HLO
op (convolution, matmul, fusion, copy/transpose, other), the top ops and, on GPUs, the top
kernels, so that one run on a lent device also says where the time goes (``--trace-dir``
keeps the traces for TensorBoard).

Sampling: :func:`jpeg_jax.sampling.restore` of an in-memory export (paper-size generator,
random weights, built as the decoder builds it) on a 512² JPEG (one tile) and a 2048² one
(tiles of 1024, overlap 64), in both dtypes: samples/s after one warm-up call.

Cases run in order of importance (bf16 first) and are skipped, with a note, once ``--budget-s``
has passed; at ``--deadline-s`` (counted from the script's start) it stops whatever it is doing,
with exit status 3. A case that raises (out of memory, say) is recorded with its error and the
others still run (exit status 1); if the FLOP count fails, the step is still timed (no MFU).
Prints a table; writes ``benchmarks/results/accelerator_<device>.json`` after every case
(``"complete": true`` once all have run, else ``"stopped"`` says where the deadline fell), so a
stopped or killed run keeps the cases it finished. Needs no TensorFlow: jax, flax, optax,
ml-collections, numpy, pillow and jpeglib.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jpeg_jax.platform import configure_xla, restart_with_huge_pages  # noqa: E402

if __name__ == "__main__":
    restart_with_huge_pages()  # a no-op for GPUs/TPUs beyond the malloc setting
configure_xla()

import argparse  # noqa: E402
import datetime  # noqa: E402
import functools  # noqa: E402
import gc  # noqa: E402
import glob  # noqa: E402
import io  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

_IMPORTED = time.perf_counter()  # a command-line run's clock starts here (JAX's import included)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from benchmarks import bench_utils  # noqa: E402
from configs import ffhq  # noqa: E402
from jpeg_jax import export, jpeg, platform, sampling, train_state, train_step  # noqa: E402

GIB = 2.0**30
DEADLINE_EXIT = 3  # exit status of a run stopped by --deadline-s
DTYPES = ("bfloat16", "float32")
CASES = {"fm_off": False, "fm_on": True}
# Sampling cases: (image side, tile, tile overlap, samples).
SAMPLING_SIZES = ((512, 1024, 64, 8), (2048, 1024, 64, 4))

# Dense peak TFLOP/s of one chip (vendor data sheets, no sparsity). "float32" is what XLA runs
# float32 convolutions on at JAX's default precision: TF32 tensor cores on NVIDIA Ampere and
# Hopper, bf16 MXU passes on TPUs; "float32_strict" the CUDA-core FP32 rate, for reference.
PEAK_TFLOPS = {
    "H200": {"bfloat16": 989.4, "float32": 494.7, "float32_strict": 66.9},
    "H100 PCIe": {"bfloat16": 756.0, "float32": 378.0, "float32_strict": 51.2},
    "H100 SXM": {"bfloat16": 989.4, "float32": 494.7, "float32_strict": 66.9},
    "A100": {"bfloat16": 312.0, "float32": 156.0, "float32_strict": 19.5},
    "TPU v4": {"bfloat16": 275.0, "float32": 275.0},
    "TPU v5e": {"bfloat16": 197.0, "float32": 197.0},
    "TPU v5p": {"bfloat16": 459.0, "float32": 459.0},
}
# device_kind patterns (lower case) -> PEAK_TFLOPS row, first match wins.
_KINDS = (
    (r"h200", "H200"),
    (r"h100.*pcie", "H100 PCIe"),
    (r"h100", "H100 SXM"),
    (r"a100", "A100"),
    (r"tpu v4", "TPU v4"),
    (r"tpu v5 ?(lite|e)", "TPU v5e"),
    (r"tpu v5p?$", "TPU v5p"),
)


def peak_row(device_kind: str) -> str | None:
    """The :data:`PEAK_TFLOPS` row of a ``jax.Device.device_kind``, or None if unknown."""
    kind = device_kind.lower().strip()
    return next((row for pattern, row in _KINDS if re.search(pattern, kind)), None)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tiny", action="store_true", help="tiny models and images (CPU checks)")
    p.add_argument("--steps", type=int, default=None, help="timed steps per case (10; tiny 2)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps after compiling")
    p.add_argument("--dtypes", default=",".join(DTYPES))
    p.add_argument("--cases", default=",".join(CASES))
    p.add_argument("--no-scan", dest="scan", action="store_false", help="unrolled trunk")
    p.add_argument("--no-sampling", dest="sampling", action="store_false")
    p.add_argument("--peak-tflops", type=float, default=None, help="device peak, all dtypes")
    p.add_argument("--budget-s", type=float, default=450.0, help="start no case after this")
    p.add_argument(
        "--deadline-s", type=float, default=470.0, help="stop here, even inside a case (exit 3)"
    )
    p.add_argument("--profile-steps", type=int, default=3, help="profiled steps per case (0: none)")
    p.add_argument("--trace-dir", default=None, help="keep the profiler's traces here")
    p.add_argument("--out", default=None, help="JSON path (default benchmarks/results/...)")
    return p.parse_args(argv)


def make_config(tiny: bool, scan: bool):
    config = ffhq.get_config()
    config.model.generator.scan = scan
    config.loss.fm_num_images, config.loss.fm_num_samples = 8, 16  # the paper's FM
    if tiny:
        config.batch_size = 2
        config.data.patch_size = 32
        g = config.model.generator
        g.num_feat, g.num_block, g.num_grow_ch = 8, 2, 4
        config.model.critic.widths, config.model.critic.blocks = (8, 8, 8, 8), (1, 1, 1, 1)
        config.loss.fm_num_images, config.loss.fm_num_samples = 2, 2
    return config


def make_batch(config, seed: int = 0) -> dict:
    """Smooth random images (4x4 pixel cells), their libjpeg-exact QF-5 decode and tables."""
    b, s = config.batch_size, config.data.patch_size
    rng = np.random.default_rng(seed)
    x = np.repeat(np.repeat(rng.uniform(0, 1, (b, s // 4, s // 4, 3)), 4, 1), 4, 2)
    x = (np.round(x * 255) / 255).astype(np.float32)
    qtables = np.broadcast_to(np.asarray(jpeg.quality_to_qtables(5)), (b, 2, 8, 8))
    y = np.asarray(jpeg.compress(x, qtables), np.float32)
    return {"x": jnp.asarray(x), "y": jnp.asarray(y), "qtables": jnp.asarray(qtables, jnp.int32)}


def _step_fn(config, moments: bool):
    models = train_state.make_models(config)
    optimizers = train_state.make_optimizers(config)
    step = functools.partial(
        train_step.make_train_step(config, models, optimizers), moments=moments
    )
    return models, optimizers, step


def model_flops(config, batch: dict, moments: bool) -> float | None:
    """FLOPs of one step from XLA's cost analysis of the unrolled step without remat (lowered,
    not compiled: the count of the model, not of what a scan or remat executes)."""
    cfg = config.copy_and_resolve_references()
    cfg.model.generator.scan = cfg.model.generator.remat = False
    models, optimizers, step = _step_fn(cfg, moments)
    state = jax.eval_shape(
        lambda k: train_state.init_state(cfg, models, optimizers, k), jax.random.key(0)
    )
    shapes = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), batch)
    cost = jax.jit(step).lower(state, shapes, jax.random.key(1)).cost_analysis()
    flops = (cost or {}).get("flops")
    return float(flops) if flops else None


def memory_gib(compiled) -> dict:
    mem = compiled.memory_analysis()
    out = {k: getattr(mem, f"{k}_size_in_bytes") / GIB for k in ("argument", "output", "temp")}
    out["alias"] = mem.alias_size_in_bytes / GIB
    out["peak"] = out["argument"] + out["output"] + out["temp"] - out["alias"]
    return out


def device_memory() -> dict:
    stats = jax.devices()[0].memory_stats() or {}
    return {k: stats[k] / GIB for k in ("bytes_limit", "peak_bytes_in_use") if k in stats}


def compile_step(config, batch: dict, moments: bool, limit_gib: float | None):
    """Init state and AOT-compile the step; with remat if it would not fit in 90 % of the
    device. Returns (compiled, state, info)."""
    for remat in (False, True):
        cfg = config.copy_and_resolve_references()
        cfg.model.generator.remat = remat
        models, optimizers, step = _step_fn(cfg, moments)
        state = train_state.init_state(cfg, models, optimizers, jax.random.key(0))
        t0 = time.perf_counter()
        compiled = jax.jit(step, donate_argnums=0).lower(state, batch, jax.random.key(1))
        compiled = compiled.compile()
        info = {"compile_s": time.perf_counter() - t0, "remat": remat, "memory_gib": {}}
        info["memory_gib"] = memory_gib(compiled)
        if remat or limit_gib is None or info["memory_gib"]["peak"] < 0.9 * limit_gib:
            return compiled, state, info
        print(f"    {info['memory_gib']['peak']:.1f} GiB > 90 % of the device: remat", flush=True)
        del compiled, state
        gc.collect()
    raise AssertionError("unreachable")


# Kinds of HLO ops, by a pattern of the op's name (lower case), first match wins.
OP_KINDS = (
    ("convolution", r"conv"),
    ("matmul", r"gemm|dot|matmul|cublas"),
    ("copy/transpose", r"copy|transpose"),
    ("fusion", r"fusion"),
)
OP_KIND_NAMES = (*(kind for kind, _ in OP_KINDS), "other")  # every kind :func:`op_kind` returns


def op_kind(name: str) -> str:
    """The :data:`OP_KINDS` kind of an HLO op name ("other" if none matches)."""
    lower = name.lower()
    return next((kind for kind, pattern in OP_KINDS if re.search(pattern, lower)), "other")


def profile_summary(profile, steps: int, step_s: float, top: int = 12) -> dict:
    """Device time per step from a ``jax.profiler.ProfileData`` of ``steps`` steps.

    An op is an event of a device plane's "XLA Ops" line (GPUs, TPUs) or, on a plane without
    one, an event with an ``hlo_op`` stat (XLA:CPU's thunks); ops are grouped by name without
    the trailing ``.N``. An event that encloses the next one of its line is a container (e.g.
    XLA:CPU's while and call thunks) and left out: its ops count themselves. ``busy`` is the op
    time per step over the step's wall time (above 1 where ops overlap, as XLA:CPU's parallel
    thunks do). GPU kernels: the events of the device planes' "Stream" lines, grouped by
    kernel name.
    """
    ops, kernels = {}, {}

    def add(table, name, ns):
        entry = table.setdefault(name, [0.0, 0])
        entry[0] += ns
        entry[1] += 1

    for plane in profile.planes:
        lines = list(plane.lines)
        xla_ops = [line for line in lines if line.name == "XLA Ops"]
        for line in xla_ops or lines:
            events = [(e, dict(e.stats)) for e in line.events]
            events = [(e, st) for e, st in events if xla_ops or "hlo_op" in st]
            events.sort(key=lambda es: (es[0].start_ns, -es[0].duration_ns))
            for i, (event, stats) in enumerate(events):
                after = events[i + 1][0] if i + 1 < len(events) else None
                if after is not None and after.start_ns < event.start_ns + event.duration_ns:
                    continue  # a container
                name = re.sub(r"\.\d+$", "", str(stats.get("hlo_op", event.name)))
                add(ops, name, event.duration_ns)
        if plane.name.startswith("/device:"):
            for line in lines:
                if line.name.startswith("Stream"):
                    for event in line.events:
                        add(kernels, event.name, event.duration_ns)
    per_step = lambda ns: ns / 1e9 / steps  # noqa: E731
    total = sum(ns for ns, _ in ops.values())
    by_kind = dict.fromkeys(OP_KIND_NAMES, 0.0)
    for name, (ns, _) in ops.items():
        by_kind[op_kind(name)] += ns / total if total else 0.0

    def ranked(table):
        rows = sorted(table.items(), key=lambda kv: -kv[1][0])[:top]
        return [
            {
                "name": n[:200],
                "s_per_step": per_step(ns),
                "share": ns / total if total else 0.0,
                "calls_per_step": c / steps,
            }
            for n, (ns, c) in rows
        ]

    return {
        "steps": steps,
        "op_s_per_step": per_step(total),
        "busy": per_step(total) / step_s if step_s else None,
        "share_by_kind": by_kind,
        "ops": ranked(ops),
        "kernels": ranked(kernels),
    }


def profile_steps(compiled, state, batch, key, steps: int, step_s: float, trace_dir) -> tuple:
    """Runs ``steps`` more steps under ``jax.profiler.trace``; (state, :func:`profile_summary`).
    The trace goes to ``trace_dir`` (kept) or to a temporary folder (removed)."""
    folder = trace_dir or tempfile.mkdtemp(prefix="accelerator_trace_")
    try:
        with jax.profiler.trace(folder):
            for _ in range(steps):
                state, metrics = compiled(state, batch, key)
            jax.block_until_ready(metrics)
        paths = glob.glob(os.path.join(folder, "**", "*.xplane.pb"), recursive=True)
        if not paths:
            raise RuntimeError(f"the profiler wrote no .xplane.pb under {folder}")
        profile = jax.profiler.ProfileData.from_file(max(paths, key=os.path.getmtime))
        return state, profile_summary(profile, steps, step_s)
    finally:
        if not trace_dir:
            shutil.rmtree(folder, ignore_errors=True)


def train_case(
    config, batch, moments, steps, warmup, limit_gib, flops, peak, profile=0, trace_dir=None
) -> dict:
    compiled, state, info = compile_step(config, batch, moments, limit_gib)
    key = jax.random.key(1)
    for _ in range(warmup):
        state, metrics = compiled(state, batch, key)
    jax.block_until_ready(state)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        state, metrics = compiled(state, batch, key)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - t0)
    sec = float(np.median(times))
    info.update(
        step_s=sec,
        step_s_all=times,
        images_per_s=config.batch_size / sec,
        device_memory_gib=device_memory(),
        model_flops=flops,
        finite=bool(all(np.isfinite(float(v)) for v in metrics.values())),
        skipped=float(metrics["skipped"]),
    )
    if flops:
        info["tflops_per_s"] = flops / sec / 1e12
        info["mfu"] = info["tflops_per_s"] / peak if peak else None
    if profile:
        try:
            state, info["profile"] = profile_steps(
                compiled, state, batch, key, profile, sec, trace_dir
            )
        except Exception as e:  # noqa: BLE001 (no profile: the timings stand)
            info["profile_error"] = _describe(e)
    del compiled, state
    gc.collect()
    return info


def jpeg_file(size: int, seed: int = 0) -> jpeg.JpegImage:
    """A smooth random RGB photo-like image, encoded by Pillow (libjpeg) at QF 5, 4:2:0."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, (size // 16, size // 16, 3)).astype(np.uint8)
    image = Image.fromarray(coarse).resize((size, size), Image.BICUBIC)
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=5, subsampling=2)
    return jpeg.read_jpeg(buf.getvalue())


def sampling_case(config, dtype, size, tile, overlap, num_samples) -> dict:
    """samples/s of ``sampling.restore`` on an in-memory export (random weights)."""
    generator = {**config.model.generator.to_dict(), "dtype": dtype}
    options = platform.resolve_generator(generator) | {"scan": False, "remat": False}
    model = export.Exported(options, None, {}).build()  # unrolled params, as trained
    q = jnp.ones((1, 2, 8, 8), jnp.int32)
    rngs = {"params": jax.random.key(0), "noise": jax.random.key(1)}
    params = jax.jit(model.init)(rngs, jnp.zeros((1, 32, 32, 3)), q)["params"]
    exported = export.Exported(generator, params, {})
    f = jpeg_file(size)
    run = lambda: (
        sampling.restore(  # noqa: E731
            exported, f, num_samples, jax.random.key(2), tile=tile, overlap=overlap
        ).samples
    )
    t0 = time.perf_counter()
    run()
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    samples = run()
    sec = time.perf_counter() - t0
    return {
        "size": size,
        "tile": tile,
        "num_samples": num_samples,
        "first_call_s": first,
        "s": sec,
        "samples_per_s": num_samples / sec,
        "finite": bool(np.isfinite(samples).all()),
        "scan": sampling.resolve_model(exported)[0].scan,
    }


def _describe(error: Exception) -> str:
    """An exception as recorded in the JSON: its type and message, at most 4000 characters."""
    return f"{type(error).__name__}: {error}"[:4000]


def report(results: dict) -> str:
    lines = [
        "| case | compile s | remat | s/step | images/s | peak GiB (XLA) | TFLOP/step | "
        "TFLOP/s | MFU |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]

    def failed(name, r):
        return f"| {name} | failed: {r['error'].splitlines()[0][:160]} |"

    for name, r in results["train"].items():
        if "error" in r:
            lines.append(failed(name, r))
            continue
        flops = f"{r['model_flops'] / 1e12:.3f}" if r.get("model_flops") else "-"
        tfs = f"{r['tflops_per_s']:.2f}" if r.get("tflops_per_s") else "-"
        mfu = f"{100 * r['mfu']:.1f} %" if r.get("mfu") else "-"
        lines.append(
            f"| {name} | {r['compile_s']:.1f} | {r['remat']} | {r['step_s']:.4f} "
            f"| {r['images_per_s']:.2f} | {r['memory_gib']['peak']:.2f} | {flops} | {tfs} "
            f"| {mfu} |"
        )
    profiled = {n: r["profile"] for n, r in results["train"].items() if "profile" in r}
    if profiled:
        lines += [
            "",
            "| profile | op s/step | busy | " + " | ".join(OP_KIND_NAMES) + " | top op |",
            "|---|---:|---:|" + "---:|" * len(OP_KIND_NAMES) + "---|",
        ]
        for name, pr in profiled.items():
            shares = " | ".join(f"{100 * pr['share_by_kind'][k]:.0f} %" for k in OP_KIND_NAMES)
            top = pr["ops"][0] if pr["ops"] else {"name": "-", "share": 0.0}
            busy = f"{pr['busy']:.2f}" if pr["busy"] is not None else "-"
            lines.append(
                f"| {name} | {pr['op_s_per_step']:.4f} | {busy} | {shares} "
                f"| {top['name'][:40]} ({100 * top['share']:.0f} %) |"
            )
    if results["sampling"]:
        lines += [
            "",
            "| sampling | size | tile | samples/s | first call s |",
            "|---|---:|---:|---:|---:|",
        ]
    for name, r in results["sampling"].items():
        if "error" in r:
            lines.append(failed(name, r))
            continue
        lines.append(
            f"| {name} | {r['size']} | {r['tile']} | {r['samples_per_s']:.3f} "
            f"| {r['first_call_s']:.1f} |"
        )
    if results["skipped"]:
        lines += ["", "skipped (budget): " + ", ".join(results["skipped"])]
    if results.get("stopped"):
        lines += ["", "stopped: " + results["stopped"]]
    return "\n".join(lines)


def main(argv=None, started: float | None = None) -> dict:
    """Runs the cases; ``started`` (a ``time.perf_counter()``, default now) is when the budget
    and the deadline start counting."""
    args = parse_args(argv)
    start = time.perf_counter() if started is None else started
    device = jax.devices()[0]
    row = peak_row(device.device_kind)
    peaks = {d: args.peak_tflops for d in DTYPES} if args.peak_tflops else PEAK_TFLOPS.get(row)
    config = make_config(args.tiny, args.scan)
    batch = make_batch(config)
    steps = args.steps or (2 if args.tiny else 10)
    limit = device_memory().get("bytes_limit")
    slug = re.sub(r"[^a-z0-9]+", "_", device.device_kind.lower()).strip("_")
    out = args.out or f"benchmarks/results/accelerator_{slug}{'_tiny' if args.tiny else ''}.json"
    results = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "jax": jax.__version__,
        "device": {
            "backend": jax.default_backend(),
            "kind": device.device_kind,
            "count": jax.device_count(),
            "peak_row": row,
            "peak_tflops": peaks,
        },
        "setup": {
            "tiny": args.tiny,
            "batch": config.batch_size,
            "size": config.data.patch_size,
            "fm_num_images": config.loss.fm_num_images,
            "fm_num_samples": config.loss.fm_num_samples,
            "scan": args.scan,
            "steps": steps,
            "warmup": args.warmup,
            "profile_steps": args.profile_steps,
            "generator": train_state.generator_kwargs(config) | {"dtype": "per case"},
        },
        "train": {},
        "sampling": {},
        "skipped": [],
        "errors": [],  # cases that raised (out of memory, say); the others still run
        "complete": False,  # True once every case has run, failed or been skipped
    }
    lock = threading.Lock()  # the deadline's thread saves too
    running = ["start-up"]

    def save():  # after every case: a run stopped from outside keeps the cases it finished
        results["elapsed_s"] = time.perf_counter() - start
        results["table"] = report(results)
        bench_utils.write_json(out, results, default=str)

    def run_case(section: str, name: str, case) -> None:
        if time.perf_counter() - start > args.budget_s:
            results["skipped"].append(f"{section} {name}")
            return
        print(f"{section} {name} ...", flush=True)
        running[0] = f"{section} {name}"
        try:
            value = case()
        except Exception as e:  # noqa: BLE001 (one case's failure must not lose the others)
            value = {"error": _describe(e)}
        gc.collect()
        with lock:
            results[section][name] = value
            if "error" in value:
                results["errors"].append(f"{section} {name}")
            print(f"  {value}", flush=True)
            save()

    def stop_at_deadline():  # runs on a timer thread while the main thread works (or compiles)
        with lock:
            results["stopped"] = f"deadline {args.deadline_s:g} s reached in {running[0]}"
            save()
            print(results["table"], flush=True)
            os._exit(DEADLINE_EXIT)

    def train(dtype: str, moments: bool) -> dict:
        if moments not in flops:
            try:
                flops[moments] = model_flops(config, batch, moments)
            except Exception as e:  # noqa: BLE001 (no FLOP count: still time the step, no MFU)
                flops[moments] = None
                flops_errors[moments] = _describe(e)
        cfg = config.copy_and_resolve_references()
        cfg.model.generator.dtype = dtype
        peak = (peaks or {}).get(dtype)
        trace_dir = args.trace_dir and os.path.join(args.trace_dir, f"{dtype}_{moments}")
        info = train_case(
            cfg,
            batch,
            moments,
            steps,
            args.warmup,
            limit,
            flops[moments],
            peak,
            args.profile_steps,
            trace_dir,
        )
        if moments in flops_errors:
            info["model_flops_error"] = flops_errors[moments]
        return info

    print(f"{device.device_kind} ({jax.default_backend()}), peak TFLOP/s {peaks}", flush=True)
    cases = [c for c in CASES if c in args.cases.split(",")]
    dtypes = [d for d in DTYPES if d in args.dtypes.split(",")]
    sizes = ((64, 64, 16, 2), (128, 64, 16, 2)) if args.tiny else SAMPLING_SIZES
    flops, flops_errors = {}, {}  # per FM case: the dtypes share one count
    deadline = threading.Timer(args.deadline_s - (time.perf_counter() - start), stop_at_deadline)
    deadline.daemon = True
    deadline.start()
    try:
        for case in cases:
            for dtype in dtypes:
                run_case("train", f"{dtype}/{case}", functools.partial(train, dtype, CASES[case]))
        for dtype in dtypes if args.sampling else ():
            for size, tile, overlap, n in sizes:
                sample = functools.partial(sampling_case, config, dtype, size, tile, overlap, n)
                run_case("sampling", f"{dtype}/{size}", sample)
    finally:  # an in-process caller must not be ended by a timer left behind
        deadline.cancel()
    with lock:
        results["complete"] = True
        save()
    print(results["table"])
    print(f"({results['elapsed_s']:.0f} s)")
    return results


if __name__ == "__main__":
    sys.exit(1 if main(started=_IMPORTED)["errors"] else 0)
