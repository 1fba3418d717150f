"""Inception reference statistics for FID and KID: the paper's fixed reference sets.

The paper scores restorations against precomputed statistics of a separate image set (pytorch-fid
``.npz`` files): FFHQ-128's train split for FFHQ (Table 4, ground truth 10.28) and the ImageNet
validation set for ImageNet-ctest10k (Table 5, ground truth 2.67). This module computes such a
file from any split of any data source, batched and resumable:

    python -m jpeg_jax.fid_stats --config=configs/ffhq.py --inception=fid_inception.npz \\
        --out=ffhq128_train_fid.npz [--split=train] [--data=/path/to/images] [--batch_size=50]

The split defaults to the config's ``data.fid_reference_split``; the images are the evaluation
images of that split (whole, or the ``eval_crop`` centre crop, exactly as ``x`` in evaluation).
Every ``--save_every`` images the running state goes to ``OUT.partial.npz``; rerunning the same
command resumes from there. ``eval.py --fid_reference=OUT`` uses the file (and makes it first,
the same way, when it does not exist yet).

The ``.npz`` holds ``mu`` (2048,) and ``sigma`` (2048, 2048) float64 (pytorch-fid's keys, so
pytorch-fid reads it, and ours reads pytorch-fid's), ``num_images``, ``kid_features`` (float32
(K, 2048): the features of K images spread evenly over the set, K = min(N, ``--kid_features``);
KID compares subsets of them), ``description`` (what was read) and ``inception_sha256`` (the
weights file the features came from; evaluation refuses statistics of other weights).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import sys

import numpy as np
import tqdm
from numpy.typing import ArrayLike

from jpeg_jax import fileio, input_pipeline, metrics
from jpeg_jax.models import convert_inception, inception

DEFAULT_KID_FEATURES = 10_000
DEFAULT_SAVE_EVERY = 5_000


class FeatureMoments:
    """Running mean and scatter matrix of features, merged batch by batch in float64.

    Chan, Golub and LeVeque's pairwise update: merging a batch (mean ``m_b``, centred scatter
    ``S_b``, count ``n_b``) into (``m``, ``S``, ``n``) adds ``S_b + d d^T n n_b / (n + n_b)`` with
    ``d = m_b - m``, which avoids the cancellation of ``sum x x^T - n m m^T``.
    """

    def __init__(self, dim: int = inception.FEATURE_DIM):
        self.count = 0
        self.mean = np.zeros(dim)
        self.scatter = np.zeros((dim, dim))

    def update(self, features: ArrayLike) -> None:
        """Add (N, D) features."""
        features = np.asarray(features, np.float64)
        n = features.shape[0]
        if n == 0:
            return
        batch_mean = features.mean(axis=0)
        centered = features - batch_mean
        delta = batch_mean - self.mean
        total = self.count + n
        self.scatter += centered.T @ centered + np.outer(delta, delta) * (self.count * n / total)
        self.mean += delta * (n / total)
        self.count = total

    @property
    def covariance(self) -> np.ndarray:
        """Unbiased (``ddof=1``) covariance, as ``np.cov`` and pytorch-fid."""
        if self.count < 2:
            raise ValueError(f"a covariance needs at least 2 images, have {self.count}")
        return self.scatter / (self.count - 1)

    def state(self) -> dict[str, np.ndarray]:
        return {"count": np.int64(self.count), "mean": self.mean, "scatter": self.scatter}

    @classmethod
    def from_state(cls, state) -> FeatureMoments:
        moments = cls(int(np.shape(state["mean"])[0]))
        moments.count = int(state["count"])
        moments.mean = np.array(state["mean"], np.float64)
        moments.scatter = np.array(state["scatter"], np.float64)
        return moments


@dataclasses.dataclass(frozen=True, eq=False)
class ReferenceStatistics:
    """FID/KID statistics of a reference image set (see the module docstring for the file).

    Attributes:
      mu: (D,) float64 mean of the pool3 features.
      sigma: (D, D) float64 covariance (``ddof=1``).
      num_images: images the statistics summarise (0 if unknown, e.g. a pytorch-fid file).
      kid_features: (K, D) float32 features of K of those images, or None (no KID).
      description: what was read (JSON text), free-form for files made elsewhere.
      inception_sha256: sha256 of the Inception weights file, "" if unknown.
    """

    mu: np.ndarray
    sigma: np.ndarray
    num_images: int = 0
    kid_features: np.ndarray | None = None
    description: str = ""
    inception_sha256: str = ""

    @classmethod
    def from_features(cls, features: ArrayLike, **kwargs) -> ReferenceStatistics:
        """Statistics of (N, D) features (all of them kept for KID)."""
        features = np.asarray(features, np.float32)
        mu, sigma = metrics.feature_statistics(features)
        return cls(mu, sigma, len(features), features, **kwargs)

    @functools.cached_property
    def sigma_root(self) -> np.ndarray:
        """``sqrtm(sigma)``, computed once per reference and reused by every :meth:`fid`."""
        return metrics.sqrtm_psd(self.sigma)

    def fid(self, features: ArrayLike) -> float:
        """FID between this reference and (N >= 2, D) features (pytorch-fid's formula).

        Equal to ``metrics.frechet_distance(mu, sigma, *metrics.feature_statistics(features))``;
        the trace term uses :func:`metrics.trace_sqrt_product_features` with the cached root.
        """
        features = np.asarray(features, np.float64)
        mu2, sigma2 = metrics.feature_statistics(features)
        diff = self.mu - mu2
        cross = metrics.trace_sqrt_product_features(self.sigma_root, features)
        return float(diff @ diff + np.trace(self.sigma) + np.trace(sigma2) - 2.0 * cross)

    def kid(self, features: ArrayLike, *, subset_size: int = 1000) -> tuple[float, float] | None:
        """KID (mean, std over 100 subsets) against ``kid_features``; None without them.

        ``subset_size`` is lowered to the smaller of the two sets when needed (>= 2).
        """
        if self.kid_features is None:
            return None
        size = min(subset_size, len(self.kid_features), len(features))
        if size < 2:
            return None
        return metrics.kid(self.kid_features, features, subset_size=size)

    def save(self, path: str | os.PathLike) -> None:
        """Write the ``.npz`` atomically."""
        arrays = {
            "mu": self.mu,
            "sigma": self.sigma,
            "num_images": np.int64(self.num_images),
            "description": np.str_(self.description),
            "inception_sha256": np.str_(self.inception_sha256),
        }
        if self.kid_features is not None:
            arrays["kid_features"] = np.asarray(self.kid_features, np.float32)
        with fileio.atomic_write(path, "wb") as f:
            np.savez(f, **arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> ReferenceStatistics:
        """Read a file of :meth:`save` or pytorch-fid (``mu`` and ``sigma`` only).

        Raises:
          FileNotFoundError: no such file.
          ValueError: not a statistics file, or inconsistent shapes.
        """
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"FID reference statistics {path!r} do not exist")
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {key: data[key] for key in data.files}
        except (OSError, ValueError) as e:
            raise ValueError(f"{path!r} is not a .npz statistics file: {e}") from e
        if "mu" not in arrays or "sigma" not in arrays:
            raise ValueError(f"{path!r} has no 'mu' and 'sigma' arrays (keys: {sorted(arrays)})")
        mu, sigma = np.asarray(arrays["mu"], np.float64), np.asarray(arrays["sigma"], np.float64)
        kid = arrays.get("kid_features")
        if mu.ndim != 1 or sigma.shape != mu.shape * 2 or (kid is not None and kid.ndim != 2):
            raise ValueError(f"{path!r}: inconsistent shapes mu {mu.shape}, sigma {sigma.shape}")
        if kid is not None and kid.shape[1] != mu.shape[0]:
            raise ValueError(f"{path!r}: kid_features {kid.shape} do not match mu {mu.shape}")
        return cls(
            mu,
            sigma,
            int(arrays.get("num_images", 0)),
            kid,
            str(arrays.get("description", "")),
            str(arrays.get("inception_sha256", "")),
        )


def describe(config_data, split: str) -> str:
    """JSON text naming the images a reference is computed from (compared when resuming)."""
    c = config_data
    where = {
        "folder": {"path": os.path.abspath(c.path), "test_fraction": c.test_fraction},
        "tfds": {"tfds_name": c.tfds_name, "image_key": c.image_key},
        "ffhq": {"ffhq_resolution": c.ffhq_resolution},
    }.get(c.source, {})
    return json.dumps(
        {"source": c.source, **where, "split": split, "eval_crop": c.eval_crop}, sort_keys=True
    )


def kid_keep(index: int, total: int, keep: int) -> bool:
    """Whether image ``index`` of ``total`` is one of the ``keep`` evenly spread KID images."""
    return keep >= total or (index * keep) % total < keep


def compute_reference(
    config_data,
    split: str,
    extractor: metrics.InceptionFeatureExtractor,
    out_path: str | os.PathLike,
    *,
    inception_sha256: str = "",
    max_images: int | None = None,
    kid_features: int = DEFAULT_KID_FEATURES,
    save_every: int = DEFAULT_SAVE_EVERY,
    progress: bool = True,
) -> ReferenceStatistics:
    """Statistics of ``split`` of ``config_data``'s source, written to ``out_path``.

    Images in batches of ``extractor.batch_size`` (consecutive images of one size); the state is
    saved to ``OUT.partial.npz`` every ``save_every`` images and a rerun resumes there (it must
    read the same images with the same weights, else it raises ``ValueError``).

    Returns:
      The statistics (also saved to ``out_path``; the partial file is then removed).
    """
    out_path = os.fspath(out_path)
    partial = out_path + ".partial.npz"
    description = describe(config_data, split)
    images = input_pipeline.build_image_dataset(
        config_data, split, max_examples=max_images, process_index=0, process_count=1
    )
    total = int(images.cardinality())  # known for every source (-1/-2 would mean unknown)
    if total < 0:
        raise ValueError(f"cannot count the images of split {split!r}")
    moments, kept, start = FeatureMoments(), [], 0
    if os.path.exists(partial):
        moments, kept, start = _resume(partial, description, inception_sha256, total)
    stream = images.skip(start).prefetch(64).as_numpy_iterator()
    queue = metrics.FeatureQueue(extractor)  # full batches across images of any size
    bar = tqdm.tqdm(total=total, initial=start, unit="img", desc="reference", disable=not progress)
    last_save = start

    def absorb(features: np.ndarray) -> None:
        nonlocal last_save
        first = moments.count
        moments.update(features)
        kept.extend(f for i, f in enumerate(features, first) if kid_keep(i, total, kid_features))
        bar.update(len(features))
        if moments.count - last_save >= save_every:  # the state holds whole images only
            _save_partial(partial, moments, kept, description, inception_sha256, total)
            last_save = moments.count

    for batch in input_pipeline.batch_by_shape(stream, extractor.batch_size):
        queue.put("x", batch["x"] / np.float32(255.0))
        absorb(queue.take()["x"])
    absorb(queue.result().get("x", np.zeros((0, inception.FEATURE_DIM), np.float32)))
    bar.close()
    if moments.count < 2:
        raise ValueError(f"split {split!r} has {moments.count} images; FID needs at least 2")
    stats = ReferenceStatistics(
        moments.mean,
        moments.covariance,
        moments.count,
        np.asarray(kept, np.float32).reshape(-1, moments.mean.shape[0]),
        description,
        inception_sha256,
    )
    stats.save(out_path)
    if os.path.exists(partial):
        os.remove(partial)
    return stats


def _save_partial(path, moments, kept, description, inception_sha256, total) -> None:
    kid = np.asarray(kept, np.float32).reshape(-1, moments.mean.shape[0])
    with fileio.atomic_write(path, "wb") as f:
        np.savez(
            f,
            **moments.state(),
            kid_features=kid,
            description=np.str_(description),
            inception_sha256=np.str_(inception_sha256),
            total=np.int64(total),
        )


def _resume(path, description, inception_sha256, total):
    with np.load(path, allow_pickle=False) as data:
        state = {key: data[key] for key in data.files}
    if (
        str(state["description"]) != description
        or str(state["inception_sha256"]) != inception_sha256
        or int(state["total"]) != total
    ):
        raise ValueError(
            f"{path} was started for other images or weights ({state['description']}, "
            f"{int(state['total'])} images); delete it to start again"
        )
    moments = FeatureMoments.from_state(state)
    print(f"fid_stats: resuming after {moments.count} images from {path}", file=sys.stderr)
    return moments, list(state["kid_features"]), moments.count


def load_or_compute(
    path: str | os.PathLike,
    config_data,
    extractor: metrics.InceptionFeatureExtractor,
    inception_path: str | os.PathLike,
    *,
    split: str | None = None,
) -> ReferenceStatistics:
    """The statistics at ``path``; computed there first (resumably) if the file is missing.

    Raises:
      ValueError: the file was made with other Inception weights than ``inception_path``.
    """
    sha = convert_inception.sha256_of(inception_path)
    if not os.path.exists(path):
        split = split or config_data.fid_reference_split
        print(
            f"fid_stats: computing reference statistics of split {split!r} "
            f"({config_data.source}) into {os.fspath(path)}",
            file=sys.stderr,
        )
        return compute_reference(config_data, split, extractor, path, inception_sha256=sha)
    stats = ReferenceStatistics.load(path)
    if stats.inception_sha256 and stats.inception_sha256 != sha:
        raise ValueError(
            f"{os.fspath(path)} was computed with other Inception weights "
            f"(sha256 {stats.inception_sha256[:12]}..., given {sha[:12]}...)"
        )
    return stats


def _define_flags() -> None:
    """Flags of the command line, defined only when run as a program (no clash with eval.py)."""
    from absl import flags
    from ml_collections import config_flags

    config_flags.DEFINE_config_file("config", None, "Config whose `data` section names the images.")
    flags.DEFINE_string("inception", None, "FID Inception weights (.npz, convert_inception).")
    flags.DEFINE_string("out", None, "Statistics file to write (.npz).")
    flags.DEFINE_string("split", None, "Split to read (default: config.data.fid_reference_split).")
    flags.DEFINE_string("data", None, "A folder of images instead (all of them; overrides config).")
    flags.DEFINE_integer("batch_size", 50, "Images per Inception call.")
    flags.DEFINE_integer("max_images", -1, "Only the first N images of the split (-1: all).")
    flags.DEFINE_integer("kid_features", DEFAULT_KID_FEATURES, "Features kept for KID.")
    flags.DEFINE_integer("save_every", DEFAULT_SAVE_EVERY, "Images between resume points.")
    flags.DEFINE_bool("force", False, "Replace an existing --out file.")
    flags.mark_flags_as_required(["config", "inception", "out"])


def _main(argv) -> None:
    from absl import flags

    del argv
    FLAGS = flags.FLAGS  # noqa: N806 -- absl's conventional name
    data = FLAGS.config.data
    split = FLAGS.split or data.fid_reference_split
    if FLAGS.data:
        data.source, data.path, split = "folder", FLAGS.data, "all"
    if os.path.exists(FLAGS.out) and not FLAGS.force:
        print(f"fid_stats: error: {FLAGS.out} exists (use --force to replace it)", file=sys.stderr)
        sys.exit(2)
    try:
        extractor = metrics.InceptionFeatureExtractor.from_file(
            FLAGS.inception, batch_size=FLAGS.batch_size
        )
        stats = compute_reference(
            data,
            split,
            extractor,
            FLAGS.out,
            inception_sha256=convert_inception.sha256_of(FLAGS.inception),
            max_images=None if FLAGS.max_images < 0 else FLAGS.max_images,
            kid_features=FLAGS.kid_features,
            save_every=FLAGS.save_every,
        )
    except (FileNotFoundError, ValueError, OSError) as e:
        print(f"fid_stats: error: {e}", file=sys.stderr)
        sys.exit(1)
    print(f"fid_stats: {stats.num_images} images of {stats.description} -> {FLAGS.out}")


def main() -> None:
    """``python -m jpeg_jax.fid_stats`` (see the module docstring)."""
    from absl import app

    from jpeg_jax.platform import configure_xla, restart_with_huge_pages

    restart_with_huge_pages()
    configure_xla()
    _define_flags()
    app.run(_main)


if __name__ == "__main__":
    main()
