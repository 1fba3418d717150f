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

import functools
import math
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
from jax.custom_derivatives import SymbolicZero

from jpeg_jax.jpeg import chroma, color, dct
from jpeg_jax.jpeg.rounding import round_ste

# (horizontal, vertical) chroma sampling divisors; None: grayscale (luma only).
SUBSAMPLING = {
    "4:4:4": (1, 1),
    "4:2:2": (2, 1),
    "4:2:0": (2, 2),
    "4:4:0": (1, 2),  # e.g. a 4:2:2 photo rotated losslessly by 90 degrees
    "gray": None,
}


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


def block_qtables(qtables: jax.Array, block_size: int) -> tuple[jax.Array, jax.Array]:
    """Luma and chroma tables broadcastable against ``(..., Bh, Bw, b, b)`` coefficients.

    Args:
      qtables: ``(..., 2, 8, 8)`` luma and chroma tables in natural order.
      block_size: the block side ``b`` (8 for JPEG; the tables' top-left ``b x b``).

    Returns:
      ``(luma, chroma)`` float32 ``(..., 1, 1, b, b)``.
    """
    q = jnp.asarray(qtables, jnp.float32)[..., :block_size, :block_size]
    return q[..., 0, None, None, :, :], q[..., 1, None, None, :, :]


def clamp(x: jax.Array, lo: float, hi: float) -> jax.Array:
    """``jnp.clip(x, lo, hi)``'s values; gradient 1 inside ``[lo, hi]`` (inclusive), 0 outside.

    Written with ``jnp.where`` because XLA runs its gradient (one select) faster than
    ``jnp.clip``'s. Unlike ``jnp.clip``, whose gradient is 0.5 at values exactly equal to a bound,
    this passes the full gradient there (8-bit images often sit exactly at 0 or 255).
    """
    return jnp.where(x < lo, lo, jnp.where(x > hi, hi, x))


def _pad_rows(plane: jax.Array, rows: int) -> jax.Array:
    return chroma.pad_edge(plane, -2, after=rows - plane.shape[-2])


