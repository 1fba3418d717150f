"""The demo's report: restore a held-out embedded photo with a trained generator."""

from __future__ import annotations

import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from jpeg_jax import input_pipeline, jpeg, metrics, visualize
from jpeg_jax.datasets import embedded

FIGURE_CROP = ((20, 220), (140, 340))  # rows, columns of the astronaut's face


@functools.cache
def jitted_apply(generator):
    """``jit(apply)(params, y, qtables, key)`` for one generator module, compiled once per shape.

    Params and inputs are arguments, not closed-over constants that XLA would try to fold.
    """
    return jax.jit(lambda p, y, q, k: generator.apply({"params": p}, y, q, rngs={"noise": k}))


def restore_samples(generator, params, image: jpeg.JpegImage, key, num_samples: int):
    """``num_samples`` restorations of one file (whole image), clipped to [0, 1]."""
    y = jnp.asarray(image.pixels[None] / 255.0, jnp.float32)
    qtables = jnp.asarray(image.qtables[None])
    apply = jitted_apply(generator)
    keys = jax.random.split(key, num_samples)
    samples = [np.asarray(apply(params, y, qtables, k))[0] for k in keys]
    return np.clip(np.stack(samples), 0.0, 1.0)


def demo_report(generator, params, workdir: str, *, quality: int, seed: int = 0) -> dict:
    """Figure + metrics for the held-out photo: is the mean of the samples better than y?

    Writes ``demo.png`` (JPEG input, 4 samples, mean of 16, original), ``demo_std.png``
    (per-pixel uncertainty) and ``demo_metrics.json`` into ``workdir``.
    """
    name = embedded.HELD_OUT[0]
    x = embedded.load_photo(name)
    image = jpeg.read_jpeg(input_pipeline.encode_jpeg(x, quality))
    samples = restore_samples(generator, params, image, jax.random.key(seed), 16)
    mean = samples.mean(axis=0)
    x01, y01 = x / 255.0, image.pixels / 255.0
    cons_sample = jpeg.consistency(jnp.asarray(samples[0]), image, backend="libjpeg")
    cons_mean = jpeg.consistency(jnp.asarray(mean), image, backend="libjpeg")
    report = {
        "photo": name,
        "quality": quality,
        "psnr_jpeg": float(metrics.psnr(y01, x01)),
        "psnr_sample": float(np.mean(metrics.psnr(samples, np.broadcast_to(x01, samples.shape)))),
        "psnr_mean": float(metrics.psnr(mean, x01)),
        "consistency_rmse_sample": float(cons_sample["rmse"]),
        "consistency_rmse_mean": float(cons_mean["rmse"]),
        "mean_pixel_std": metrics.mean_pixel_std(samples),
    }
    report["mean_beats_jpeg"] = report["psnr_mean"] > report["psnr_jpeg"]
    titles = {
        "y": f"{report['psnr_jpeg']:.2f} dB",
        "mean": f"{report['psnr_mean']:.2f} dB",
        **{f"sample{i}": f"{metrics.psnr(s, x01):.2f} dB" for i, s in enumerate(samples[:4])},
    }
    # The figure shows the face at full resolution; the metrics cover the whole photo.
    crop = (slice(*FIGURE_CROP[0]), slice(*FIGURE_CROP[1]))
    visualize.realisations_figure(
        y01[crop],
        samples[:4][(slice(None), *crop)],
        x01[crop],
        os.path.join(workdir, "demo.png"),
        mean=mean[crop],
        mean_count=len(samples),
        titles=titles,
    )
    visualize.uncertainty_figure(
        metrics.pixel_std(samples[(slice(None), *crop)]), os.path.join(workdir, "demo_std.png")
    )
    with open(os.path.join(workdir, "demo_metrics.json"), "w") as f:
        json.dump(report, f, indent=2)
    return report


def format_report(report: dict) -> str:
    verdict = "beats" if report["mean_beats_jpeg"] else "does NOT beat"
    return (
        f"demo ({report['photo']}, QF {report['quality']}): PSNR JPEG {report['psnr_jpeg']:.2f} dB"
        f" | sample {report['psnr_sample']:.2f} dB | mean of 16 {report['psnr_mean']:.2f} dB"
        f" ({verdict} the JPEG) | consistency RMSE sample {report['consistency_rmse_sample']:.2f}"
        f", mean {report['consistency_rmse_mean']:.2f} | per-pixel std"
        f" {report['mean_pixel_std']:.2f}"
    )
