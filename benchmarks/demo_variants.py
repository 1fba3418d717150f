"""Demo training variants: what each costs and how much it gains over the JPEG, on unseen photos.

Usage (from the repository root; each variant is one demo training, minutes on 2 CPU cores):

    python benchmarks/demo_variants.py --list
    python benchmarks/demo_variants.py final regression
    python benchmarks/demo_variants.py --eval-only final      # re-evaluate existing exports

Each variant is ``train.py --config=configs/demo.py`` with a few ``--config.key=value``
overrides (:data:`VARIANTS`), run in its own process under ``/usr/bin/time -v`` (wall time, CPU
time = user + system, peak memory) into ``runs/demo_variants/NAME``, with the load average
(``/proc/loadavg``) before and after. Its export is then evaluated at QF 10 on photos it never
saw: the held-out ``astronaut`` and, to check that choices generalise, three photos outside the
embedded set (``grace_hopper`` from matplotlib's sample data, scikit-image's grey ``camera`` and
``coins`` as RGB). Per photo: PSNR of the JPEG, of one sample (mean over 16) and of the mean of
16 samples (a regression export: its deterministic output), blockiness in the file's flat
blocks, consistency RMSE and per-pixel std (:func:`jpeg_jax.demo.evaluate_photo`).

Prints a table and merges results into ``benchmarks/results/demo_variants.json``.
"""

from __future__ import annotations

from jpeg_jax.platform import configure_xla

configure_xla()

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from jpeg_jax import demo, export  # noqa: E402
from jpeg_jax.datasets import embedded  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # benchmarks.*
from benchmarks import bench_utils  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "results", "demo_variants.json")
RUNS = os.path.join(ROOT, "runs", "demo_variants")
QUALITY = 10

_NATIVE_SKIP = [
    "--config.mode=regression",
    "--config.data.max_crop_side=64",
    "--config.model.generator.input_skip=True",
]
_FAST = ["--config.optim.b1=0.9", "--config.optim.lr_init=2e-3"]


def _steps(n: int) -> list[str]:
    """Run length, with the lr and lambda_C schedules stretched to it."""
    return [
        f"--config.num_train_steps={n}",
        f"--config.optim.lr_steps={n}",
        f"--config.loss.consistency_steps={n}",
    ]


# name -> (what it tests, overrides of configs/demo.py)
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "final": ("configs/demo.py as committed", []),
    "smoke": (
        "20 steps, 10 of them regression warm-up (checks the script)",
        [
            "--config.num_train_steps=20",
            "--config.regression_warmup_steps=10",
            "--config.log_every_steps=5",
            "--config.eval_every_steps=10",
        ],
    ),
    "reg_default_crops": (
        "regression only, the pipeline's default crops (side up to the short side)",
        ["--config.mode=regression"],
    ),
    "reg_native_crops": (
        "regression only, crops of side 32..64 (scale 1-2x)",
        ["--config.mode=regression", "--config.data.max_crop_side=64"],
    ),
    "reg_default_skip": (
        "regression, default crops, input skip (output = y + network)",
        ["--config.mode=regression", "--config.model.generator.input_skip=True"],
    ),
    "reg_native_skip": (
        "regression, crops of side 32..64, input skip",
        [
            "--config.mode=regression",
            "--config.data.max_crop_side=64",
            "--config.model.generator.input_skip=True",
        ],
    ),
    "reg_b09_lr2e-3": (
        "reg_native_skip + Adam b1 0.9, lr 2e-3",
        [*_NATIVE_SKIP, "--config.optim.b1=0.9", "--config.optim.lr_init=2e-3"],
    ),
    "reg_b09_lr1e-3": (
        "reg_native_skip + Adam b1 0.9, lr 1e-3",
        [*_NATIVE_SKIP, "--config.optim.b1=0.9", "--config.optim.lr_init=1e-3"],
    ),
    "reg_b0_lr2e-3": (
        "reg_native_skip + lr 2e-3 (Adam b1 0, the paper's)",
        [*_NATIVE_SKIP, "--config.optim.lr_init=2e-3"],
    ),
    "reg_zero_init": (
        "reg_b09_lr2e-3 with conv_last initialised to zero (training starts at y; code since"
        " reverted: it diverged at step ~300 and stalled at the JPEG's MSE)",
        [*_NATIVE_SKIP, *_FAST],
    ),
    "reg_3000": (
        "reg_b09_lr2e-3 for 3000 steps",
        [*_NATIVE_SKIP, *_FAST, *_steps(3000)],
    ),
    "reg_1rrdb_5000": (
        "reg_b09_lr2e-3 with one RRDB (0.58x the step cost), 5000 steps (~ reg_3000's cost)",
        [*_NATIVE_SKIP, *_FAST, *_steps(5000), "--config.model.generator.num_block=1"],
    ),
    "reg_3000_lr3e-3": (
        "reg_3000 with lr 3e-3",
        [*_NATIVE_SKIP, *_FAST, *_steps(3000), "--config.optim.lr_init=3e-3"],
    ),
    "regc_3000": (
        "reg_3000 as a GAN-mode run that is all warm-up, with lambda_C * C in the warm-up loss"
        " (loss.warmup_consistency, since removed: no gain)",
        [
            *_NATIVE_SKIP[1:],
            *_FAST,
            *_steps(3000),
            "--config.regression_warmup_steps=3000",
            "--config.loss.warmup_consistency=True",
        ],
    ),
    "gan_w1500_g1500": (
        "1500 regression warm-up steps then 1500 GAN steps, one lr cosine from 2e-3 (b1 0.9)",
        [*_NATIVE_SKIP[1:], *_FAST, *_steps(3000), "--config.regression_warmup_steps=1500"],
    ),
}


