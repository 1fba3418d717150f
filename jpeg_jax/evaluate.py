"""The appendix's evaluation protocol (Tables 4 and 5) for an exported generator.

Rows, as the paper's tables: "JPEG" (the decoded input), "Regression" (an MMSE regression
model's output X̄(Y), with ``mmse_export``), "-A" (the mean of ``num_samples`` samples, an MMSE
estimate), "sample" (one posterior sample), "-P" (a sample projected onto the file's consistent
set) and "Ground truth" (x itself). Columns: FID (mean +- std over ``fid_repeats`` samplings for
the sampled rows "sample" and "-P"; one set, std 0, for the others), KID, consistency (RMSE in
grey levels of the libjpeg round trip vs the JPEG decode, as the paper's tables), in-bin
fraction, PSNR and the mean per-pixel standard deviation over the samples.

Every metric is computed on the 8-bit images a user would save (clip to [0, 1], x255, round),
as the authors' scripts do (they write PNGs and score those): PSNR, consistency and the FID/KID
features. Only the per-pixel std is taken over the float samples.

FID/KID reference: precomputed statistics of a separate image set (``fid_reference``, made by
:mod:`jpeg_jax.fid_stats`; the paper's are FFHQ-128's train split for Table 4 and the ImageNet
validation set for Table 5), or without one the ground truth of the test images themselves
("same-set", not comparable with the paper: the Ground-truth row is 0 by construction).
``metrics.json`` and ``metrics.md`` say which.

Batching: ``batch_size`` consecutive test images of one size go through one jitted call that
draws all their samples (:func:`sample_images`: ``sampling.sample_tile`` vmapped over images);
Inception features are computed in full batches across images and rows
(:class:`jpeg_jax.metrics.FeatureQueue`). Only the last batch is padded. Image ``i`` of the split
uses the key ``fold_in(PRNGKey(seed), i)`` and its samples are exactly those of
``sampling.restore(export, jpeg_i, num_samples, key_i)`` ("-P": ``fold_in(key_i, 1)``,
projected), so the metrics do not depend on ``batch_size`` (up to float rounding).
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections import defaultdict

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tqdm

from jpeg_jax import (
    export,
    fid_stats,
    fileio,
    input_pipeline,
    jpeg,
    metrics,
    sampling,
    visualize,
)
from jpeg_jax.datasets import subsets

ROWS = ("JPEG", "Regression", "-A", "sample", "-P", "Ground truth")
REPEATED_ROWS = ("sample", "-P")  # fid_repeats independent sets; the other rows have one
SAME_SET = "same-set"


@functools.partial(jax.jit, static_argnames=("model", "num_samples", "deterministic"))
def sample_images(
    model,
    variables,
    y: jax.Array,
    qtables: jax.Array,
    keys: jax.Array,
    *,
    num_samples: int,
    deterministic: bool = False,
) -> jax.Array:
    """``num_samples`` samples of each of B images in one call: ``sample_tile`` vmapped.

    Args:
      model, variables: from ``sampling.resolve_model``.
      y: (B, h, w, 3) float32 decoded JPEGs in [0, 1], h and w multiples of 16.
      qtables: (B, 2, 8, 8) their tables.
      keys: (B,) PRNG keys; sample ``s`` of image ``b`` is ``sampling.restore``'s sample ``s``
        for the key ``keys[b]`` (untiled).

    Returns:
      (B, num_samples, h, w, 3) float32 samples in [0, 1].
    """
    indices = jnp.arange(num_samples, dtype=jnp.int32)

    def one(y1, q1, k1):
        return sampling.sample_tile(
            model, variables, y1, q1, k1, indices, jnp.int32(0), deterministic=deterministic
        )

    return jax.vmap(one)(y, qtables, keys)


def _quantize(images: np.ndarray) -> np.ndarray:
    """The 8-bit image a user would save, as float32 in [0, 1]."""
    return (metrics.to_8bit(images) / metrics.MAX_8BIT).astype(np.float32)


class _Protocol:
    """Per-batch work and the running sums of one evaluation."""

    def __init__(self, exported, mmse, extractor, num_samples, fid_repeats, seed):
        self.model, self.variables = sampling.resolve_model(exported)
        self.mmse = sampling.resolve_model(mmse) if mmse is not None else None
        self.queue = metrics.FeatureQueue(extractor) if extractor is not None else None
        self.num_samples, self.fid_repeats = num_samples, fid_repeats
        self.key = jax.random.key(seed)
        self.scalars = defaultdict(lambda: defaultdict(list))
        self.figures = None

    def rows(self) -> tuple[str, ...]:
        return tuple(r for r in ROWS if r != "Regression" or self.mmse is not None)

    def run_batch(self, batch: dict, start: int, batch_size: int) -> None:
        """Evaluate ``batch`` (B images of one size; B <= batch_size), images ``start...``."""
        files = [jpeg.read_jpeg(bytes(data)) for data in batch["jpeg"]]
        if any(f.subsampling == "gray" for f in files):
            raise ValueError("grayscale JPEGs are not part of the evaluation protocol")
        x = batch["x"]
        y = np.stack([f.pixels for f in files]) / np.float32(255.0)
        draw = self._sampler(y, files, start, batch_size)
        samples = draw(self.model, self.variables, self.num_samples)
        projected = draw(self.model, self.variables, self.fid_repeats, fold=1)
        projected = np.stack(
            [[sampling.project_exact(s, f) for s in p] for p, f in zip(projected, files)]
        )
        images = {
            "JPEG": [y],
            "-A": [samples.mean(axis=1)],
            "sample": [samples[:, r] for r in range(self.fid_repeats)],
            "-P": [projected[:, r] for r in range(self.fid_repeats)],
            "Ground truth": [x],
        }
        if self.mmse is not None:
            images["Regression"] = [draw(*self.mmse, 1, deterministic=True)[:, 0]]
        self._score(images, samples, files, x)
        if self.figures is None:
            self.figures = _figure_data(images, samples, y, x, files[0])

    def _sampler(self, y, files, start, batch_size):
        """``draw(model, variables, count, fold=None, deterministic=False)`` for this batch.

        The inputs are edge-padded to multiples of 16 (as ``sampling.restore``) and to a full
        batch (copies of the last image), so every batch reuses one compiled function; the
        result, (B, count, H, W, 3), is cut back to the batch's images and size.
        """
        count, h, w = y.shape[:3]
        fill = batch_size - count
        padded = jnp.asarray(np.pad(y, ((0, fill), (0, -h % 16), (0, -w % 16), (0, 0)), "edge"))
        qtables = jnp.asarray(
            np.stack([f.qtables for f in files] + [files[-1].qtables] * fill), jnp.int32
        )
        indices = np.concatenate(
            [np.arange(start, start + count), np.full(fill, start + count - 1)]
        )
        keys = jax.vmap(lambda i: jax.random.fold_in(self.key, i))(jnp.asarray(indices))

        def draw(model, variables, num, fold=None, deterministic=False):
            k = keys if fold is None else jax.vmap(lambda k: jax.random.fold_in(k, fold))(keys)
            out = sample_images(
                model, variables, padded, qtables, k, num_samples=num, deterministic=deterministic
            )
            return np.asarray(out)[:count, :, :h, :w]

        return draw

    def _score(self, images: dict, samples: np.ndarray, files: list, x: np.ndarray) -> None:
        """Per-image scalars of every row; Inception features queued (8-bit images)."""
        for row, sets in images.items():
            saved = [_quantize(s) for s in sets]
            for i, f in enumerate(files):
                c = jpeg.consistency(jnp.asarray(saved[0][i]), f, backend="libjpeg")
                self.scalars[row]["consistency"].append(float(c["rmse"]))
                self.scalars[row]["in_bin"].append(float(c["in_bin"]))
            if row != "Ground truth":
                psnr = metrics.psnr(saved[0], x, quantize=True)
                self.scalars[row]["psnr"].extend(float(p) for p in psnr)
            if self.queue is not None:
                for r, s in enumerate(saved):
                    self.queue.put((row, r), s)
        if self.num_samples >= 2:
            for per_image in samples:
                self.scalars["sample"]["pixel_std"].append(metrics.mean_pixel_std(per_image))


def _figure_data(images, samples, y, x, file) -> dict:
    first = samples[0]
    data = {"y": y[0], "samples": first[:4], "mean": first.mean(axis=0), "x": x[0], "file": file}
    if len(first) >= 2:
        data["std"] = metrics.pixel_std(first)  # grey levels
    if "Regression" in images:
        data["mmse"] = images["Regression"][0][0]
    return data


def evaluate(
    export_path: str,
    data_config: ml_collections.ConfigDict,
    out_dir: str,
    *,
    num_samples: int = 16,
    fid_repeats: int = 3,
    inception_path: str | None = None,
    fid_reference: str | None = None,
    mmse_export: str | None = None,
    batch_size: int = 8,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """Run the protocol over ``data_config``'s evaluation split; write metrics, table, figures.

    Args:
      export_path: a generator export (``jpeg_jax.export``).
      data_config: ``config.data`` (source, eval_split, eval_subset, eval_quality, eval_crop,
        fid_reference_split, ...).
      out_dir: where ``metrics.json``, ``metrics.md`` and the figures go.
      num_samples: samples per image for "-A" and the per-pixel std (paper: 16 or more).
      fid_repeats: independent samplings for FID's mean +- std ("sample" and "-P").
      inception_path: FID Inception weights (``python -m jpeg_jax.models.convert_inception``);
        without them FID/KID are skipped and the table says so.
      fid_reference: a statistics file of :mod:`jpeg_jax.fid_stats` (made first, from
        ``data_config.fid_reference_split``, if it does not exist); None: same-set comparison.
      mmse_export: an MMSE regression export: adds the "Regression" row and Figure 6's
        (x - X̄(Y))^2 panel.
      batch_size: test images per generator call (all their samples at once).
      seed: sampling seed.

    Returns:
      The metrics dict written to ``metrics.json``.
    """
    if num_samples < 1 or fid_repeats < 1 or batch_size < 1:
        raise ValueError("num_samples, fid_repeats and batch_size must be >= 1")
    if fid_repeats > num_samples:
        raise ValueError(f"fid_repeats ({fid_repeats}) cannot exceed num_samples ({num_samples})")
    if fid_reference and not inception_path:
        raise ValueError("--fid_reference needs the Inception weights (--inception)")
    extractor = reference = None
    if inception_path:
        extractor = metrics.InceptionFeatureExtractor.from_file(inception_path)
    if fid_reference:
        reference = fid_stats.load_or_compute(fid_reference, data_config, extractor, inception_path)
    mmse = export.load(mmse_export) if mmse_export else None
    protocol = _Protocol(export.load(export_path), mmse, extractor, num_samples, fid_repeats, seed)
    os.makedirs(out_dir, exist_ok=True)
    examples = input_pipeline.create_eval_dataset(data_config, batch_size=None)
    done = 0
    with tqdm.tqdm(desc="eval", unit="image", disable=not progress) as bar:
        for batch in input_pipeline.batch_by_shape(examples, batch_size):
            protocol.run_batch(batch, done, batch_size)
            done += len(batch["x"])
            bar.update(len(batch["x"]))
    if not done:
        raise ValueError("the evaluation split is empty")
    result = _summary(protocol, export_path, data_config, done, batch_size)
    if extractor is not None:
        _add_fid(result, protocol, reference, fid_reference)
    _write_figures(protocol.figures, out_dir)
    _write_outputs(result, out_dir)
    return result


def _summary(protocol, export_path, data_config, count, batch_size) -> dict:
    rows = {}
    for row in protocol.rows():
        values = {k: float(np.mean(v)) for k, v in protocol.scalars[row].items()}
        values.setdefault("psnr", None)  # Ground truth: infinite
        rows[row] = values
    result = {
        "export": os.path.abspath(export_path),
        "quality": data_config.eval_quality,
        "num_images": count,
        "num_samples": protocol.num_samples,
        "fid_repeats": protocol.fid_repeats,
        "batch_size": batch_size,
        "images_scored": "8-bit (clipped, x255, rounded), as saved to PNG",
        "rows": rows,
    }
    if data_config.eval_subset:
        listed = len(subsets.load_names(data_config.eval_subset))
        result["eval_subset"] = {"name": data_config.eval_subset, "listed": listed}
        if data_config.eval_num_examples < 0 and count < listed:
            print(
                f"evaluate: warning: {count} of the {listed} listed images found", file=sys.stderr
            )
    return result


def _add_fid(result: dict, protocol: _Protocol, reference, reference_path) -> None:
    features = protocol.queue.result()
    if reference is None:
        reference = fid_stats.ReferenceStatistics.from_features(features[("Ground truth", 0)])
        result["fid_reference"] = {
            "kind": SAME_SET,
            "note": "the test images' own ground truth; not comparable with the paper's FIDs",
        }
    else:
        result["fid_reference"] = {
            "kind": "file",
            "path": os.path.abspath(reference_path),
            "description": reference.description,
            "num_images": reference.num_images,
        }
    if result["num_images"] < 2:
        result["fid_reference"]["skipped"] = "FID needs at least 2 test images"
        return
    for row in protocol.rows():
        sets = [
            features[(row, r)] for r in range(protocol.fid_repeats if row in REPEATED_ROWS else 1)
        ]
        fids = [reference.fid(f) for f in sets]
        values = result["rows"][row]
        values["fid"], values["fid_std"] = float(np.mean(fids)), float(np.std(fids))
        kid = reference.kid(sets[0])
        if kid is not None:
            values["kid"], values["kid_std"] = kid


def _write_figures(figures: dict, out_dir: str) -> None:
    std = figures.get("std")
    visualize.realisations_figure(
        figures["y"],
        figures["samples"],
        figures["x"],
        os.path.join(out_dir, "realisations.png"),
        mean=figures["mean"],
        mmse=figures.get("mmse"),
        sample_variance=None if std is None else np.square(std),
    )
    if std is not None:
        visualize.uncertainty_figure(std, os.path.join(out_dir, "uncertainty.png"))
    file = figures["file"]
    saved = metrics.to_8bit(figures["samples"][0]).astype(np.uint8)
    roundtrip = jpeg.libjpeg_compress(saved / 255.0, file.qtables, subsampling=file.subsampling)
    visualize.difference_figure(
        roundtrip / 255.0,
        figures["y"],
        os.path.join(out_dir, "recompression_difference.png"),
        title="|JPEG(sample) - y|: 0 where consistent",
    )


def format_table(result: dict) -> str:
    """The metrics as a markdown table (Table 4/5 layout)."""
    header = "| method | FID (lower) | KID | consistency (lower) | in-bin | PSNR (dB) | pixel std |"
    lines = [header, "|---|---|---|---|---|---|---|"]
    for row in ROWS:
        if row not in result["rows"]:
            continue
        v = result["rows"][row]
        fid = f"{v['fid']:.2f} +- {v['fid_std']:.2f}" if "fid" in v else "n/a"
        kid = f"{v['kid']:.4f}" if "kid" in v else "n/a"
        std = f"{v['pixel_std']:.2f}" if "pixel_std" in v else ""
        psnr = "inf" if v["psnr"] is None else f"{v['psnr']:.4f}"
        lines.append(
            f"| {row} | {fid} | {kid} | {v['consistency']:.4f} | {v['in_bin']:.4f} "
            f"| {psnr} | {std} |"
        )
    return (
        f"QF {result['quality']}, {result['num_images']} images, "
        f"{result['num_samples']} samples per image for -A and the std, FID over "
        f"{result['fid_repeats']} samplings for sample and -P. "
        f"Scored: {result['images_scored']}.\n\n" + "\n".join(lines) + "\n\n" + _fid_note(result)
    )


def _fid_note(result: dict) -> str:
    reference = result.get("fid_reference")
    if reference is None:
        return "FID/KID: no Inception weights given.\n"
    if "skipped" in reference:
        return f"FID/KID: skipped ({reference['skipped']}).\n"
    if reference["kind"] == SAME_SET:
        return (
            "FID/KID reference: SAME-SET, the ground truth of these test images (the Ground-truth "
            "row is 0 by construction); not comparable with the paper's tables, which use a "
            "separate reference set (eval.py --fid_reference=STATS.npz).\n"
        )
    return (
        f"FID/KID reference: {reference['path']} ({reference['num_images']} images: "
        f"{reference['description']}).\n"
    )


def _write_outputs(result: dict, out_dir: str) -> None:
    with fileio.atomic_write(os.path.join(out_dir, "metrics.json")) as f:
        json.dump(result, f, indent=2)
    with fileio.atomic_write(os.path.join(out_dir, "metrics.md")) as f:
        f.write(format_table(result))
