"""Building blocks shared by the generator and the critic (NHWC, flax.linen).

Pure array functions first (padding, pixel (un)shuffle, nearest upsampling), then thin modules:
a 3x3 convolution over several inputs with optional noise injection (the RDB convolution), the
quantization-table embedding and the FiLM modulation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax.core.scope import LazyRng

from jpeg_jax.models import ops

Array = jax.Array
Dtype = Any
Initializer = nn.initializers.Initializer

# PyTorch's default Conv2d weight init (kaiming_uniform with a=sqrt(5)) is U(+-1/sqrt(fan_in)).
torch_default_init: Initializer = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def kaiming_scaled_init(scale: float) -> Initializer:
    """BasicSR's ``default_init_weights``: Kaiming-normal (fan_in, gain sqrt 2) times ``scale``."""
    return nn.initializers.variance_scaling(2.0 * scale**2, "fan_in", "normal")


def leaky_relu(x: Array) -> Array:
    """LeakyReLU with slope 0.2, as in ESRGAN and the paper's critic."""
    return jax.nn.leaky_relu(x, negative_slope=0.2)


def pad_to_multiple(x: Array, multiple: int) -> Array:
    """Edge-pads the bottom/right of NHWC images so that H and W are multiples of ``multiple``.

    Edge (replicate) padding is what libjpeg does to fill incomplete MCUs before encoding, so the
    padded pixels look like the macroblock content the JPEG file was built from.

    Args:
      x: (B, H, W, C) images.
      multiple: block size, e.g. 16 for 4:2:0 JPEG macroblocks.

    Returns:
      (B, H', W', C) with H' = ceil(H / multiple) * multiple, same for W'.
    """
    h, w = x.shape[1], x.shape[2]
    ph, pw = -h % multiple, -w % multiple
    if ph == 0 and pw == 0:
        return x
    return jnp.pad(x, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="edge")