def _to_planes(images: jax.Array, subsampling: str, block_size: int, exact: bool):
    """Y, Cb, Cr planes padded to whole MCUs (chroma downsampled), 0..255, libjpeg's rounding.

    Like libjpeg: columns are replicated up to whole MCUs before downsampling, rows only up to a
    multiple of the vertical factor; the downsampled rows are then replicated to whole MCUs.
    """
    chex.assert_rank(images, {3, 4, 5, 6})
    chex.assert_axis_dimension(images, -1, 3)
    height, width = images.shape[-3:-1]
    factors = _factors(subsampling)
    h, v = factors or (1, 1)
    mcu_h, mcu_w = block_size * v, block_size * h
    rgb = images.astype(jnp.float32) * 255.0
    if exact:
        rgb = round_ste(clamp(rgb, 0.0, 255.0))
    rgb = chroma.pad_edge(rgb, -3, after=-height % v)
    rgb = chroma.pad_edge(rgb, -2, after=-width % mcu_w)
    y, cb, cr = color.rgb_to_ycbcr(rgb, exact=exact)
    rows = -(-height // mcu_h) * mcu_h
    y = _pad_rows(y, rows)
    if factors is None:
        return (y,)
    return (y,) + tuple(
        _pad_rows(chroma.downsample(c, h, v, exact=exact), rows // v) for c in (cb, cr)
    )


def _component_blocks(images, qtables, subsampling, block_size, exact):
    """``[(blocks, q), ...]`` per component: sample blocks (0..255) on libjpeg's grids."""
    grids = block_grid(images.shape[-3:-1], subsampling, block_size)
    planes = _to_planes(images, subsampling, block_size, exact)
    q_luma, q_chroma = block_qtables(qtables, block_size)
    out = []
    for name, plane, q in zip(("y", "cb", "cr"), planes, (q_luma, q_chroma, q_chroma)):
        bh, bw = grids[name]
        out.append((dct.blockify(plane, block_size)[..., :bh, :bw, :, :], q))
    return out


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
      subsampling: "4:4:4", "4:2:2", "4:2:0", "4:4:0" or "gray".
      block_size: DCT block size (8 for JPEG; 1 reproduces the appendix's Table 2 set-up).
      exact: round the 8-bit input, colour conversion and chroma downsampling like libjpeg
        (straight-through gradients); ``False`` keeps the float pipeline smooth.

    Returns:
      :class:`Coefficients` of float32 on libjpeg's block grids.
    """
    components = _component_blocks(images, qtables, subsampling, block_size, exact)
    return Coefficients(*(dct.dct_2d(blocks - 128.0) / q for blocks, q in components))


def encode(
    images: jax.Array,
    qtables: jax.Array,
    *,
    subsampling: str = "4:2:0",
    block_size: int = 8,
    exact: bool = True,
) -> Coefficients:
    """JPEG-encode images to quantized coefficients (straight-through rounding).

    Same arguments as :func:`quantized_dct`. With ``exact=True`` the values are libjpeg's
    (integer "ISLOW" DCT and its quantizer, bit for bit for 8-bit inputs); otherwise the float
    coefficients are rounded. Either way the gradient is that of the float ``DCT / Q``
    (straight-through), so the result is differentiable. Values are integers in float32.
    """
    out = []
    for blocks, q in _component_blocks(images, qtables, subsampling, block_size, exact):
        if exact and block_size == 8:
            out.append(_islow_coefficients(blocks, q))
        else:
            out.append(round_ste(dct.dct_2d(blocks - 128.0) / q))
    return Coefficients(*out)


@jax.custom_jvp
def _islow_coefficients(blocks: jax.Array, q: jax.Array) -> jax.Array:
    """libjpeg's quantized coefficients forward, the derivative of the float ``DCT / q``.

    A straight-through estimator whose float DCT is needed only for the derivative, so a custom
    JVP spares it in the forward pass (``c + stop_gradient(exact - c)`` would compute it).
    """
    return dct.islow_quantize_8x8(blocks, q).astype(jnp.float32)


@functools.partial(_islow_coefficients.defjvp, symbolic_zeros=True)
def _islow_coefficients_jvp(primals, tangents):
    blocks, q = primals
    d_blocks, d_q = tangents
    out = _islow_coefficients(blocks, q)
    tangent = jnp.zeros_like(out)
    if not isinstance(d_blocks, SymbolicZero):
        tangent = tangent + dct.dct_2d(d_blocks) / q
    if not isinstance(d_q, SymbolicZero):  # d(D / q) = -(D / q) dq / q
        tangent = tangent - dct.dct_2d(blocks - 128.0) / q * (d_q / q)
    return out, tangent


def _decode_plane(coefficients, q, size, block_size, exact):
    dequantized = jnp.asarray(coefficients, jnp.float32) * q
    if exact and block_size == 8:
        samples = _islow_samples(dequantized)
    else:
        samples = clamp(dct.idct_2d(dequantized) + 128.0, 0.0, 255.0)
        samples = round_ste(samples) if exact else samples
    plane = dct.unblockify(samples)
    return plane[..., : size[0], : size[1]]


@jax.custom_jvp
def _islow_samples(dequantized: jax.Array) -> jax.Array:
    """libjpeg's integer IDCT forward, the derivative of ``clamp(IDCT + 128, 0, 255)``.

    The straight-through estimator of :func:`_islow_coefficients` for decoding: the float IDCT
    is computed only when a derivative is (for it and its clamp's mask).
    """
    return dct.islow_idct_8x8(dequantized).astype(jnp.float32)


@_islow_samples.defjvp
def _islow_samples_jvp(primals, tangents):
    (dequantized,), (d_dequantized,) = primals, tangents
    float_samples = dct.idct_2d(dequantized) + 128.0
    inside = ~((float_samples < 0.0) | (float_samples > 255.0))  # as clamp's gradient
    tangent = jnp.where(inside, dct.idct_2d(d_dequantized), 0.0)
    return _islow_samples(dequantized), tangent


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
    q_luma, q_chroma = block_qtables(qtables, block_size)
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
    return clamp(rgb, 0.0, 255.0) / 255.0


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
