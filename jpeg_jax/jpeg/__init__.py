"""A differentiable JPEG codec that agrees with libjpeg, and JPEG file I/O.

Images are float32 ``(..., H, W, 3)`` RGB in [0, 1]; quantization tables int ``(..., 2, 8, 8)``
in natural order; coefficients :class:`Coefficients` on libjpeg's block grids.
"""

from jpeg_jax.jpeg.codec import (
    SUBSAMPLING,
    Coefficients,
    block_grid,
    compress,
    decode,
    encode,
    quantized_dct,
)
from jpeg_jax.jpeg.consistency import consistency, in_bin_fraction, libjpeg_compress, project
from jpeg_jax.jpeg.io import (
    PILLOW_SUBSAMPLING,
    JpegError,
    JpegImage,
    JpegInfo,
    pillow_encode,
    probe_jpeg,
    read_jpeg,
)
from jpeg_jax.jpeg.rounding import floor_ste, round_ste
from jpeg_jax.jpeg.tables import quality_to_qtables

__all__ = [
    "PILLOW_SUBSAMPLING",
    "SUBSAMPLING",
    "Coefficients",
    "JpegError",
    "JpegImage",
    "JpegInfo",
    "block_grid",
    "compress",
    "consistency",
    "decode",
    "encode",
    "floor_ste",
    "in_bin_fraction",
    "libjpeg_compress",
    "pillow_encode",
    "probe_jpeg",
    "project",
    "quality_to_qtables",
    "quantized_dct",
    "read_jpeg",
    "round_ste",
]
