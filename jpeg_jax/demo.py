"""The demo's report: restore a held-out photo with a trained generator, measure it, draw it.

After ``python train.py --config=configs/demo.py --workdir=runs/demo`` the training loop calls
:func:`demo_report`, which writes into the workdir ``demo.png`` (the held-out photo's JPEG
input, samples, their mean and the original, with a 4x zoom of one region), ``demo_std.png``
(per-pixel std of the samples) and ``demo_metrics.json``; :func:`format_report` is the line it
prints. :func:`evaluate_photo` and :func:`image_metrics` are the measurements, shared with
``jpeg_jax.demo_table`` (Table 4 at demo scale) and ``benchmarks/demo_variants.py``.

Metrics per image, in 8-bit units: PSNR (dB, RGB, unrounded float restoration), consistency RMSE
(grey levels, libjpeg round trip as the paper's tables), in-bin % (coefficients inside the
file's quantization bins), blockiness in the file's flat blocks and sharpness relative to the
original (:mod:`jpeg_jax.image_stats`).
"""

from __future__ import annotations

import io
import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jpeg_jax import fileio, image_stats, jpeg, metrics, sampling
from jpeg_jax.datasets import embedded

NUM_SAMPLES = 16
FIGURE_CROP = ((20, 220), (140, 340))  # rows, columns of the astronaut's face (full resolution)
ZOOM = ((60, 110), (40, 90))  # rows, columns inside FIGURE_CROP shown 4x: eye, cheek, hair
ZOOM_FACTOR = 4


def encode_photo(x: np.ndarray, quality: int) -> jpeg.JpegImage:
    """The JPEG file (4:2:0, Pillow/libjpeg) of a uint8 ``(H, W, 3)`` photo, read back."""
    return jpeg.read_jpeg(jpeg.pillow_encode(x, quality=quality))


def image_metrics(images: np.ndarray, x: np.ndarray, image: jpeg.JpegImage) -> dict[str, float]:
    """The table's per-image metrics of ``(N, H, W, 3)`` restorations, averaged over the N.

    Args:
      images: float restorations in [0, 1] (projected ones may leave it slightly).
      x: the original, float ``(H, W, 3)`` in [0, 1].
      image: the JPEG file the restorations came from.

    Returns:
      ``psnr`` (dB), ``consistency_rmse`` (grey levels), ``in_bin`` (%), ``blockiness_flat``
      (boundary/interior ratio in the file's DC-only luma blocks; 1 = no grid), ``sharpness``
      (high-frequency energy / the original's).
    """
    images = np.asarray(images, np.float32)
    cons = jpeg.consistency(jnp.asarray(images), image, backend="libjpeg")
    flat = image_stats.flat_blocks(image.coefficients.y)
    return {
        "psnr": float(np.mean(metrics.psnr(images, np.broadcast_to(x, images.shape)))),
        "consistency_rmse": float(np.mean(cons["rmse"])),
        "in_bin": 100.0 * float(np.mean(cons["in_bin"])),
        "blockiness_flat": float(np.mean(image_stats.blockiness(images, mask=flat))),
        "sharpness": float(np.mean(image_stats.sharpness(images, x))),
    }


def draw_samples(
    model: Any,
    image: jpeg.JpegImage,
    num_samples: int,
    *,
    seed: int = 0,
    deterministic: bool = False,
    project: bool = False,
) -> np.ndarray:
    """``(N, H, W, 3)`` restorations of a file by :func:`jpeg_jax.sampling.restore`.

    ``model`` is an export, an export directory or a ``(Generator, params)`` pair.
    """
    return sampling.restore(
        model,
        image,
        num_samples,
        jax.random.key(seed),
        project=project,
        deterministic=deterministic,
        batch_size=1,  # fastest on CPU (benchmarks/RESULTS.md, Sampling)
    ).samples


def evaluate_photo(
    model: Any,
    x: np.ndarray,
    *,
    quality: int,
    num_samples: int = NUM_SAMPLES,
    seed: int = 0,
    deterministic: bool = False,
) -> dict[str, Any]:
    """JPEG input, samples and their mean for one uint8 ``(H, W, 3)`` photo, with metrics.

    Returns:
      ``rows``: ``{"jpeg", "sample", "mean": metrics dict}`` (``sample`` averages the per-sample
      metrics; a deterministic model gives one sample, and its mean is that sample), with
      ``std`` (mean per-pixel std over samples, grey levels) on ``sample``; ``images``:
      ``x``, ``y`` float ``(H, W, 3)``, ``samples`` ``(N, H, W, 3)``, ``mean``; ``jpeg``: the file.
    """
    image = encode_photo(x, quality)
    x01, y01 = x / np.float32(255.0), image.pixels / np.float32(255.0)
    n = 1 if deterministic else num_samples
    samples = draw_samples(model, image, n, seed=seed, deterministic=deterministic)
    mean = samples.mean(axis=0)
    rows = {
        "jpeg": image_metrics(y01[None], x01, image),
        "sample": image_metrics(samples, x01, image),
        "mean": image_metrics(mean[None], x01, image),
    }
    rows["sample"]["std"] = metrics.mean_pixel_std(samples) if n > 1 else 0.0
    images = {"x": x01, "y": y01, "samples": samples, "mean": mean}
    return {"rows": rows, "images": images, "jpeg": image}


