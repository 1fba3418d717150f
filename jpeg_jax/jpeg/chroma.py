"""Chroma down- and upsampling as libjpeg(-turbo) does it.

Downsampling averages 2x1 / 2x2 / 1x2 boxes (``jcsample.c``: with ``exact=True`` the
alternating rounding bias 1, 2, 1, 2 / 0, 1, 0, 1 of ``h2v2``/``h2v1_downsample``, the constant
bias 1 of ``int_downsample`` for 1x2, and the integer shift). Upsampling is libjpeg's default
"fancy" triangular filter (``jdsample.c``, ``h2v1``/``h2v2``/``h1v2_fancy_upsample``): weights
3/4 and 1/4 toward the nearer and the farther sample in each direction, edges handled by
replicating the last sample, and with ``exact=True`` the same integer biases (+8/+7, +1/+2);
libjpeg-turbo replicates instead when a 2x1 / 2x2 plane is at most 2 samples wide.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jpeg_jax.jpeg.rounding import floor_ste


def pad_edge(x: jax.Array, axis: int, before: int = 0, after: int = 0) -> jax.Array:
    """Replicate the first / last sample ``before`` / ``after`` times along ``axis``.

    The values of ``jnp.pad(..., mode="edge")`` along one axis, built from slices and a
    concatenation, whose gradient (slices and sums) XLA runs faster than ``jnp.pad``'s.
    """
    if before == after == 0:
        return x
    n = x.shape[axis]
    parts = [x]
    if before:
        parts.insert(0, jnp.repeat(jax.lax.slice_in_dim(x, 0, 1, axis=axis), before, axis=axis))
    if after:
        parts.append(jnp.repeat(jax.lax.slice_in_dim(x, n - 1, n, axis=axis), after, axis=axis))
    return jnp.concatenate(parts, axis=axis)


def _alternating(n: int, first: float, second: float) -> jax.Array:
    return jnp.where(jnp.arange(n) % 2 == 0, first, second).astype(jnp.float32)


def _interleave(even: jax.Array, odd: jax.Array, axis: int) -> jax.Array:
    """Interleave two equally shaped arrays along ``axis`` (even first)."""
    stacked = jnp.stack([even, odd], axis=axis + 1 if axis >= 0 else axis)
    shape = list(even.shape)
    shape[axis] *= 2
    return stacked.reshape(shape)


def downsample(plane: jax.Array, h: int, v: int, *, exact: bool = False) -> jax.Array:
    """Average ``v x h`` boxes of a ``(..., H, W)`` plane (H, W multiples of v, h)."""
    if (h, v) == (1, 1):
        return plane
    width = plane.shape[-1]
    # Strided slices, not a reduction over a reshape: XLA's CPU reductions over such windows
    # (fused with the colour conversion feeding them) are markedly slower.
    boxes = sum(plane[..., i::v, j::h] for i in range(v) for j in range(h))
    n = h * v
    if not exact:
        return boxes / n
    if h == 2:  # h2v1/h2v2_downsample: the bias alternates along each output row
        bias = _alternating(width // h, 1.0, 2.0) if v == 2 else _alternating(width // h, 0.0, 1.0)
    else:  # int_downsample (1x2 boxes): half the box, rounding to nearest
        bias = float(n // 2)
    return floor_ste((boxes + bias) / n)


def _upsample_h(colsum: jax.Array, scale: float, biases: tuple[float, float], exact: bool):
    """Horizontal fancy step on a ``(..., H, W)`` array whose samples carry weight ``scale``."""
    padded = pad_edge(colsum, -1, 1, 1)
    center = 3.0 * padded[..., 1:-1]
    even = center + padded[..., :-2]
    odd = center + padded[..., 2:]
    divisor = 4.0 * scale
    if exact:
        even = floor_ste((even + biases[0]) / divisor)
        odd = floor_ste((odd + biases[1]) / divisor)
    else:
        even, odd = even / divisor, odd / divisor
    return _interleave(even, odd, axis=-1)


def _upsample_v(plane: jax.Array, exact: bool) -> jax.Array:
    """Vertical fancy step (``h1v2_fancy_upsample``): 3/4 nearer row + 1/4 farther row."""
    padded = pad_edge(plane, -2, 1, 1)
    center = 3.0 * padded[..., 1:-1, :]
    above = center + padded[..., :-2, :]
    below = center + padded[..., 2:, :]
    if exact:
        above, below = floor_ste((above + 1.0) / 4.0), floor_ste((below + 2.0) / 4.0)
    else:
        above, below = above / 4.0, below / 4.0
    return _interleave(above, below, axis=-2)


def upsample(plane: jax.Array, h: int, v: int, *, exact: bool = False) -> jax.Array:
    """libjpeg's upsampling of a ``(..., h_in, w_in)`` plane by ``(v, h)`` in {1, 2}.

    Fancy (triangular) for 2x1, 2x2 and 1x2; like libjpeg-turbo, 2x1 and 2x2 fall back to
    replication for planes at most 2 samples wide (images at most 4 pixels wide).
    """
    if (h, v) == (1, 1):
        return plane
    if h == 2 and plane.shape[-1] <= 2:
        return replicate(plane, h, v)
    if (h, v) == (1, 2):
        return _upsample_v(plane, exact)
    if (h, v) == (2, 1):
        return _upsample_h(plane, 1.0, (1.0, 2.0), exact)
    if (h, v) == (2, 2):
        padded = pad_edge(plane, -2, 1, 1)
        center = 3.0 * padded[..., 1:-1, :]
        colsum = _interleave(center + padded[..., :-2, :], center + padded[..., 2:, :], axis=-2)
        return _upsample_h(colsum, 4.0, (8.0, 7.0), exact)
    raise ValueError(f"unsupported chroma sampling factors h={h}, v={v}")


def replicate(plane: jax.Array, h: int, v: int) -> jax.Array:
    """Nearest-neighbour upsampling: the right inverse of :func:`downsample` (``exact=False``)."""
    return jnp.repeat(jnp.repeat(plane, v, axis=-2), h, axis=-1)
