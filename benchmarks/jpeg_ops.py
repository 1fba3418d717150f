"""JPEG round-trip throughput and fidelity: ours (JAX) vs Pillow (libjpeg) vs BasicSR's DiffJPEG.

Usage (from the repository root; about two minutes on 2 cores):

    python benchmarks/jpeg_ops.py                  # batch 16 x 256 x 256, QF 10, 4:2:0
    python benchmarks/jpeg_ops.py --rounds 5 --breakdown  # + where our exact path spends time

Rows, all timed in one process on the same inputs (crops of scikit-image's bundled photos):
``ours exact`` / ``ours float`` (jitted ``jpeg_jax.jpeg.compress``, ``exact=True`` / ``False``),
``pillow`` (libjpeg encode + decode, one image at a time, single-threaded), BasicSR 1.4.2's
``DiffJPEG(differentiable=True)`` on torch with 2 threads and with 1 (torch's OpenMP barriers
slow 2 threads down up to 10x on a shared machine unless ``OMP_WAIT_POLICY=PASSIVE``; ratios
use its faster setting; skipped with a note without torch or basicsr). Forward and
forward+backward (gradient of ``sum(out ** 2)`` wrt the input) in megapixels per second: median
(best) of calls interleaved across methods after warm-up, so all see the same background load;
also per process-CPU-second.

Fidelity is measured against Pillow's decode of Pillow's encode at the same quality and
subsampling, in 8-bit units, on outputs rounded to 8 bits (``*_float`` fields: unrounded).
``--breakdown`` also times the pieces of our exact pipeline (encode, decode, the integer
DCT/IDCT emulation, chroma resampling) to show where the time goes.
Prints a markdown table and writes ``benchmarks/results/jpeg_ops.json``.
"""

from __future__ import annotations

from jpeg_jax.platform import configure_xla

configure_xla()

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import io  # noqa: E402
import os  # noqa: E402
import pathlib  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import skimage.data  # noqa: E402
from PIL import Image  # noqa: E402

from jpeg_jax import jpeg  # noqa: E402
from jpeg_jax.jpeg import chroma, dct  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # benchmarks.*
from benchmarks import bench_utils  # noqa: E402

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")
THREADS = 2
DIFFJPEG = "basicsr DiffJPEG"
RESULTS = pathlib.Path(__file__).parent / "results" / "jpeg_ops.json"


def load_crops(batch: int, size: int, seed: int = 0) -> np.ndarray:
    """``(batch, size, size, 3)`` uint8 random crops, cycling over the bundled photos."""
    rng = np.random.default_rng(seed)
    photos = [getattr(skimage.data, name)() for name in PHOTOS]
    crops = []
    for k in range(batch):
        photo = photos[k % len(photos)]
        top = rng.integers(0, photo.shape[0] - size + 1)
        left = rng.integers(0, photo.shape[1] - size + 1)
        crops.append(photo[top : top + size, left : left + size, :3])
    return np.stack(crops)


def time_rounds(cases: dict[str, Callable[[], object]], *, rounds: int, repeats: int) -> dict:
    """Wall and process-CPU seconds of each blocking ``fn()``, interleaved over rounds.

    The machine is shared, so the cases take turns (``repeats`` calls each per round) and every
    case sees the same background load. CPU time (all threads of this process) is less
    sensitive to other processes than wall time, though spinning threads count in it.
    """
    times = bench_utils.timed_rounds(cases, rounds=rounds, repeats=repeats)
    wall = {name: t["wall"] for name, t in times.items()}
    cpu = {name: t["cpu"] for name, t in times.items()}
    return {
        name: {
            "median_s": statistics.median(wall[name]),
            "min_s": min(wall[name]),
            "cpu_median_s": statistics.median(cpu[name]),
            "times_s": wall[name],
        }
        for name in cases
    }


def fidelity(out_u8: np.ndarray, ref_u8: np.ndarray, out_float: np.ndarray | None = None) -> dict:
    """RMSE, max abs error and PSNR (8-bit units) of ``out`` vs the reference decode."""
    diff = out_u8.astype(np.float64) - ref_u8.astype(np.float64)
    mse = float(np.mean(diff**2))
    result = {
        "rmse": mse**0.5,
        "max_abs": float(np.max(np.abs(diff))),
        "psnr_db": float("inf") if mse == 0 else float(10.0 * np.log10(255.0**2 / mse)),
    }
    if out_float is not None:
        diff_f = out_float.astype(np.float64) * 255.0 - ref_u8
        result["rmse_float"] = float(np.sqrt(np.mean(diff_f**2)))
        result["max_abs_float"] = float(np.max(np.abs(diff_f)))
    return result


