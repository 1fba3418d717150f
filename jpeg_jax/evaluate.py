"""The appendix's evaluation protocol (Tables 4 and 5) for an exported generator.

Rows: the JPEG decode itself, one posterior sample, "-A" (the mean of ``num_samples`` samples,
an MMSE estimate) and "-P" (one sample projected onto the file's consistent set). Columns: FID
(mean +- std over ``fid_repeats`` independent samplings; needs Inception weights), KID,
consistency (RMSE in grey levels of the libjpeg round trip vs the JPEG decode, as the paper's
tables), in-bin fraction, PSNR and the mean per-pixel standard deviation over samples.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tqdm

from jpeg_jax import export, input_pipeline, jpeg, metrics, sampling, visualize

ROWS = ("JPEG", "sample", "-A", "-P")


def _consistency(image: np.ndarray, jpeg_image: jpeg.JpegImage) -> tuple[float, float]:
    c = jpeg.consistency(jnp.asarray(image), jpeg_image, backend="libjpeg")
    return float(c["rmse"]), float(c["in_bin"])


def _evaluate_image(exported, jpeg_image, x, key, num_samples, fid_repeats):
    """Per-row images and scalar metrics of one test image."""
    restoration = sampling.restore(exported, jpeg_image, num_samples, key, return_std=True)
    samples = np.clip(restoration.samples, 0.0, 1.0)
    mean = samples.mean(axis=0)
    projected = sampling.restore(
        exported, jpeg_image, fid_repeats, jax.random.fold_in(key, 1), project=True
    ).samples
    y = jpeg_image.pixels / 255.0
    images = {
        "JPEG": [y] * fid_repeats,
        "sample": list(samples[:fid_repeats]),
        "-A": [mean] * fid_repeats,
        "-P": [np.clip(p, 0, 1) for p in projected],
    }
    scalars = {}
    for row, candidates in images.items():
        rmse, in_bin = _consistency(candidates[0], jpeg_image)
        scalars[row] = {
            "psnr": float(metrics.psnr(candidates[0], x)),
            "consistency": rmse,
            "in_bin": in_bin,
        }
    scalars["sample"]["pixel_std"] = metrics.mean_pixel_std(samples)
    figures = {"y": y, "samples": samples[:4], "mean": mean, "x": x, "std": restoration.std * 255}
    return images, scalars, figures


def _fid_rows(features: dict, real: np.ndarray) -> dict:
    out = {}
    for row, per_repeat in features.items():
        fids = [metrics.fid_from_features(real, np.stack(f)) for f in per_repeat]
        out[row] = {"fid": float(np.mean(fids)), "fid_std": float(np.std(fids))}
        if len(real) >= 2:
            size = min(len(real), 1000)
            out[row]["kid"] = float(metrics.kid(real, np.stack(per_repeat[0]), subset_size=size)[0])
    return out


def evaluate(
    export_path: str,
    data_config: ml_collections.ConfigDict,
    out_dir: str,
    *,
    num_samples: int = 16,
    fid_repeats: int = 3,
    inception_path: str | None = None,
    seed: int = 0,
) -> dict:
    """Run the protocol over ``data_config``'s evaluation split; write metrics, table, figures.

    Args:
      export_path: a generator export (``jpeg_jax.export``).
      data_config: ``config.data`` (source, eval_split, eval_quality, eval_crop, ...).
      out_dir: where ``metrics.json``, ``metrics.md`` and the figures go.
      num_samples: samples per image for "-A" and the per-pixel std (paper: 16 or more).
      fid_repeats: independent samplings for FID's mean +- std.
      inception_path: FID Inception weights (``python -m jpeg_jax.models.convert_inception``);
        without them FID/KID are skipped and the table says so.

    Returns:
      The metrics dict written to ``metrics.json``.
    """
    exported = export.load(export_path)
    extract = None
    if inception_path:
        extract = metrics.InceptionFeatureExtractor.from_file(inception_path)
    os.makedirs(out_dir, exist_ok=True)
    key = jax.random.key(seed)
    sums = defaultdict(lambda: defaultdict(list))
    features = defaultdict(lambda: [[] for _ in range(fid_repeats)])
    real_features = []
    batches = input_pipeline.create_eval_dataset(data_config, batch_size=1)
    for i, batch in enumerate(tqdm.tqdm(batches, desc="eval", unit="image")):
        jpeg_image = jpeg.read_jpeg(bytes(batch["jpeg"][0]))
        x = batch["x"][0]
        images, scalars, figures = _evaluate_image(
            exported, jpeg_image, x, jax.random.fold_in(key, i), num_samples, fid_repeats
        )
        for row, values in scalars.items():
            for name, value in values.items():
                sums[row][name].append(value)
        if extract is not None:
            real_features.append(extract(metrics.to_8bit(x[None]) / 255.0)[0])
            for row, candidates in images.items():
                for r, image in enumerate(candidates):
                    features[row][r].append(extract(metrics.to_8bit(image[None]) / 255.0)[0])
        if i == 0:
            _write_figures(figures, jpeg_image, out_dir)
    if not sums:
        raise ValueError("the evaluation split is empty")
    result = {
        "export": os.path.abspath(export_path),
        "quality": data_config.eval_quality,
        "num_images": len(sums["JPEG"]["psnr"]),
        "num_samples": num_samples,
        "rows": {row: {k: float(np.mean(v)) for k, v in sums[row].items()} for row in ROWS},
    }
    if extract is not None:
        for row, values in _fid_rows(features, np.stack(real_features)).items():
            result["rows"][row].update(values)
    _write_outputs(result, out_dir)
    return result


def _write_figures(figures: dict, jpeg_image, out_dir: str) -> None:
    visualize.realisations_figure(
        figures["y"],
        figures["samples"],
        figures["x"],
        os.path.join(out_dir, "realisations.png"),
        mean=figures["mean"],
    )
    visualize.uncertainty_figure(figures["std"], os.path.join(out_dir, "uncertainty.png"))
    roundtrip = jpeg.libjpeg_compress(figures["samples"][0], jpeg_image.qtables,
                                      subsampling=jpeg_image.subsampling) / 255.0  # fmt: skip
    visualize.difference_figure(
        roundtrip,
        figures["y"],
        os.path.join(out_dir, "recompression_difference.png"),
        title="|JPEG(sample) - y|: 0 where consistent",
    )


def format_table(result: dict) -> str:
    """The metrics as a markdown table (Table 4/5 layout)."""
    header = "| method | FID (lower) | KID | consistency (lower) | in-bin | PSNR (dB) | pixel std |"
    lines = [header, "|---|---|---|---|---|---|---|"]
    for row in ROWS:
        v = result["rows"][row]
        fid = f"{v['fid']:.2f} +- {v['fid_std']:.2f}" if "fid" in v else "n/a"
        kid = f"{v['kid']:.4f}" if "kid" in v else "n/a"
        std = f"{v['pixel_std']:.2f}" if "pixel_std" in v else ""
        lines.append(
            f"| {row} | {fid} | {kid} | {v['consistency']:.4f} | {v['in_bin']:.4f} "
            f"| {v['psnr']:.4f} | {std} |"
        )
    note = "" if "fid" in result["rows"]["JPEG"] else "\nFID/KID: no Inception weights given.\n"
    return (
        f"QF {result['quality']}, {result['num_images']} images, "
        f"{result['num_samples']} samples per image for -A and the std.\n\n"
        + "\n".join(lines)
        + "\n"
        + note
    )


def _write_outputs(result: dict, out_dir: str) -> None:
    for name, text in (
        ("metrics.json", json.dumps(result, indent=2)),
        ("metrics.md", format_table(result)),
    ):
        tmp = os.path.join(out_dir, f".{name}.tmp")
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, os.path.join(out_dir, name))
