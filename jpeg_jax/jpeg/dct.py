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


def _islow_1d(c: list[jax.Array]) -> list[jax.Array]:
    """One 8-point pass of libjpeg's accurate integer IDCT (Loeffler-Ligtenberg-Moschytz)."""
    z1 = (c[2] + c[6]) * 4433
    tmp2 = z1 - c[6] * 15137
    tmp3 = z1 + c[2] * 6270
    tmp0 = jnp.left_shift(c[0] + c[4], _CONST_BITS)
    tmp1 = jnp.left_shift(c[0] - c[4], _CONST_BITS)
    even = (tmp0 + tmp3, tmp1 + tmp2, tmp1 - tmp2, tmp0 - tmp3)
    o3, o2, o1, o0 = c[1], c[3], c[5], c[7]
    z1, z2, z3, z4 = o0 + o3, o1 + o2, o0 + o2, o1 + o3
    z5 = (z3 + z4) * 9633
    z1, z2 = z1 * -7373, z2 * -20995
    z3, z4 = z3 * -16069 + z5, z4 * -3196 + z5
    odd = (o3 * 12299 + z1 + z4, o2 * 25172 + z2 + z3, o1 * 16819 + z2 + z4, o0 * 2446 + z1 + z3)
    return [even[i] + odd[i] for i in range(4)] + [even[3 - i] - odd[3 - i] for i in range(4)]


def _descale(x: jax.Array, bits: int) -> jax.Array:
    return jnp.right_shift(x + (1 << (bits - 1)), bits)


def islow_idct_8x8(dequantized: jax.Array) -> jax.Array:
    """libjpeg(-turbo)'s default IDCT (``JDCT_ISLOW``), bit for bit, on integer inputs.

    Args:
      dequantized: integer-valued ``(..., 8, 8)`` coefficients already multiplied by the
        quantization table (any dtype; rounded and clamped to 15 bits).

    Returns:
      int32 ``(..., 8, 8)`` samples, level-shifted (+128) and clamped to [0, 255].
    """
    x = jnp.clip(jnp.round(dequantized), -_DEQUANT_LIMIT, _DEQUANT_LIMIT).astype(jnp.int32)
    columns = _islow_1d([x[..., k, :] for k in range(8)])  # spatial rows, over columns
    work = jnp.stack([_descale(v, _CONST_BITS - _PASS1_BITS) for v in columns], axis=-2)
    rows = _islow_1d([work[..., :, k] for k in range(8)])
    out = jnp.stack([_descale(v, _CONST_BITS + _PASS1_BITS + 3) for v in rows], axis=-1)
    return jnp.clip(out + 128, 0, 255)


def _islow_fdct_1d(d: list[jax.Array]) -> tuple[list[jax.Array], list[jax.Array]]:
    """One 8-point pass of libjpeg's ``jfdctint.c``: (even outputs 0/4, odd/rotated terms)."""
    tmp0, tmp7 = d[0] + d[7], d[0] - d[7]
    tmp1, tmp6 = d[1] + d[6], d[1] - d[6]
    tmp2, tmp5 = d[2] + d[5], d[2] - d[5]
    tmp3, tmp4 = d[3] + d[4], d[3] - d[4]
    tmp10, tmp13, tmp11, tmp12 = tmp0 + tmp3, tmp0 - tmp3, tmp1 + tmp2, tmp1 - tmp2
    z1 = (tmp12 + tmp13) * 4433
    rotated = {2: z1 + tmp13 * 6270, 6: z1 - tmp12 * 15137}
    z1, z2, z3, z4 = tmp4 + tmp7, tmp5 + tmp6, tmp4 + tmp6, tmp5 + tmp7
    z5 = (z3 + z4) * 9633
    z1, z2 = z1 * -7373, z2 * -20995
    z3, z4 = z3 * -16069 + z5, z4 * -3196 + z5
    rotated |= {
        7: tmp4 * 2446 + z1 + z3,
        5: tmp5 * 16819 + z2 + z4,
        3: tmp6 * 25172 + z2 + z3,
        1: tmp7 * 12299 + z1 + z4,
    }
    return [tmp10 + tmp11, tmp10 - tmp11], [rotated[k] for k in (1, 2, 3, 5, 6, 7)]


def _islow_fdct_pass(d: list[jax.Array], even_shift: int, odd_shift: int) -> list[jax.Array]:
    (e0, e4), (o1, o2, o3, o5, o6, o7) = _islow_fdct_1d(d)
    even = [jnp.left_shift(v, -even_shift) if even_shift < 0 else _descale(v, even_shift)
            for v in (e0, e4)]  # fmt: skip
    o1, o2, o3, o5, o6, o7 = (_descale(v, odd_shift) for v in (o1, o2, o3, o5, o6, o7))
    return [even[0], o1, o2, o3, even[1], o5, o6, o7]


def islow_quantize_8x8(samples: jax.Array, qtable: jax.Array) -> jax.Array:
    """libjpeg(-turbo)'s default forward DCT (``JDCT_ISLOW``) and quantization, bit for bit.

    Args:
      samples: integer-valued ``(..., 8, 8)`` samples in 0..255 (not level-shifted).
      qtable: integer ``(..., 8, 8)`` quantization table, broadcastable against ``samples``.

    Returns:
      int32 ``(..., 8, 8)`` quantized coefficients, as written to the file.
    """
    x = jnp.round(samples).astype(jnp.int32) - 128
    rows = _islow_fdct_pass([x[..., :, k] for k in range(8)], -_PASS1_BITS,
                            _CONST_BITS - _PASS1_BITS)  # fmt: skip
    work = jnp.stack(rows, axis=-1)
    cols = _islow_fdct_pass([work[..., k, :] for k in range(8)], _PASS1_BITS,
                            _CONST_BITS + _PASS1_BITS)  # fmt: skip
    scaled = jnp.stack(cols, axis=-2)  # the DCT scaled by 8
    divisor = jnp.round(qtable).astype(jnp.int32) * 8
    magnitude = (jnp.abs(scaled) + divisor // 2) // divisor
    return jnp.sign(scaled) * magnitude
