"""tf.data input pipelines: training patches and evaluation images with real libjpeg JPEGs.

Batches are dicts of numpy arrays, images float32 NHWC RGB in [0, 1]:

- ``x``: target, the clean patch / image (its 8-bit values / 255).
- ``y``: the libjpeg decode of ``x``'s JPEG at ``quality`` (4:2:0 by default). Bit-identical to
  ``PIL.Image.open(io.BytesIO(jpeg))`` of the file Pillow writes for ``x`` at that quality.
- ``qtables``: int32 (B, 2, 8, 8), luma and chroma tables in natural order, as in the file.
- ``quality``: int32 (B,), the IJG quality factor.
- evaluation only: ``jpeg`` (object array of bytes, the JPEG file of ``y``, for reading its
  exact coefficients) and ``name`` (bytes: file path, photo name or tfds id).

Determinism and resume: training example ``i`` (counting from the first example of step 0)
is fully determined by ``(seed, process_index, i)``: which image (a stateless permutation of the
shard per epoch), its crop, flip and quality (stateless random ops keyed by ``i``). So, for
the same config, seed and process count, ``create_train_dataset(..., start_step=n)`` yields
exactly the batches an uninterrupted run yields from step ``n`` on: nothing to checkpoint but
the step. Random-access sources
(folder, embedded) restart in O(1); TFDS sources replay at most one epoch of record reads.
Exactness assumes every image decodes: files failing the folder scan are dropped up front, but
a file corrupt past its header is dropped at read time (``ignore_errors``) and shifts later
batches.
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import numpy as np
import tensorflow as tf
from PIL import Image

# Re-exported: the pipeline's config keys, defined where loading a config needs no TensorFlow.
from jpeg_jax.data_config import default_data_config  # noqa: F401
from jpeg_jax.datasets import open_source, transforms
from jpeg_jax.jpeg.io import pillow_encode
from jpeg_jax.platform import hide_accelerators_from_tensorflow

_FOREVER = 2**62


def pillow_degrade(images, quality, subsampling: str = "4:2:0") -> tuple[np.ndarray, np.ndarray]:
    """JPEG-compress and decode with libjpeg (Pillow): the degradation, as a plain function.

    The Pillow-world twin of the pipeline's in-graph :func:`transforms.tf_degrade` (same files,
    same decode); each file is :func:`jpeg_jax.jpeg.pillow_encode`'s.

    Args:
      images: uint8 RGB, (H, W, 3) or (B, H, W, 3).
      quality: IJG quality 1..100, an int or one per image (shape (B,)).
      subsampling: ``"4:2:0"``, ``"4:2:2"`` or ``"4:4:4"``.

    Returns:
      ``(decoded, qtables)``: uint8 of the input's shape (libjpeg's decode, equal to the
      pipeline's ``y`` * 255), and int32 (2, 8, 8) or (B, 2, 8, 8) tables in natural order.
    """
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.shape[-1] != 3 or images.ndim not in (3, 4):
        raise ValueError(f"images must be uint8 (..., H, W, 3), got {images.dtype} {images.shape}")
    batch = images.reshape((-1,) + images.shape[-3:])
    qualities = np.broadcast_to(np.asarray(quality, np.int64), batch.shape[:1])
    decoded, qtables = [], []
    for image, q in zip(batch, qualities, strict=True):
        data = pillow_encode(image, quality=int(q), subsampling=subsampling)
        with Image.open(io.BytesIO(data)) as jpeg:
            decoded.append(np.asarray(jpeg.convert("RGB")))
            qtables.append([np.asarray(jpeg.quantization[k]).reshape(8, 8) for k in (0, 1)])
    decoded = np.stack(decoded).reshape(images.shape)
    qtables = np.asarray(qtables, np.int32).reshape(images.shape[:-3] + (2, 8, 8))
    return decoded, qtables


def _process(process_index, process_count) -> tuple[int, int]:
    if process_index is None or process_count is None:
        import jax

        process_index = jax.process_index() if process_index is None else process_index
        process_count = jax.process_count() if process_count is None else process_count
    return process_index, process_count


def _hide_accelerators() -> None:
    """TensorFlow must not take GPU memory from JAX (a no-op with tensorflow-cpu)."""
    try:
        hide_accelerators_from_tensorflow()
    except RuntimeError:  # TF already initialised its devices (e.g. by an earlier pipeline)
        pass


def _options() -> tf.data.Options:
    options = tf.data.Options()
    options.deterministic = True
    options.autotune.enabled = True
    options.experimental_optimization.map_parallelization = True
    return options


def _threads(config_data) -> int:
    return (
        tf.data.AUTOTUNE if config_data.num_parallel_calls < 0 else config_data.num_parallel_calls
    )


def _to_float(batch: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    out = dict(batch)
    for key in ("x", "y"):
        out[key] = tf.cast(batch[key], tf.float32) / 255.0
    return out


def _train_items(source, shuffle_buffer: int, order_key: int, start_index: int):
    """(example index i, item) from example ``start_index`` on, forever, in order.

    An item is what ``source`` holds: a file path (read later, in the parallel map) or bytes.
    """
    n = source.num_examples
    if source.items is not None:
        items = tf.constant(source.items)

        def pick(i):
            seed = tf.stack([tf.constant(order_key, tf.int64), i // n])
            j = tf.random.experimental.index_shuffle(i % n, seed, tf.constant(n - 1, tf.int64))
            return i, items[j]

        return tf.data.Dataset.range(start_index, _FOREVER).map(pick)
    stream = source.stream().map(lambda ex: ex["data"])
    first_epoch, offset = divmod(start_index, n)
    data = tf.data.Dataset.range(first_epoch, _FOREVER).flat_map(
        lambda epoch: stream.shuffle(shuffle_buffer, seed=order_key * 100_003 + epoch)
    )
    return tf.data.Dataset.zip(tf.data.Dataset.range(start_index, _FOREVER), data.skip(offset))


def build_train_dataset(
    config_data,
    *,
    batch_size_per_process: int,
    seed: int,
    start_step: int = 0,
    process_index: int | None = None,
    process_count: int | None = None,
) -> tf.data.Dataset:
    """The training pipeline as a ``tf.data.Dataset`` of uint8->float32 batches (see module doc).

    Args:
      config_data: ``config.data`` (keys of :func:`default_data_config`).
      batch_size_per_process: B; the global batch is B x process_count.
      seed: experiment seed; the same seed gives the same batches.
      start_step: first step to produce (resume): the batches of an uninterrupted run from there.
      process_index, process_count: this host's shard; default ``jax.process_index/count()``.
    """
    _hide_accelerators()
    process_index, process_count = _process(process_index, process_count)
    source = open_source(
        config_data,
        config_data.train_split,
        process_index=process_index,
        process_count=process_count,
    )
    example_key, order_key = (
        int(k) for k in np.random.SeedSequence([seed, process_index]).generate_state(2)
    )
    c = config_data

    def make_example(i, item):
        data = tf.io.read_file(item) if source.items_are_paths else item
        seed_i = tf.stack([tf.constant(example_key, tf.int64), i])
        patch_seed, quality_seed = tf.unstack(tf.random.experimental.stateless_split(seed_i, 2))
        x = transforms.random_patch(data, patch_seed, c.patch_size, c.max_crop_side)
        if c.permute_channels:
            x = transforms.permute_channels(x, tf.random.experimental.stateless_fold_in(seed_i, 1))
        quality = transforms.sample_quality(
            quality_seed,
            c.quality_mode,
            quality=c.quality,
            quality_min=c.quality_min,
            quality_max=c.quality_max,
            blind_mean=c.blind_mean,
        )
        jpeg = transforms.tf_degrade(x, quality, c.subsampling)
        return {"x": x, "y": jpeg["y"], "qtables": jpeg["qtables"], "quality": jpeg["quality"]}

    start_index = start_step * batch_size_per_process
    dataset = _train_items(source, c.shuffle_buffer, order_key, start_index)
    dataset = dataset.map(make_example, num_parallel_calls=_threads(c), deterministic=True)
    dataset = dataset.ignore_errors(log_warning=True)
    dataset = dataset.batch(batch_size_per_process, drop_remainder=True)
    dataset = dataset.map(_to_float, num_parallel_calls=_threads(c), deterministic=True)
    dataset = dataset.prefetch(tf.data.AUTOTUNE if c.prefetch < 0 else c.prefetch)
    return dataset.with_options(_options())


def create_train_dataset(
    config_data,
    *,
    batch_size_per_process: int,
    seed: int,
    start_step: int = 0,
    process_index: int | None = None,
    process_count: int | None = None,
) -> Iterator[dict[str, np.ndarray]]:
    """Infinite iterator of training batches (numpy dicts); see :func:`build_train_dataset`.

    Keys: ``x``, ``y`` float32 (B, P, P, 3) in [0, 1]; ``qtables`` int32 (B, 2, 8, 8);
    ``quality`` int32 (B,). B = ``batch_size_per_process``, P = ``config_data.patch_size``.
    """
    dataset = build_train_dataset(
        config_data,
        batch_size_per_process=batch_size_per_process,
        seed=seed,
        start_step=start_step,
        process_index=process_index,
        process_count=process_count,
    )
    return dataset.as_numpy_iterator()


def build_image_dataset(
    config_data,
    split: str,
    *,
    subset: str = "",
    max_examples: int | None = None,
    process_index: int | None = None,
    process_count: int | None = None,
) -> tf.data.Dataset:
    """The evaluation images of a split, one at a time, in a fixed order (no JPEG).

    What evaluation calls the ground truth ``x``, before any JPEG: the whole image
    (``eval_crop == 0``) or its central ``eval_crop`` crop. Inception reference statistics
    (:mod:`jpeg_jax.fid_stats`) are computed on these images.

    Args:
      config_data: ``config.data``.
      split: the split to read (any split of the source, e.g. ``"train"`` for FFHQ).
      subset: keep only the images of a named subset or list file (see ``eval_subset``).
      max_examples: the first N images of the split (after ``subset``), None for all.
      process_index, process_count: this host's disjoint shard; default ``jax`` process.

    Returns:
      Dataset of dicts ``x`` (uint8 (H, W, 3)) and ``name`` (bytes).
    """
    _hide_accelerators()
    process_index, process_count = _process(process_index, process_count)
    c = config_data
    source = open_source(
        c,
        split,
        process_index=process_index,
        process_count=process_count,
        max_examples=max_examples,
        subset=subset,
    )

    def load(example):
        return {
            "x": transforms.center_crop(transforms.decode(example["data"]), c.eval_crop),
            "name": example["name"],
        }

    dataset = source.ordered().map(load, num_parallel_calls=_threads(c), deterministic=True)
    return dataset.with_options(_options())


def build_eval_dataset(
    config_data,
    *,
    batch_size: int | None,
    process_index: int | None = None,
    process_count: int | None = None,
) -> tf.data.Dataset:
    """Evaluation pipeline: one pass, fixed order, no augmentation, fixed ``eval_quality``.

    Whole images (``eval_crop == 0``; images of different sizes need ``batch_size=1``, or
    ``None`` and :func:`batch_by_shape`) or central ``eval_crop`` crops. The last batch may be
    smaller. Each process gets a disjoint shard of the first ``eval_num_examples`` images of
    ``eval_split`` (of its ``eval_subset`` if one is named). ``batch_size=None`` yields single
    examples without a batch dimension.
    """
    c = config_data
    images = build_image_dataset(
        c,
        c.eval_split,
        subset=c.eval_subset,
        max_examples=None if c.eval_num_examples < 0 else c.eval_num_examples,
        process_index=process_index,
        process_count=process_count,
    )

    def degrade(example):
        return {**example, **transforms.tf_degrade(example["x"], c.eval_quality, c.subsampling)}

    dataset = images.map(degrade, num_parallel_calls=_threads(c), deterministic=True)
    if batch_size is not None:
        dataset = dataset.batch(batch_size, drop_remainder=False)
    dataset = dataset.map(_to_float)
    return dataset.prefetch(tf.data.AUTOTUNE).with_options(_options())


def batch_by_shape(examples, batch_size: int, key: str = "x") -> Iterator[dict[str, np.ndarray]]:
    """Stack consecutive examples into batches of up to ``batch_size`` whose ``key`` shapes agree.

    For whole images of mixed sizes: a batch ends when it is full or the next image's size
    differs (FFHQ-128's equal images always make full batches). Order is kept.

    Args:
      examples: iterable of dicts of numpy values without a batch dimension (e.g. the
        ``as_numpy_iterator()`` of :func:`build_eval_dataset` with ``batch_size=None``).
      batch_size: B >= 1.

    Yields:
      Dicts of stacked arrays (B', ...), B' <= B.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    pending: list[dict] = []
    for example in examples:
        if pending and (
            len(pending) == batch_size or np.shape(example[key]) != np.shape(pending[0][key])
        ):
            yield {k: np.stack([e[k] for e in pending]) for k in pending[0]}
            pending = []
        pending.append(example)
    if pending:
        yield {k: np.stack([e[k] for e in pending]) for k in pending[0]}


def create_eval_dataset(
    config_data,
    *,
    batch_size: int | None,
    process_index: int | None = None,
    process_count: int | None = None,
) -> Iterator[dict[str, np.ndarray]]:
    """Iterator over evaluation batches (numpy dicts); see :func:`build_eval_dataset`.

    Keys: ``x``, ``y`` float32 (B, H, W, 3) in [0, 1]; ``qtables`` int32 (B, 2, 8, 8);
    ``quality`` int32 (B,); ``jpeg`` (B,) object array of the JPEG files' bytes (``y`` is their
    libjpeg decode); ``name`` (B,) object array of bytes. ``batch_size=None``: single examples,
    the same keys without the B dimension (``jpeg`` and ``name`` then bytes).
    """
    dataset = build_eval_dataset(
        config_data,
        batch_size=batch_size,
        process_index=process_index,
        process_count=process_count,
    )
    return dataset.as_numpy_iterator()