def load_photo(name: str) -> np.ndarray:
    """uint8 (H, W, 3) of an evaluation photo (embedded, matplotlib's sample or skimage grey)."""
    if name in embedded.PHOTOS:
        return embedded.load_photo(name)
    if name == "grace_hopper":
        import matplotlib.cbook

        with Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg")) as image:
            return np.asarray(image.convert("RGB"))
    import skimage.data

    grey = getattr(skimage.data, name)()
    return np.repeat(grey[..., None], 3, axis=-1).astype(np.uint8)


PHOTOS = ("astronaut", "grace_hopper", "camera", "coins")


def _time_field(text: str, label: str) -> str:
    match = re.search(rf"{re.escape(label)}: (.+)", text)
    return match.group(1).strip() if match else ""


def _seconds(clock: str) -> float:
    parts = [float(p) for p in clock.split(":")]
    return sum(p * 60**i for i, p in enumerate(reversed(parts)))


def train(name: str, overrides: list[str], timeout: int) -> dict:
    """One demo training in a subprocess; wall/CPU time, peak memory and load average."""
    workdir = os.path.join(RUNS, name)
    cmd = [
        "/usr/bin/time",
        "-v",
        sys.executable,
        "train.py",
        "--config=configs/demo.py",
        f"--workdir={workdir}",
        "--config.demo_figure=False",
        *overrides,
    ]
    load_before = bench_utils.load_average()
    start = time.time()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{name}: train.py failed:\n{proc.stderr[-3000:]}")
    err = proc.stderr
    cpu = float(_time_field(err, "User time (seconds)")) + float(
        _time_field(err, "System time (seconds)")
    )
    return {
        "overrides": overrides,
        "wall_s": _seconds(_time_field(err, "Elapsed (wall clock) time (h:mm:ss or m:ss)")),
        "cpu_s": cpu,
        "max_rss_mib": int(_time_field(err, "Maximum resident set size (kbytes)")) / 1024,
        "load_before": load_before,
        "load_after": bench_utils.load_average(),
        "finished_utc": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M"),
        "measured_wall_s": time.time() - start,
    }


def evaluate(name: str, photos=PHOTOS) -> dict:
    """Metrics of a variant's export on each photo (see the module docstring)."""
    model = export.load(os.path.join(RUNS, name, "export"))
    with open(os.path.join(RUNS, name, "config.json")) as f:
        config = json.load(f)
    # A regression model, or a GAN-mode run that never left its regression warm-up.
    deterministic = config["mode"] == "regression" or (
        config["regression_warmup_steps"] >= config["num_train_steps"]
    )
    out = {}
    for photo in photos:
        result = demo.evaluate_photo(
            model, load_photo(photo), quality=QUALITY, deterministic=deterministic
        )
        rows = result["rows"]
        out[photo] = {
            "psnr_jpeg": rows["jpeg"]["psnr"],
            "psnr_sample": rows["sample"]["psnr"],
            "psnr_mean": rows["mean"]["psnr"],
            "gain_mean_db": rows["mean"]["psnr"] - rows["jpeg"]["psnr"],
            "gain_sample_db": rows["sample"]["psnr"] - rows["jpeg"]["psnr"],
            "blockiness_jpeg": rows["jpeg"]["blockiness_flat"],
            "blockiness_sample": rows["sample"]["blockiness_flat"],
            "consistency_sample": rows["sample"]["consistency_rmse"],
            "sharpness_sample": rows["sample"]["sharpness"],
            "std": rows["sample"]["std"],
        }
    return out


def print_table(results: dict, names) -> None:
    print(
        "| variant | wall | CPU | load | astronaut mean / sample gain (dB) | blockiness "
        "JPEG -> sample | std | others: mean gain (dB) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for name in names:
        r = results[name]
        a = r["eval"]["astronaut"]
        others = ", ".join(
            f"{p} {v['gain_mean_db']:+.2f}" for p, v in r["eval"].items() if p != "astronaut"
        )
        t = r.get("train", {})
        print(
            f"| {name} | {t.get('wall_s', float('nan')):.0f} s | {t.get('cpu_s', float('nan')):.0f}"
            f" s | {t.get('load_before', [float('nan')])[0]:.1f} | {a['gain_mean_db']:+.2f} / "
            f"{a['gain_sample_db']:+.2f} | {a['blockiness_jpeg']:.0f} -> "
            f"{a['blockiness_sample']:.2f} | {a['std']:.2f} | {others} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="*", help="names from --list")
    parser.add_argument("--list", action="store_true", help="list the variants and exit")
    parser.add_argument("--eval-only", action="store_true", help="evaluate existing exports")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per training")
    args = parser.parse_args()
    if args.list or not args.variants:
        for name, (what, overrides) in VARIANTS.items():
            print(f"{name:24s} {what}: {' '.join(overrides) or '(none)'}")
        return
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; see --list")
    results = {}
    if os.path.exists(RESULTS):
        with open(RESULTS) as f:
            results = json.load(f)
    for name in args.variants:
        what, overrides = VARIANTS[name]
        entry = results.get(name, {}) if args.eval_only else {}
        entry["description"] = what
        if not args.eval_only:
            print(f"--- {name}: training ({' '.join(overrides) or 'no overrides'})", flush=True)
            entry["train"] = train(name, overrides, args.timeout)
        entry["eval"] = evaluate(name)
        results[name] = entry
        bench_utils.write_json(RESULTS, results, sort_keys=True)
        print_table(results, [name])
    print_table(results, args.variants)


if __name__ == "__main__":
    main()