def to_u8(images: np.ndarray) -> np.ndarray:
    return np.round(np.clip(images, 0.0, 1.0) * 255.0).astype(np.uint8)


def pillow_roundtrip(u8: np.ndarray, quality: int) -> np.ndarray:
    """libjpeg (Pillow) encode + decode at ``quality`` with 4:2:0, one image at a time."""
    out = []
    for image in u8:
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, "JPEG", quality=quality, subsampling=2)
        buf.seek(0)
        out.append(np.asarray(Image.open(buf).convert("RGB")))
    return np.stack(out)


def _compile(fn: Callable, *args) -> tuple[Callable[[], object], float]:
    """A blocking zero-argument call of jitted ``fn(*args)``, and its first-call seconds."""
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    seconds = time.perf_counter() - start
    return (lambda: jax.block_until_ready(fn(*args))), seconds


def setup_ours(images: np.ndarray, quality: int, exact: bool) -> tuple[dict, dict, np.ndarray]:
    """Jitted ``compress`` forward and forward+backward (compiled), info, forward output."""
    x = jnp.asarray(images)
    q = jpeg.quality_to_qtables(quality)

    def forward(x):
        return jpeg.compress(x, q, subsampling="4:2:0", exact=exact)

    fwd = jax.jit(forward)
    fwd_bwd = jax.jit(jax.value_and_grad(lambda x: jnp.sum(forward(x) ** 2)))
    cases, info = {}, {"compile_s": {}}
    for name, fn in (("forward", fwd), ("forward_backward", fwd_bwd)):
        cases[name], info["compile_s"][name] = _compile(fn, x)
    info["grad_finite"] = bool(np.all(np.isfinite(np.asarray(fwd_bwd(x)[1]))))
    return cases, info, np.asarray(fwd(x))


