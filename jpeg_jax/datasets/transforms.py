"""TensorFlow graph ops of the input pipeline: decode, random patch, quality sampling, libjpeg.

All randomness is stateless (``tf.random.stateless_*`` keyed by a ``[2]`` int64 seed), so an
example's patch, flip and quality depend only on its seed, never on thread scheduling: this is
what makes the pipeline deterministic and restartable at any step.

Images are uint8 (H, W, 3) RGB until the pipeline converts them to float32 [0, 1].
"""

from __future__ import annotations

import functools
import io

import numpy as np
import tensorflow as tf
from PIL import Image

# tf.io.decode_jpeg equals libjpeg's / Pillow's default decode bit for bit only with this.
DCT_METHOD = "INTEGER_ACCURATE"
QUALITY_MODES = ("fixed", "uniform", "blind")
# Pillow writes JFIF density "aspect ratio 1:1" (units 0, 1, 1); TensorFlow writes 300 dpi.
# These header bytes are the only difference between the two encoders' files.
_JFIF_DENSITY_OFFSET, _PILLOW_DENSITY = 13, b"\x00\x00\x01\x00\x01"
_CROP_MARGIN = 16  # one 4:2:0 MCU


@functools.cache
def qtables_by_quality() -> np.ndarray:
    """int32 (101, 2, 8, 8): row q holds the tables libjpeg writes at quality q (row 0 unused)."""
    from jpeg_jax.jpeg.tables import quality_to_qtables

    return np.asarray(quality_to_qtables(np.arange(0, 101).clip(1)), np.int32)


def _decode_with_pillow(data) -> np.ndarray:
    data = data.item() if isinstance(data, np.ndarray) else data  # numpy_function: 0-d array
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"), np.uint8)


def decode(data: tf.Tensor) -> tf.Tensor:
    """Encoded image bytes (JPEG, PNG, BMP, GIF, WebP; TIFF via Pillow) -> uint8 (H, W, 3)."""

    def tiff():
        image = tf.numpy_function(_decode_with_pillow, [data], tf.uint8, stateful=False)
        return tf.ensure_shape(image, [None, None, 3])

    def jpeg():
        return tf.io.decode_jpeg(data, channels=3, dct_method=DCT_METHOD)

    def other():
        return tf.io.decode_image(data, channels=3, expand_animations=False)

    magic = tf.strings.substr(data, 0, 4)
    is_tiff = tf.logical_or(tf.equal(magic, b"II*\x00"), tf.equal(magic, b"MM\x00*"))
    image = tf.case([(is_tiff, tiff), (tf.io.is_jpeg(data), jpeg)], default=other)
    return tf.ensure_shape(image, [None, None, 3])


def crop_window(height, width, patch_size: int, seed, max_side: int = 0):
    """Random square crop: side uniform in [min(patch, m), m], m = min(H, W); uniform position.

    Images smaller than the patch give a side of m (the whole short side), which the caller
    then upscales to the patch size. ``max_side > 0`` caps m at ``max(max_side, patch_size)``
    (crops near the native scale instead of mostly downscaled whole images).

    Returns:
      int32 scalars ``(top, left, side)`` with ``0 <= top``, ``top + side <= height``, same
      for ``left`` / ``width``.
    """
    seeds = tf.random.experimental.stateless_split(seed, 3)
    short = tf.minimum(height, width)
    if max_side > 0:
        short = tf.minimum(short, max(max_side, patch_size))
    lowest = tf.minimum(short, patch_size)
    side = tf.random.stateless_uniform([], seeds[0], lowest, short + 1, dtype=tf.int32)
    top = tf.random.stateless_uniform([], seeds[1], 0, height - side + 1, dtype=tf.int32)
    left = tf.random.stateless_uniform([], seeds[2], 0, width - side + 1, dtype=tf.int32)
    return top, left, side


def resize(image: tf.Tensor, size) -> tf.Tensor:
    """uint8 image -> uint8 (size[0], size[1], 3), bilinear with antialiasing, rounded."""
    resized = tf.image.resize(image, size, method="bilinear", antialias=True)
    return tf.cast(tf.round(tf.clip_by_value(resized, 0.0, 255.0)), tf.uint8)


def random_patch(data: tf.Tensor, seed: tf.Tensor, patch_size: int, max_side: int = 0) -> tf.Tensor:
    """The paper's training patch from encoded image bytes: crop, resize, random h-flip.

    JPEG sources decode only the crop window (``decode_and_crop_jpeg``), other formats whole.

    Args:
      data: scalar string, encoded image.
      seed: int64 [2] stateless seed of this example.
      patch_size: output side P.
      max_side: largest crop side before resizing (0: the image's short side).

    Returns:
      uint8 (P, P, 3).
    """
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))

    def jpeg():
        shape = tf.io.extract_jpeg_shape(data, output_type=tf.int32)
        top, left, side = crop_window(shape[0], shape[1], patch_size, crop_seed, max_side)
        # libjpeg's cropped decode upsamples chroma differently at the window's edges; decode
        # a margin around the window so the kept pixels equal the full decode's bit for bit.
        top0, left0 = tf.maximum(top - _CROP_MARGIN, 0), tf.maximum(left - _CROP_MARGIN, 0)
        bottom = tf.minimum(top + side + _CROP_MARGIN, shape[0])
        right = tf.minimum(left + side + _CROP_MARGIN, shape[1])
        window = tf.stack([top0, left0, bottom - top0, right - left0])
        image = tf.image.decode_and_crop_jpeg(data, window, channels=3, dct_method=DCT_METHOD)
        return image[top - top0 : top - top0 + side, left - left0 : left - left0 + side]

    def other():
        image = decode(data)
        shape = tf.shape(image)
        top, left, side = crop_window(shape[0], shape[1], patch_size, crop_seed, max_side)
        return image[top : top + side, left : left + side]

    crop = tf.cond(tf.io.is_jpeg(data), jpeg, other)
    patch = tf.cond(
        tf.equal(tf.shape(crop)[0], patch_size),
        lambda: crop,
        lambda: resize(crop, [patch_size, patch_size]),
    )
    flip = tf.random.stateless_uniform([], flip_seed) < 0.5
    patch = tf.cond(flip, lambda: tf.reverse(patch, axis=[1]), lambda: patch)
    return tf.ensure_shape(patch, [patch_size, patch_size, 3])


