"""Standard JPEG quantization tables and the IJG (libjpeg) quality scaling.

Tables are in natural (row-major) order, as Pillow's ``Image.quantization`` and jpeglib return
them, not in the zigzag order of the file.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

# ITU-T T.81 Annex K.1, natural order.
STD_LUMA_TABLE = np.array(
    [
        [16, 11, 10, 16, 24, 40, 51, 61],
        [12, 12, 14, 19, 26, 58, 60, 55],
        [14, 13, 16, 24, 40, 57, 69, 56],
        [14, 17, 22, 29, 51, 87, 80, 62],
        [18, 22, 37, 56, 68, 109, 103, 77],
        [24, 35, 55, 64, 81, 104, 113, 92],
        [49, 64, 78, 87, 103, 121, 120, 101],
        [72, 92, 95, 98, 112, 100, 103, 99],
    ],
    dtype=np.int32,
)
STD_CHROMA_TABLE = np.array(
    [
        [17, 18, 24, 47, 99, 99, 99, 99],
        [18, 21, 26, 66, 99, 99, 99, 99],
        [24, 26, 56, 99, 99, 99, 99, 99],
        [47, 66, 99, 99, 99, 99, 99, 99],
        [99, 99, 99, 99, 99, 99, 99, 99],
        [99, 99, 99, 99, 99, 99, 99, 99],
        [99, 99, 99, 99, 99, 99, 99, 99],
        [99, 99, 99, 99, 99, 99, 99, 99],
    ],
    dtype=np.int32,
)
STD_TABLES = np.stack([STD_LUMA_TABLE, STD_CHROMA_TABLE])  # (2, 8, 8)

# ZIGZAG[k] is the natural (row-major) index of the k-th coefficient in zigzag order.
ZIGZAG = np.array(
    [0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5,
     12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21, 28,
     35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51,
     58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63],
    dtype=np.int32,
)  # fmt: skip


def quality_scale(quality):
    """IJG ``jpeg_quality_scaling``: quality 1..100 -> percentage applied to the base tables."""
    quality = jnp.clip(jnp.asarray(quality, jnp.int32), 1, 100)
    return jnp.where(quality < 50, 5000 // quality, 200 - 2 * quality)


def quality_to_qtables(quality) -> jnp.ndarray:
    """Quantization tables libjpeg (and so Pillow) writes for an IJG quality factor.

    Args:
      quality: int or int array of any shape, values in 1..100 (clipped like libjpeg).

    Returns:
      int32 array of shape ``quality.shape + (2, 8, 8)``: luma then chroma table, natural order,
      clamped to the baseline range [1, 255].
    """
    scale = quality_scale(quality)[..., None, None, None]
    tables = (jnp.asarray(STD_TABLES) * scale + 50) // 100
    return jnp.clip(tables, 1, 255).astype(jnp.int32)
