"""Straight-through rounding: exact rounded values forward, identity gradient backward."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def round_ste(x: jax.Array) -> jax.Array:
    """Round to the nearest integer (ties to even) with a straight-through gradient.

    The forward value is ``jnp.round(x)``; the gradient is exactly the identity, so losses on
    quantized JPEG coefficients or 8-bit pixels can be trained through.

    Args:
      x: float array of any shape.

    Returns:
      Array of ``x``'s shape and dtype holding integers.
    """
    return x + jax.lax.stop_gradient(jnp.round(x) - x)


def floor_ste(x: jax.Array) -> jax.Array:
    """``jnp.floor`` forward, identity gradient (libjpeg's ``>>`` after adding a bias)."""
    return x + jax.lax.stop_gradient(jnp.floor(x) - x)
