"""Differentiable JPEG encode/decode that agrees with libjpeg(-turbo).

Pipeline (as ``cjpeg``/``djpeg`` with default settings): pad to whole MCUs by replicating the
last row and column, RGB -> YCbCr, chroma box downsampling, level shift, 8x8 DCT, division by the
quantization table, rounding; and back: dequantization, IDCT, level shift, rounding and clamping
of the samples, fancy (triangular) chroma upsampling, YCbCr -> RGB, clamping, cropping.

With ``exact=True`` (the default) every place where libjpeg rounds to an integer is rounded too,
with straight-through gradients (:mod:`jpeg_jax.jpeg.rounding`), so forward values track
libjpeg's to within its integer-DCT approximations while everything stays differentiable.
``exact=False`` is the smooth float pipeline (no intermediate rounding).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp

from jpeg_jax.jpeg import chroma, color, dct
from jpeg_jax.jpeg.rounding import round_ste

# (horizontal, vertical) chroma sampling divisors; None: grayscale (luma only).
SUBSAMPLING = {"4:4:4": (1, 1), "4:2:2": (2, 1), "4:2:0": (2, 2), "gray": None}


class Coefficients(NamedTuple):
    """Quantized DCT coefficients per component, each ``(..., Bh, Bw, b, b)``, natural order.

    Block grids are libjpeg's: luma ``ceil(H / 8) x ceil(W / 8)``, chroma
    ``ceil(ceil(H / v) / 8) x ceil(ceil(W / h) / 8)``. ``cb`` and ``cr`` are ``None`` for
    grayscale.
    """

    y: jax.Array
    cb: jax.Array | None = None
    cr: jax.Array | None = None


def _factors(subsampling: str) -> tuple[int, int] | None:
    if subsampling not in SUBSAMPLING:
        raise ValueError(f"subsampling must be one of {sorted(SUBSAMPLING)}, got {subsampling!r}")
    return SUBSAMPLING[subsampling]


def block_grid(size: tuple[int, int], subsampling: str, block_size: int = 8) -> dict:
    """Block-grid shapes ``{"y": (Bh, Bw), "cb": ..., "cr": ...}`` libjpeg uses for an image."""
    height, width = size
    b = block_size
    grids = {"y": (math.ceil(height / b), math.ceil(width / b))}
    factors = _factors(subsampling)
    if factors is not None:
        h, v = factors
        chroma_grid = (math.ceil(math.ceil(height / v) / b), math.ceil(math.ceil(width / h) / b))
        grids["cb"] = grids["cr"] = chroma_grid
    return grids


def _qtables(qtables: jax.Array, block_size: int) -> tuple[jax.Array, jax.Array]:
    """Luma and chroma tables broadcastable against ``(..., Bh, Bw, b, b)`` coefficients."""
    q = jnp.asarray(qtables, jnp.float32)[..., :block_size, :block_size]
    return q[..., 0, None, None, :, :], q[..., 1, None, None, :, :]


def _to_planes(images: jax.Array, subsampling: str, block_size: int, exact: bool):
    """Padded Y, Cb, Cr planes (chroma downsampled), in 0..255 with libjpeg's rounding."""
    chex.assert_rank(images, {3, 4, 5, 6})
    chex.assert_axis_dimension(images, -1, 3)
    height, width = images.shape[-3:-1]
    factors = _factors(subsampling)
    h, v = factors or (1, 1)
    mcu_h, mcu_w = block_size * v, block_size * h
    pad_h, pad_w = -height % mcu_h, -width % mcu_w
    rgb = images.astype(jnp.float32) * 255.0
    if exact:
        rgb = round_ste(jnp.clip(rgb, 0.0, 255.0))
    pad = [(0, 0)] * (rgb.ndim - 3) + [(0, pad_h), (0, pad_w), (0, 0)]
    rgb = jnp.pad(rgb, pad, mode="edge")
    y, cb, cr = color.rgb_to_ycbcr(rgb, exact=exact)
    if factors is None:
        return (y,)
    return y, chroma.downsample(cb, h, v, exact=exact), chroma.downsample(cr, h, v, exact=exact)