def _crop(image: np.ndarray, box) -> np.ndarray:
    (r0, r1), (c0, c1) = box
    return image[..., r0:r1, c0:c1, :]


def zoom_figure(
    panels: list[tuple[str, np.ndarray]], path: str, *, crop=FIGURE_CROP, zoom=ZOOM
) -> str:
    """Panels (title, float ``(H, W, 3)`` in [0, 1]) cropped, and a 4x zoom of a region below.

    Top row: ``crop`` (rows, columns; default the astronaut's face) of each panel at full
    resolution, the zoomed region outlined; bottom row: ``zoom`` (rows, columns inside the crop)
    enlarged ``ZOOM_FACTOR`` times by pixel replication, so 8x8 blocks and fine texture show as
    they are. Writes a PNG atomically and returns its path.
    """
    import matplotlib.patches as mpatches

    from jpeg_jax import visualize

    plt = visualize.plt
    (zr0, zr1), (zc0, zc1) = zoom
    fig, axes = plt.subplots(2, len(panels), figsize=(2.6 * len(panels), 5.6), squeeze=False)
    for k, (title, image) in enumerate(panels):
        face = np.clip(_crop(image, crop), 0.0, 1.0)
        zoom = np.repeat(np.repeat(face[zr0:zr1, zc0:zc1], ZOOM_FACTOR, 0), ZOOM_FACTOR, 1)
        axes[0, k].imshow(face, interpolation="nearest")
        axes[0, k].add_patch(
            mpatches.Rectangle(
                (zc0 - 0.5, zr0 - 0.5), zc1 - zc0, zr1 - zr0, fill=False, ec="yellow", lw=1
            )
        )
        axes[0, k].set_title(title, fontsize=9)
        axes[1, k].imshow(zoom, interpolation="nearest")
        axes[1, k].set_title(f"{ZOOM_FACTOR}x zoom", fontsize=8)
        for ax in axes[:, k]:
            ax.axis("off")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    fileio.write_file(path, buffer.getvalue())
    return path


def demo_report(generator, params, workdir: str, *, quality: int, seed: int = 0) -> dict:
    """Figure + metrics for the held-out photo: are the samples deblocked, is their mean better?

    Writes ``demo.png`` (JPEG input, 3 samples, mean of 16, original; face crop and 4x zoom),
    ``demo_std.png`` (per-pixel std over the 16 samples) and ``demo_metrics.json`` into
    ``workdir``. Returns the metrics (``rows`` of :func:`evaluate_photo` plus ``photo``,
    ``quality``, ``gain_mean_db`` = PSNR of the mean - PSNR of the JPEG).
    """
    name = embedded.HELD_OUT[0]
    result = evaluate_photo(
        (generator, params), embedded.load_photo(name), quality=quality, seed=seed
    )
    rows, images = result["rows"], result["images"]
    report = {
        "photo": name,
        "quality": quality,
        "num_samples": NUM_SAMPLES,
        "rows": rows,
        "gain_mean_db": rows["mean"]["psnr"] - rows["jpeg"]["psnr"],
    }
    x01, samples = images["x"], images["samples"]
    panels = [(f"JPEG QF {quality}\n{rows['jpeg']['psnr']:.2f} dB", images["y"])]
    panels += [
        (f"sample {i + 1}\n{metrics.psnr(s, x01):.2f} dB", s) for i, s in enumerate(samples[:3])
    ]
    panels += [(f"mean of {len(samples)}\n{rows['mean']['psnr']:.2f} dB", images["mean"])]
    panels += [("original\n", x01)]
    zoom_figure(panels, os.path.join(workdir, "demo.png"))
    from jpeg_jax import visualize

    visualize.uncertainty_figure(
        metrics.pixel_std(_crop(samples, FIGURE_CROP)), os.path.join(workdir, "demo_std.png")
    )
    fileio.write_file(os.path.join(workdir, "demo_metrics.json"), json.dumps(report, indent=2))
    return report


def format_report(report: dict) -> str:
    """One line: PSNR of the JPEG, a sample and the mean; blockiness; consistency; std."""
    r = report["rows"]
    gain = report["gain_mean_db"]
    return (
        f"demo ({report['photo']}, QF {report['quality']}): PSNR JPEG {r['jpeg']['psnr']:.2f} dB"
        f" | sample {r['sample']['psnr']:.2f} dB | mean of {report['num_samples']}"
        f" {r['mean']['psnr']:.2f} dB ({gain:+.2f} dB vs the JPEG) | blockiness in flat blocks"
        f" JPEG {r['jpeg']['blockiness_flat']:.1f}, sample {r['sample']['blockiness_flat']:.2f}"
        f" | consistency RMSE sample {r['sample']['consistency_rmse']:.2f} grey levels"
        f" | per-pixel std {r['sample']['std']:.2f} grey levels"
    )