def load_diffjpeg_class():
    """BasicSR's ``DiffJPEG`` class and where it came from, or ``(None, reason)``."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return None, "torch not installed"
    try:
        from basicsr.utils.diffjpeg import DiffJPEG

        return DiffJPEG, "basicsr.utils.diffjpeg"
    except ImportError:
        pass  # basicsr/__init__ imports cv2 and more it does not declare; load the file itself.
    spec = importlib.util.find_spec("basicsr")
    if spec is None or not spec.submodule_search_locations:
        return None, "basicsr not installed"
    path = pathlib.Path(next(iter(spec.submodule_search_locations))) / "utils" / "diffjpeg.py"
    module_spec = importlib.util.spec_from_file_location("_basicsr_diffjpeg", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.DiffJPEG, str(path)


def setup_diffjpeg(
    images: np.ndarray, quality: int, threads: int
) -> tuple[dict, dict, np.ndarray] | str:
    """BasicSR DiffJPEG forward and forward+backward on ``threads`` torch threads; or a note."""
    diffjpeg_cls, source = load_diffjpeg_class()
    if diffjpeg_cls is None:
        return source
    import torch

    # Only the input's gradient is wanted, as for ours (its tables are nn.Parameters).
    model = diffjpeg_cls(differentiable=True).requires_grad_(False)
    x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))

    def forward():
        torch.set_num_threads(threads)  # process-global; the cases take turns
        with torch.no_grad():
            return model(x, quality=quality)

    def forward_backward():
        torch.set_num_threads(threads)
        xg = x.clone().requires_grad_(True)
        loss = (model(xg, quality=quality) ** 2).sum()
        loss.backward()
        return xg.grad

    info = {
        "torch": torch.__version__,
        "torch_threads": threads,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(unset)"),
        "source": source,
        "grad_finite": bool(torch.isfinite(forward_backward()).all()),
    }
    return (
        {"forward": forward, "forward_backward": forward_backward},
        info,
        forward().numpy().transpose(0, 2, 3, 1),
    )


def breakdown_cases(images: np.ndarray, quality: int) -> dict[str, Callable[[], object]]:
    """Compiled pieces of the exact pipeline on the benchmark batch, to see where time goes."""
    x = jnp.asarray(images)
    q = jpeg.quality_to_qtables(quality)
    coefficients = jax.jit(lambda x: jpeg.encode(x, q))(x)
    planes = jnp.round(x[..., 0] * 255.0)
    blocks = dct.blockify(planes)
    coeff_blocks = jnp.round(dct.dct_2d(blocks - 128.0) / q[0]) * q[0]
    half = planes[..., ::2, ::2]
    sq = lambda f: lambda *a: jnp.sum(f(*a) ** 2)  # noqa: E731
    grad = lambda f: jax.grad(sq(f))  # noqa: E731
    up = lambda p: chroma.upsample(p, 2, 2, exact=True)  # noqa: E731
    pieces = {
        "encode exact fwd": (lambda x: jpeg.encode(x, q), x),
        "encode exact fwd+bwd": (grad(lambda x: jpeg.encode(x, q).y), x),
        "decode exact fwd": (lambda c: jpeg.decode(c, q), coefficients),
        "decode exact fwd+bwd": (grad(lambda c: jpeg.decode(c, q)), coefficients),
        "encode float fwd": (lambda x: jpeg.encode(x, q, exact=False), x),
        "decode float fwd": (lambda c: jpeg.decode(c, q, exact=False), coefficients),
        "islow fdct+quant (luma)": (lambda b: dct.islow_quantize_8x8(b, q[0]), blocks),
        "islow idct (luma)": (dct.islow_idct_8x8, coeff_blocks),
        "float dct_2d (luma)": (lambda b: dct.dct_2d(b - 128.0), blocks),
        "float idct_2d (luma)": (dct.idct_2d, coeff_blocks),
        "blockify+unblockify (luma)": (lambda p: dct.unblockify(dct.blockify(p) + 1.0), planes),
        "chroma downsample exact x2": (lambda p: chroma.downsample(p, 2, 2, exact=True), planes),
        "chroma upsample exact x2": (up, half),
        "chroma upsample exact fwd+bwd": (grad(up), half),
    }
    return {name: _compile(jax.jit(fn), arg)[0] for name, (fn, arg) in pieces.items()}


def _fmt(value: float | None, spec: str = ".1f") -> str:
    return "n/a" if value is None else format(value, spec)


def print_table(rows: dict) -> None:
    """Markdown table: MP/s as median (best call), fidelity vs Pillow in 8-bit units."""
    print(
        "\n| method | fwd MP/s median (best) | fwd MP/CPU-s | fwd+bwd MP/s median (best) "
        "| fwd+bwd MP/CPU-s | PSNR vs Pillow (dB) | RMSE | max abs |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|"
    )
    for name, row in rows.items():
        fid = row["fidelity"]
        rates = [
            f"{_fmt(row.get(f'{kind}_mp_s'))} ({_fmt(row.get(f'{kind}_mp_s_best'))}) | "
            f"{_fmt(row.get(f'{kind}_mp_per_cpu_s'))}"
            for kind in ("forward", "forward_backward")
        ]
        print(
            f"| {name} | {rates[0]} | {rates[1]} | {_fmt(fid['psnr_db'], '.2f')} | "
            f"{fid['rmse']:.3f} | {fid['max_abs']:.0f} |"
        )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--quality", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=15, help="interleaved timing rounds")
    parser.add_argument("--repeats", type=int, default=1, help="timed calls per case per round")
    parser.add_argument("--breakdown", action="store_true", help="also time pipeline pieces")
    parser.add_argument("--out", type=pathlib.Path, default=RESULTS)
    return parser.parse_args()


def run_methods(u8: np.ndarray, args: argparse.Namespace) -> tuple[dict, dict, list[str]]:
    """Sets up every method; returns their cases, info/outputs and notes on skipped ones."""
    images = u8.astype(np.float32) / 255.0
    setups = {
        "ours exact": setup_ours(images, args.quality, exact=True),
        "ours float": setup_ours(images, args.quality, exact=False),
    }
    pillow = lambda: pillow_roundtrip(u8, args.quality)  # noqa: E731
    setups["pillow (libjpeg)"] = ({"forward": pillow}, {}, pillow())
    notes = []
    # 2 threads as asked; 1 thread too, because torch's OpenMP barriers collapse (up to 10x)
    # when other processes compete for the 2 cores, and the fairer baseline is its faster one.
    for threads in (THREADS, 1):
        diffjpeg = setup_diffjpeg(images, args.quality, threads)
        if isinstance(diffjpeg, str):
            notes.append(f"BasicSR DiffJPEG skipped: {diffjpeg}")
            print(notes[-1])
            break
        setups[f"{DIFFJPEG} ({threads} thr)"] = diffjpeg
    cases = {
        (method, kind): fn for method, (fns, _, _) in setups.items() for kind, fn in fns.items()
    }
    return cases, setups, notes


def diffjpeg_ratios(rows: dict) -> dict[str, float]:
    """Ours / DiffJPEG throughput, against DiffJPEG's faster thread setting per statistic."""
    baselines = [row for name, row in rows.items() if name.startswith(DIFFJPEG)]
    ratios = {}
    for method in ("ours exact", "ours float"):
        for kind in ("forward", "forward_backward"):
            for stat in ("_mp_s", "_mp_s_best", "_mp_per_cpu_s"):
                base = max((row[kind + stat] for row in baselines), default=None)
                if base is not None:
                    ratios[f"{method} / DiffJPEG {kind}{stat}"] = rows[method][kind + stat] / base
    return ratios