def quantized_dct(
    images: jax.Array,
    qtables: jax.Array,
    *,
    subsampling: str = "4:2:0",
    block_size: int = 8,
    exact: bool = True,
) -> Coefficients:
    """Quantized DCT coefficients ``DCT(YCbCr(x)) / Q`` before rounding.

    This is what the paper's consistency penalty compares with the file's integer coefficients.

    Args:
      images: float32 ``(..., H, W, 3)`` RGB in [0, 1], any H, W >= 1.
      qtables: ``(..., 2, 8, 8)`` luma/chroma quantization tables (natural order), broadcastable
        against the images' leading dims. With ``block_size < 8`` the top-left corner is used.
      subsampling: "4:4:4", "4:2:2", "4:2:0" or "gray".
      block_size: DCT block size (8 for JPEG; 1 reproduces the appendix's Table 2 set-up).
      exact: round the 8-bit input, colour conversion and chroma downsampling like libjpeg
        (straight-through gradients); ``False`` keeps the float pipeline smooth.

    Returns:
      :class:`Coefficients` of float32 on libjpeg's block grids.
    """
    height, width = images.shape[-3:-1]
    grids = block_grid((height, width), subsampling, block_size)
    planes = _to_planes(images, subsampling, block_size, exact)
    q_luma, q_chroma = _qtables(qtables, block_size)
    out = []
    for name, plane, q in zip(("y", "cb", "cr"), planes, (q_luma, q_chroma, q_chroma)):
        bh, bw = grids[name]
        blocks = dct.blockify(plane - 128.0, block_size)[..., :bh, :bw, :, :]
        out.append(dct.dct_2d(blocks) / q)
    return Coefficients(*out)


def encode(
    images: jax.Array,
    qtables: jax.Array,
    *,
    subsampling: str = "4:2:0",
    block_size: int = 8,
    exact: bool = True,
) -> Coefficients:
    """JPEG-encode images to quantized coefficients (straight-through rounding).

    Same arguments as :func:`quantized_dct`; the coefficients are rounded to integers (float32
    dtype) with :func:`~jpeg_jax.jpeg.rounding.round_ste`, so the result is differentiable.
    """
    coefficients = quantized_dct(
        images, qtables, subsampling=subsampling, block_size=block_size, exact=exact
    )
    return Coefficients(*(None if c is None else round_ste(c) for c in coefficients))


def _decode_plane(coefficients, q, size, block_size, exact):
    dequantized = jnp.asarray(coefficients, jnp.float32) * q
    samples = jnp.clip(dct.idct_2d(dequantized) + 128.0, 0.0, 255.0)
    if exact and block_size == 8:
        # libjpeg's integer IDCT forward, the float IDCT's gradient backward.
        islow = dct.islow_idct_8x8(jax.lax.stop_gradient(dequantized)).astype(jnp.float32)
        samples = samples + jax.lax.stop_gradient(islow - samples)
    elif exact:
        samples = round_ste(samples)
    plane = dct.unblockify(samples)
    return plane[..., : size[0], : size[1]]


def decode(
    coefficients: Coefficients,
    qtables: jax.Array,
    *,
    subsampling: str = "4:2:0",
    size: tuple[int, int] | None = None,
    exact: bool = True,
) -> jax.Array:
    """Decode quantized coefficients to RGB images as libjpeg does (float IDCT).

    Args:
      coefficients: :class:`Coefficients` as from :func:`encode` or ``read_jpeg``.
      qtables: ``(..., 2, 8, 8)`` quantization tables.
      subsampling: the chroma subsampling the coefficients were written with.
      size: ``(H, W)`` of the image; defaults to the luma block grid times the block size.
      exact: round the IDCT output, chroma upsampling and colour conversion like libjpeg.

    Returns:
      float32 ``(..., H, W, 3)`` RGB in [0, 1] (grayscale files give three equal channels).
    """
    block_size = coefficients.y.shape[-1]
    if size is None:
        size = (coefficients.y.shape[-4] * block_size, coefficients.y.shape[-3] * block_size)
    height, width = size
    q_luma, q_chroma = _qtables(qtables, block_size)
    y = _decode_plane(coefficients.y, q_luma, size, block_size, exact)
    factors = _factors(subsampling)
    if factors is None:
        return jnp.repeat(y[..., None], 3, axis=-1) / 255.0
    h, v = factors
    chroma_size = (math.ceil(height / v), math.ceil(width / h))
    planes = []
    for c in (coefficients.cb, coefficients.cr):
        plane = _decode_plane(c, q_chroma, chroma_size, block_size, exact)
        planes.append(chroma.upsample(plane, h, v, exact=exact)[..., :height, :width])
    rgb = color.ycbcr_to_rgb(y, *planes, exact=exact)
    return jnp.clip(rgb, 0.0, 255.0) / 255.0


def compress(
    images: jax.Array,
    qtables: jax.Array,
    *,
    subsampling: str = "4:2:0",
    block_size: int = 8,
    exact: bool = True,
) -> jax.Array:
    """Differentiable JPEG round trip ``decode(encode(images))``; ``(..., H, W, 3)`` in [0, 1]."""
    coefficients = encode(
        images, qtables, subsampling=subsampling, block_size=block_size, exact=exact
    )
    size = images.shape[-3:-1]
    return decode(coefficients, qtables, subsampling=subsampling, size=size, exact=exact)
