"""Block DCT as matrix products (orthonormal, i.e. JPEG's scaling for 8x8 blocks)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np


@functools.cache
def dct_matrix(n: int = 8) -> np.ndarray:
    """Orthonormal DCT-II matrix ``C`` (``C @ C.T == I``); rows are frequencies.

    For ``n = 8``, ``C @ block @ C.T`` is exactly the JPEG forward DCT of T.81 A.3.3.
    For ``n = 1`` it is the identity (the "block size 1" of the paper's Table 2).
    """
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    c = np.cos((2 * i + 1) * k * np.pi / (2 * n)) * np.sqrt(2.0 / n)
    c[0] /= np.sqrt(2.0)
    return c.astype(np.float32)


def blockify(plane: jax.Array, block_size: int = 8) -> jax.Array:
    """Split ``(..., H, W)`` (H, W multiples of the block size) into ``(..., H/b, W/b, b, b)``."""
    *lead, h, w = plane.shape
    b = block_size
    x = plane.reshape(*lead, h // b, b, w // b, b)
    return jnp.swapaxes(x, -3, -2)


def unblockify(blocks: jax.Array) -> jax.Array:
    """Inverse of :func:`blockify`: ``(..., Bh, Bw, b, b)`` -> ``(..., Bh*b, Bw*b)``."""
    *lead, bh, bw, b, _ = blocks.shape
    return jnp.swapaxes(blocks, -3, -2).reshape(*lead, bh * b, bw * b)


def dct_2d(blocks: jax.Array) -> jax.Array:
    """2-D DCT of every ``(b, b)`` block in the last two axes."""
    c = jnp.asarray(dct_matrix(blocks.shape[-1]))
    return jnp.einsum("ui,...ij,vj->...uv", c, blocks, c, precision="highest")


def idct_2d(coefficients: jax.Array) -> jax.Array:
    """Inverse 2-D DCT of every ``(b, b)`` block in the last two axes."""
    c = jnp.asarray(dct_matrix(coefficients.shape[-1]))
    return jnp.einsum("ui,...uv,vj->...ij", c, coefficients, c, precision="highest")


# libjpeg's jidctint.c ("ISLOW") constants: FIX(x) with CONST_BITS = 13.
_CONST_BITS = 13
_PASS1_BITS = 2
# Dequantized coefficients are clamped to 15 bits so every int32 product below stays exact;
# coefficients of real 8-bit images stay far inside (|DCT| <= 8 * 1024).
_DEQUANT_LIMIT = 16383


def _islow_1d(c: list) -> list:
    """One 8-point pass of libjpeg's accurate integer IDCT (Loeffler-Ligtenberg-Moschytz).

    Written with plain operators so that it runs on NumPy integers: it is applied to unit vectors
    once, at import, to get the pass's integer matrix (:data:`_IDCT_MATRIX`).
    """
    z1 = (c[2] + c[6]) * 4433
    tmp2 = z1 - c[6] * 15137
    tmp3 = z1 + c[2] * 6270
    tmp0 = (c[0] + c[4]) * (1 << _CONST_BITS)
    tmp1 = (c[0] - c[4]) * (1 << _CONST_BITS)
    even = (tmp0 + tmp3, tmp1 + tmp2, tmp1 - tmp2, tmp0 - tmp3)
    o3, o2, o1, o0 = c[1], c[3], c[5], c[7]
    z1, z2, z3, z4 = o0 + o3, o1 + o2, o0 + o2, o1 + o3
    z5 = (z3 + z4) * 9633
    z1, z2 = z1 * -7373, z2 * -20995
    z3, z4 = z3 * -16069 + z5, z4 * -3196 + z5
    odd = (o3 * 12299 + z1 + z4, o2 * 25172 + z2 + z3, o1 * 16819 + z2 + z4, o0 * 2446 + z1 + z3)
    return [even[i] + odd[i] for i in range(4)] + [even[3 - i] - odd[3 - i] for i in range(4)]


def _islow_fdct_1d(d: list) -> list:
    """One 8-point pass of libjpeg's ``jfdctint.c`` before its descaling, outputs 0..7."""
    tmp0, tmp7 = d[0] + d[7], d[0] - d[7]
    tmp1, tmp6 = d[1] + d[6], d[1] - d[6]
    tmp2, tmp5 = d[2] + d[5], d[2] - d[5]
    tmp3, tmp4 = d[3] + d[4], d[3] - d[4]
    tmp10, tmp13, tmp11, tmp12 = tmp0 + tmp3, tmp0 - tmp3, tmp1 + tmp2, tmp1 - tmp2
    z1 = (tmp12 + tmp13) * 4433
    out = {0: tmp10 + tmp11, 4: tmp10 - tmp11, 2: z1 + tmp13 * 6270, 6: z1 - tmp12 * 15137}
    z1, z2, z3, z4 = tmp4 + tmp7, tmp5 + tmp6, tmp4 + tmp6, tmp5 + tmp7
    z5 = (z3 + z4) * 9633
    z1, z2 = z1 * -7373, z2 * -20995
    z3, z4 = z3 * -16069 + z5, z4 * -3196 + z5
    out |= {
        7: tmp4 * 2446 + z1 + z3,
        5: tmp5 * 16819 + z2 + z4,
        3: tmp6 * 25172 + z2 + z3,
        1: tmp7 * 12299 + z1 + z4,
    }
    return [out[k] for k in range(8)]


def _pass_matrix(one_d) -> np.ndarray:
    """The int32 matrix ``M`` of a linear 8-point pass: ``out[i] = sum_k M[i, k] in[k]``."""
    matrix = np.stack(one_d(list(np.eye(8, dtype=np.int64))))
    assert np.abs(matrix).max() < 2**31
    return matrix.astype(np.int32)


# Each 1-D integer pass is linear, so it is one exact int32 matrix product: int32 arithmetic
# wraps modulo 2**32 whatever the order of operations, so the sums equal libjpeg's bit for bit.
_IDCT_MATRIX = _pass_matrix(_islow_1d)
_FDCT_MATRIX = _pass_matrix(_islow_fdct_1d)
# jfdctint.c scales its DC and row-4 outputs by shifts only (no multiplications).
_FDCT_EVEN = np.isin(np.arange(8), (0, 4))


def _descale(x: jax.Array, bits: int) -> jax.Array:
    return jnp.right_shift(x + (1 << (bits - 1)), bits)


def _along(matrix: np.ndarray, x: jax.Array, axis: int) -> jax.Array:
    """Exact int32 product of an 8-point pass with axis -2 (columns) or -1 (rows) of blocks."""
    spec = "ik,...kj->...ij" if axis == -2 else "jk,...ik->...ij"
    return jnp.einsum(spec, jnp.asarray(matrix), x, preferred_element_type=jnp.int32)


def islow_idct_8x8(dequantized: jax.Array) -> jax.Array:
    """libjpeg(-turbo)'s default IDCT (``JDCT_ISLOW``), bit for bit, on integer inputs.

    Args:
      dequantized: integer-valued ``(..., 8, 8)`` coefficients already multiplied by the
        quantization table (any dtype; rounded and clamped to 15 bits).

    Returns:
      int32 ``(..., 8, 8)`` samples, level-shifted (+128) and clamped to [0, 255].
    """
    x = jnp.clip(jnp.round(dequantized), -_DEQUANT_LIMIT, _DEQUANT_LIMIT).astype(jnp.int32)
    work = _descale(_along(_IDCT_MATRIX, x, -2), _CONST_BITS - _PASS1_BITS)
    out = _descale(_along(_IDCT_MATRIX, work, -1), _CONST_BITS + _PASS1_BITS + 3)
    return jnp.clip(out + 128, 0, 255)


def islow_quantize_8x8(samples: jax.Array, qtable: jax.Array) -> jax.Array:
    """libjpeg(-turbo)'s default forward DCT (``JDCT_ISLOW``) and quantization, bit for bit.

    Args:
      samples: integer-valued ``(..., 8, 8)`` samples in 0..255 (not level-shifted).
      qtable: integer ``(..., 8, 8)`` quantization table (entries >= 1), broadcastable against
        ``samples``.

    Returns:
      int32 ``(..., 8, 8)`` quantized coefficients, as written to the file.
    """
    x = jnp.round(samples).astype(jnp.int32) - 128
    rows = _along(_FDCT_MATRIX, x, -1)  # pass 1 over each row; outputs scaled up by 2 bits
    even = jnp.asarray(_FDCT_EVEN)
    rows = jnp.where(even, jnp.left_shift(rows, _PASS1_BITS),
                     _descale(rows, _CONST_BITS - _PASS1_BITS))  # fmt: skip
    cols = _along(_FDCT_MATRIX, rows, -2)
    scaled = jnp.where(even[:, None], _descale(cols, _PASS1_BITS),
                       _descale(cols, _CONST_BITS + _PASS1_BITS))  # fmt: skip
    # ``scaled`` is the DCT times 8; libjpeg divides the magnitude, rounding to nearest.
    divisor = jnp.round(qtable).astype(jnp.int32) * 8
    magnitude = floor_divide(jnp.abs(scaled) + divisor // 2, divisor)
    return jnp.sign(scaled) * magnitude


def floor_divide(n: jax.Array, d: jax.Array) -> jax.Array:
    """``n // d`` for int32 ``0 <= n < 2**24`` and ``d >= 1``, exactly.

    Vectorized integer division is slow on CPUs, so the quotient comes from float32 division
    (off by at most one for such ``n``, however the division rounds) and is then corrected with
    exact integer arithmetic.
    """
    quotient = jnp.floor(n.astype(jnp.float32) / d.astype(jnp.float32)).astype(jnp.int32)
    remainder = n - quotient * d
    return quotient + (remainder >= d).astype(jnp.int32) - (remainder < 0).astype(jnp.int32)