def permute_channels(image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """``image`` (..., 3) with its channels in one of the 6 orders, uniformly, by ``seed``."""
    order = tf.argsort(tf.random.stateless_uniform([3], seed))
    return tf.gather(image, order, axis=-1)


def center_crop(image: tf.Tensor, size: int) -> tf.Tensor:
    """Central ``size`` x ``size`` crop (size 0: image unchanged); short sides < size upscaled."""
    if size == 0:
        return image
    shape = tf.shape(image)
    short = tf.minimum(shape[0], shape[1])
    scale = tf.maximum(1.0, size / tf.cast(short, tf.float32))
    new_hw = tf.maximum(
        size, tf.cast(tf.math.ceil(tf.cast(shape[:2], tf.float32) * scale), tf.int32)
    )
    image = tf.cond(short < size, lambda: resize(image, new_hw), lambda: image)
    top = (tf.shape(image)[0] - size) // 2
    left = (tf.shape(image)[1] - size) // 2
    return tf.ensure_shape(image[top : top + size, left : left + size], [size, size, 3])


def sample_quality(
    seed: tf.Tensor,
    mode: str,
    *,
    quality: int,
    quality_min: int,
    quality_max: int,
    blind_mean: float,
) -> tf.Tensor:
    """JPEG quality factor of one example, int32 scalar.

    Modes: ``"fixed"`` (``quality``), ``"uniform"`` (integers ``quality_min..quality_max``) and
    ``"blind"``, the paper's ``floor(clip(quality_min + Exp(mean=blind_mean), quality_min,
    quality_max))`` (paper: 5, 10, 50).
    """
    if mode == "fixed":
        return tf.constant(quality, tf.int32)
    if mode == "uniform":
        return tf.random.stateless_uniform([], seed, quality_min, quality_max + 1, dtype=tf.int32)
    if mode == "blind":
        u = tf.random.stateless_uniform([], seed, dtype=tf.float64)
        q = quality_min - blind_mean * tf.math.log1p(-u)  # inverse CDF of the exponential
        q = tf.clip_by_value(q, float(quality_min), float(quality_max))
        return tf.cast(tf.floor(q), tf.int32)
    raise ValueError(f"quality_mode must be one of {QUALITY_MODES}, got {mode!r}")


def tf_encode_jpeg(image: tf.Tensor, quality: tf.Tensor, subsampling: str) -> tf.Tensor:
    """libjpeg baseline JPEG of uint8 (H, W, 3) at a tensor quality; the bytes Pillow writes.

    ``"4:2:0"`` and ``"4:4:4"`` only (TensorFlow's encoder has no 4:2:2). The file equals
    :func:`jpeg_jax.jpeg.pillow_encode` (``PIL.Image.save(format="JPEG", quality=q,
    subsampling=...)``) byte for byte: same tables,
    Huffman tables and coefficients; the JFIF density field is rewritten to Pillow's.
    """
    quality = tf.clip_by_value(tf.cast(quality, tf.int32), 1, 100)
    if subsampling == "4:2:0":
        data = tf.raw_ops.EncodeJpegVariableQuality(images=image, quality=quality)
    elif subsampling == "4:4:4":
        branches = [
            functools.partial(tf.io.encode_jpeg, image, quality=q, chroma_downsampling=False)
            for q in range(1, 101)
        ]
        data = tf.switch_case(quality - 1, branches)
    else:
        raise ValueError(
            f"in-graph JPEG supports subsampling '4:2:0' or '4:4:4', not {subsampling!r}"
        )
    rest = tf.strings.length(data) - _JFIF_DENSITY_OFFSET - len(_PILLOW_DENSITY)
    return tf.strings.join(
        [
            tf.strings.substr(data, 0, _JFIF_DENSITY_OFFSET),
            _PILLOW_DENSITY,
            tf.strings.substr(data, _JFIF_DENSITY_OFFSET + len(_PILLOW_DENSITY), rest),
        ]
    )


def tf_degrade(image: tf.Tensor, quality: tf.Tensor, subsampling: str) -> dict[str, tf.Tensor]:
    """Real libjpeg round trip of one uint8 (H, W, 3) image.

    Returns:
      ``jpeg`` (scalar string, the file), ``y`` (uint8 (H, W, 3), its libjpeg decode, equal to
      Pillow's), ``qtables`` (int32 (2, 8, 8), natural order, what the file holds) and
      ``quality`` (int32).
    """
    quality = tf.clip_by_value(tf.cast(quality, tf.int32), 1, 100)
    data = tf_encode_jpeg(image, quality, subsampling)
    decoded = tf.io.decode_jpeg(data, channels=3, dct_method=DCT_METHOD)
    decoded = tf.ensure_shape(decoded, image.shape)
    qtables = tf.gather(tf.constant(qtables_by_quality()), quality)
    return {"jpeg": data, "y": decoded, "qtables": qtables, "quality": quality}
