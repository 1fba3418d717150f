"""JFIF full-range RGB <-> YCbCr, as floats or with libjpeg's fixed-point rounding.

With ``exact=True`` the forward values are those of libjpeg(-turbo)'s ``jccolor.c`` /
``jdcolor.c`` (16-bit fixed point, integer inputs); gradients are those of the same affine map
without the final ``floor`` (straight-through). All values are in 8-bit units (0..255).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jpeg_jax.jpeg.rounding import floor_ste

_ONE = 65536.0  # 1 << SCALEBITS
_HALF = 32768.0


def _fix(value: float) -> float:
    """libjpeg's ``FIX(x)``: ``x`` in 16-bit fixed point."""
    return float(int(value * _ONE + 0.5))


# Weights of Cb - 128 and Cr - 128 in R, G, B (libjpeg's ``ycc_rgb_convert``, 16-bit fixed point).
_CB_TO_RGB = np.array([0.0, -_fix(0.34414), _fix(1.772)], np.float32)
_CR_TO_RGB = np.array([_fix(1.402), -_fix(0.71414), 0.0], np.float32)


def rgb_to_ycbcr(rgb: jax.Array, *, exact: bool = False) -> tuple[jax.Array, ...]:
    """Split ``(..., 3)`` RGB (0..255) into Y, Cb, Cr planes ``(...)`` (0..255, chroma at 128).

    With ``exact=True`` the inputs should hold integers; all intermediate sums then stay below
    2**24, so float32 reproduces libjpeg's integer arithmetic exactly.
    """
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    if not exact:
        y = 0.299 * r + 0.587 * g + 0.114 * b
        cb = -0.168736 * r - 0.331264 * g + 0.5 * b + 128.0
        cr = 0.5 * r - 0.418688 * g - 0.081312 * b + 128.0
        return y, cb, cr
    y = floor_ste((_fix(0.299) * r + _fix(0.587) * g + _fix(0.114) * b + _HALF) / _ONE)
    # CBCR_OFFSET (128 << 16) is added after the shift to keep sums below 2**24.
    cb = floor_ste((-_fix(0.16874) * r - _fix(0.33126) * g + _HALF * b + _HALF - 1) / _ONE)
    cr = floor_ste((_HALF * r - _fix(0.41869) * g - _fix(0.08131) * b + _HALF - 1) / _ONE)
    return y, cb + 128.0, cr + 128.0


def ycbcr_to_rgb(y: jax.Array, cb: jax.Array, cr: jax.Array, *, exact: bool = False) -> jax.Array:
    """Y, Cb, Cr planes (0..255) -> ``(..., 3)`` RGB (0..255), not clamped.

    With ``exact=True`` (integer inputs) the values are libjpeg's ``ycc_rgb_convert`` before its
    range limit: ``R = Y + round(1.402 Cr')``, ``G = Y + round(-0.34414 Cb' - 0.71414 Cr')``,
    ``B = Y + round(1.772 Cb')`` in 16-bit fixed point.
    """
    cb = cb - 128.0
    cr = cr - 128.0
    if not exact:
        r = y + 1.402 * cr
        g = y - 0.344136 * cb - 0.714136 * cr
        b = y + 1.772 * cb
        return jnp.stack([r, g, b], axis=-1)
    # One broadcast over the channel axis rather than three stacked planes: XLA's CPU loop for
    # it is much cheaper. The zero weights add exact zeros: same values (gradients up to float
    # rounding).
    offsets = cb[..., None] * _CB_TO_RGB + cr[..., None] * _CR_TO_RGB
    return y[..., None] + floor_ste((offsets + _HALF) / _ONE)


def rgb_to_gray(rgb: jax.Array, *, exact: bool = False) -> jax.Array:
    """Luma only (what libjpeg stores for a grayscale JPEG of an RGB image)."""
    return rgb_to_ycbcr(rgb, exact=exact)[0]