def main() -> None:
    args = parse_args()
    load_before = os.getloadavg()
    u8 = load_crops(args.batch, args.size)
    megapixels = args.batch * args.size * args.size / 1e6
    cases, setups, notes = run_methods(u8, args)
    reference = setups["pillow (libjpeg)"][2]
    for fn in cases.values():  # one more warm-up each, then interleaved timing
        fn()
    timings = time_rounds(cases, rounds=args.rounds, repeats=args.repeats)
    rows = {}
    for method, (_, info, out) in setups.items():
        row = dict(info)
        for kind in ("forward", "forward_backward"):
            if (method, kind) in timings:
                row[kind] = timings[(method, kind)]
                row[f"{kind}_mp_s"] = megapixels / timings[(method, kind)]["median_s"]
                row[f"{kind}_mp_s_best"] = megapixels / timings[(method, kind)]["min_s"]
                row[f"{kind}_mp_per_cpu_s"] = megapixels / timings[(method, kind)]["cpu_median_s"]
        if out.dtype == np.uint8:
            row["fidelity"] = fidelity(out, reference)
        else:
            row["fidelity"] = fidelity(to_u8(out), reference, out)
        rows[method] = row
    ratios = diffjpeg_ratios(rows)
    breakdown = {}
    if args.breakdown:
        pieces = breakdown_cases(u8.astype(np.float32) / 255.0, args.quality)
        breakdown = time_rounds(pieces, rounds=args.rounds, repeats=args.repeats)
    report(args, rows, ratios, breakdown, notes, megapixels, load_before)


def report(args, rows, ratios, breakdown, notes, megapixels, load_before) -> None:
    """Prints the table, ratios and breakdown; writes the JSON file."""
    load_after = os.getloadavg()
    print(
        f"\nbatch {args.batch} x {args.size}x{args.size} RGB, QF {args.quality}, 4:2:0, "
        f"{megapixels:.3f} MP per call; median of {args.rounds * args.repeats} calls; "
        f"load avg (1 min) {load_before[0]:.1f} before, {load_after[0]:.1f} after "
        f"on {os.cpu_count()} CPUs"
    )
    print_table(rows)
    for name, value in ratios.items():
        print(f"{name}: {value:.2f}x")
    if breakdown:
        print("\n| piece (exact pipeline, batch) | median ms |\n|---|---:|")
        for name, timing in breakdown.items():
            print(f"| {name} | {timing['median_s'] * 1e3:.1f} |")
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": platform.machine(),
        "cpu": bench_utils.cpu_model(),
        "cpus": os.cpu_count(),
        "loadavg_1min": {"before": load_before[0], "after": load_after[0]},
        "jax": jax.__version__,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "batch": args.batch,
        "size": args.size,
        "quality": args.quality,
        "subsampling": "4:2:0",
        "megapixels_per_call": megapixels,
        "fidelity_reference": "Pillow decode of Pillow encode, same QF and subsampling, 8-bit",
        "rows": rows,
        "ratios": ratios,
        "breakdown_s": {name: t["median_s"] for name, t in breakdown.items()},
        "notes": notes,
    }
    print()
    bench_utils.write_json(args.out, result)


if __name__ == "__main__":
    main()