def pixel_unshuffle(x: Array, factor: int) -> Array:
    """Space-to-depth with PyTorch's channel order (``F.pixel_unshuffle``, BasicSR).

    Output channel ``c * factor**2 + i * factor + j`` holds input pixel ``(factor*y + i,
    factor*x + j)`` of channel ``c``; keeping PyTorch's order lets ported weights work as is.

    Args:
      x: (B, H, W, C) with H, W divisible by ``factor``.
      factor: downscaling factor.

    Returns:
      (B, H / factor, W / factor, C * factor**2).
    """
    b, h, w, c = x.shape
    x = x.reshape(b, h // factor, factor, w // factor, factor, c)
    x = x.transpose(0, 1, 3, 5, 2, 4)  # (b, h', w', c, i, j)
    return x.reshape(b, h // factor, w // factor, c * factor * factor)


def upsample_nearest(x: Array, factor: int = 2) -> Array:
    """Nearest-neighbour upsampling of (B, H, W, C) by an integer factor (``F.interpolate``)."""
    x = jnp.repeat(x, factor, axis=1)
    return jnp.repeat(x, factor, axis=2)


def noise_key(key: Array, *path: str) -> Array:
    """The key ``self.make_rng("noise")`` returns on its first call in the submodule at relative
    ``path`` of a module applied with ``rngs={"noise": key}`` (Flax's own derivation).

    Blocks that receive their noise key as an argument (the scanned trunk gets one per block
    as a scan input) derive their convolutions' keys with it, so every stacking draws the same
    noise as the plain modules did.
    """
    return LazyRng.create(key, *path, 1).as_jax_rng()


class DenseConv(nn.Module):
    """3x3 convolution of the channel concatenation of ``inputs`` (+ an optional noise channel).

    Parameters: ``kernel`` (3, 3, sum(C_i) [+ 1], features) laid out like the concatenation in
    ``inputs`` order with the noise channel last, ``bias`` (features,), and with noise a scalar
    ``noise_scale`` (initialised to 1) that multiplies the fresh N(0, 1) map.

    ``split=True`` never materialises the concatenation: it sums one convolution per input over
    the matching kernel slice (same parameters and values up to float rounding; a speed knob).
    The noise map joins the inputs as one more piece, with its kernel slice scaled by
    ``noise_scale`` (cheaper than scaling the map).

    Attributes:
      features: output channels.
      noise: whether a fresh noise channel is appended.
      split: convolve the inputs separately instead of concatenating them.
      conv_impl: ``"xla"`` or ``"eigen"`` (:func:`jpeg_jax.models.ops.conv2d`).
      kernel_init: initializer of the whole kernel (fan-in includes every input channel).
      dtype: computation dtype; params are ``param_dtype``.
      precision: ``lax`` precision of the convolution.
    """

    features: int
    noise: bool = False
    split: bool = False
    conv_impl: str = "xla"
    kernel_init: Initializer = torch_default_init
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    precision: Any = None

    @nn.compact
    def __call__(
        self, inputs: Sequence[Array], *, deterministic: bool = False, key: Array | None = None
    ) -> Array:
        """inputs: (B, H, W, C_i) arrays; key: the noise key (default: the "noise" rng stream);
        deterministic: no noise (needs no key). Returns (B, H, W, features) in ``dtype``."""
        sizes = [int(t.shape[-1]) for t in inputs]
        cin = sum(sizes) + int(self.noise)
        kernel = self.param(
            "kernel", self.kernel_init, (3, 3, cin, self.features), self.param_dtype
        )
        bias = self.param("bias", nn.initializers.zeros, (self.features,), self.param_dtype)
        inputs = [t.astype(self.dtype) for t in inputs]
        if self.noise:
            scale = self.param("noise_scale", nn.initializers.ones, (), self.param_dtype)
        parts, k = inputs, kernel[:, :, : sum(sizes)]
        if self.noise and not deterministic:  # zero noise contributes exactly nothing
            key = self.make_rng("noise") if key is None else key
            z = jax.random.normal(key, inputs[0].shape[:-1] + (1,), jnp.float32)
            # One more input (in the concatenation: one convolution, not an extra 1-channel one).
            parts = [*inputs, z.astype(self.dtype)]
            k = jnp.concatenate([k, kernel[:, :, -1:] * scale], axis=2)
        if not self.split:
            parts = parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=-1)
        y = ops.conv2d(parts, k, impl=self.conv_impl, precision=self.precision)
        return y + bias.astype(self.dtype)


def embed_qtables(qtables: Array) -> Array:
    """Flattens (B, 2, 8, 8) quantization tables to (B, 128) features in about [-1, 1].

    ``log(q) / log(255) * 2 - 1`` maps the baseline range [1, 255] onto [-1, 1]; the log makes
    a given relative change of quality equally visible at every QF.
    """
    q = jnp.clip(qtables.astype(jnp.float32), 1.0, None).reshape(qtables.shape[0], -1)
    return jnp.log(q) / np.log(255.0) * 2.0 - 1.0


class QTableEmbedding(nn.Module):
    """A small MLP embedding of the file's quantization tables: (B, 2, 8, 8) int -> (B, dim)."""

    dim: int = 128
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, qtables: Array) -> Array:
        h = embed_qtables(qtables)
        for i in range(2):
            h = nn.Dense(self.dim, dtype=self.dtype, param_dtype=self.param_dtype, name=f"fc{i}")(h)
            h = nn.silu(h)
        return h


class FiLM(nn.Module):
    """Feature-wise affine modulation ``x * (1 + gamma) + beta`` predicted from an embedding.

    The projection is zero-initialised, so at initialisation gamma = beta = 0 and FiLM is the
    identity: a FiLM model starts exactly as its FiLM-free counterpart (and ported weights keep
    working), while the gradient w.r.t. the projection is non-zero from the first step.
    """

    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array, embedding: Array) -> Array:
        """x: (B, H, W, C); embedding: (B, D). Returns (B, H, W, C)."""
        c = x.shape[-1]
        gb = nn.Dense(
            2 * c,
            kernel_init=nn.initializers.zeros,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="proj",
        )(embedding)
        gamma, beta = jnp.split(gb[:, None, None, :].astype(x.dtype), 2, axis=-1)
        return x * (1 + gamma) + beta
