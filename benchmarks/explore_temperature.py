"""Temperature: how scaling the injected noise changes diversity and PSNR (a trained export).

Usage (from the repository root, after the demo: ``python train.py --config=configs/demo.py
--workdir=runs/demo``; a few minutes on 2 CPU cores):

    python benchmarks/explore_temperature.py
    python benchmarks/explore_temperature.py --checkpoint EXPORT --quality 10 --num-samples 8

For the demo's held-out photo (astronaut, 512², never trained on) at JPEG quality Q, draws N
samples at each temperature tau with ``jpeg_jax.sampling.restore(temperature=tau)`` (the same
noise keys at every tau) and reports, in 8-bit units: the mean per-pixel std over the samples
(diversity), the PSNR of one sample (mean over the N) and of the samples' mean, both against the
original, the PSNR of the JPEG itself, and the consistency RMSE of one sample.

Prints a table and writes ``benchmarks/results/explore_temperature.json``.
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

from jpeg_jax import export, jpeg, metrics, sampling  # noqa: E402
from jpeg_jax.datasets import embedded  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # benchmarks.*
from benchmarks import bench_utils  # noqa: E402

RESULTS = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "results", "explore_temperature.json"
)
TEMPERATURES = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0)


def measure(model, image: jpeg.JpegImage, x: np.ndarray, temperature: float, n: int) -> dict:
    """Diversity, PSNR and consistency of ``n`` samples at one temperature."""
    r = sampling.restore(model, image, n, jax.random.key(0), temperature=temperature)
    originals = np.broadcast_to(x, r.samples.shape)
    consistency = jpeg.consistency(r.samples[0], image, backend="libjpeg")
    return {
        "temperature": temperature,
        "mean_pixel_std": metrics.mean_pixel_std(r.samples),
        "psnr_sample": float(np.mean(metrics.psnr(r.samples, originals))),
        "psnr_mean": float(metrics.psnr(r.samples.mean(axis=0), x)),
        "consistency_rmse_sample": float(consistency["rmse"]),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", default="runs/demo/export", help="an export directory")
    p.add_argument("--quality", type=int, default=10, help="JPEG quality (the demo trains at 10)")
    p.add_argument("--num-samples", type=int, default=8)
    p.add_argument("--temperatures", type=float, nargs="+", default=list(TEMPERATURES))
    p.add_argument("--out", default=RESULTS)
    args = p.parse_args()
    model = export.load(args.checkpoint)
    name = embedded.HELD_OUT[0]
    original = embedded.load_photo(name)
    image = jpeg.read_jpeg(jpeg.pillow_encode(original, quality=args.quality))
    x = original / 255.0
    rows = [measure(model, image, x, t, args.num_samples) for t in args.temperatures]
    record = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "load_average": os.getloadavg(),
        "checkpoint": args.checkpoint,
        "photo": f"{name} {original.shape[0]}x{original.shape[1]}",
        "quality": args.quality,
        "num_samples": args.num_samples,
        "psnr_jpeg": float(metrics.psnr(image.pixels / 255.0, x)),
        "rows": rows,
    }
    print(
        f"temperature: {args.checkpoint}, {record['photo']} QF {args.quality}, "
        f"{args.num_samples} samples; JPEG PSNR {record['psnr_jpeg']:.2f} dB"
    )
    print("| tau | per-pixel std (grey levels) | PSNR one sample (dB) | PSNR mean (dB) "
          "| consistency RMSE one sample |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['temperature']:g} | {r['mean_pixel_std']:.3f} | {r['psnr_sample']:.2f} "
            f"| {r['psnr_mean']:.2f} | {r['consistency_rmse_sample']:.2f} |"
        )
    bench_utils.write_json(args.out, record)


if __name__ == "__main__":
    main()
