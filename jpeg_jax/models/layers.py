"""Building blocks shared by the generator and the critic (NHWC, flax.linen).

Pure array functions first (padding, pixel (un)shuffle, nearest upsampling), then thin modules:
a 3x3 convolution over several inputs with optional noise injection (the RDB convolution), the
quantization-table embedding and the FiLM modulation.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

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


def _conv_same(x: Array, kernel: Array, precision: Any = None, padding: Any = "SAME") -> Array:
    return jax.lax.conv_general_dilated(
        x,
        kernel,
        window_strides=(1, 1),
        padding=padding,
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        precision=precision,
    )


def _piece_channels(xs: Sequence[Array]) -> list[slice]:
    """The channels of the concatenation of ``xs`` that each piece occupies."""
    ends = np.cumsum([int(x.shape[-1]) for x in xs])
    return [slice(int(end) - int(x.shape[-1]), int(end)) for x, end in zip(xs, ends, strict=True)]


def _conv_pieces(xs: Sequence[Array], kernel: Array, precision: Any = None) -> Array:
    """The convolution of the channel concatenation of ``xs``, as a sum of one convolution per
    piece over its slice of the kernel's input channels (the concatenation is never built)."""
    pieces = zip(xs, _piece_channels(xs), strict=True)
    return sum(_conv_same(x, kernel[:, :, channels], precision) for x, channels in pieces)


@partial(jax.custom_vjp, nondiff_argnums=(2,))
def _conv_canonical_vjp(xs: tuple[Array, ...], kernel: Array, precision: Any = None) -> Array:
    return _conv_pieces(xs, kernel, precision)


def _conv_fwd(xs, kernel, precision):
    return _conv_pieces(xs, kernel, precision), (xs, kernel)


def _conv_bwd(precision, residuals, g):
    """Both gradients as NHWC/HWIO convolutions, the only form XLA:CPU runs through Eigen.

    d/dx: correlation of ``g`` with the spatially flipped, in/out-swapped kernel, one
    convolution for all pieces whose output is sliced (with several pieces, 5 % faster
    forward+backward of the paper-size generator than one per piece, ``benchmarks/RESULTS.md``).
    d/dkernel: one :func:`_kernel_grad` per piece, joined along the input channels (on the
    concatenated input it was 40 % slower: the concatenation is copied again for every conv).
    """
    xs, kernel = residuals
    dx = _conv_same(g, jnp.flip(kernel, (0, 1)).swapaxes(2, 3).astype(g.dtype), precision)
    dxs = tuple(dx[..., channels] for channels in _piece_channels(xs))
    dk = [_kernel_grad(x, g, kernel.shape[0], precision) for x in xs]
    return dxs, (dk[0] if len(dk) == 1 else jnp.concatenate(dk, axis=2)).astype(kernel.dtype)


# Eigen contracts over (rows, columns, features) of the convolution that computes d/dkernel;
# row slabs join the image batch in the features until they are this wide. Measured against no
# slabs (``benchmarks/RESULTS.md``): faster in one sweep, equal or slower in another, equal at
# model level.
_KERNEL_GRAD_FEATURES = 16


def _kernel_grad(x: Array, g: Array, size: int, precision: Any = None) -> Array:
    """d/dkernel of a stride-1 'SAME' ``size`` x ``size`` convolution, as one NHWC/HWIO
    convolution: dk[i, j, ci, co] = sum_{b,h,w} x_pad[b, h + i, w + j, ci] * g[b, h, w, co].

    The correlation runs over (rows, columns, batch), so one operand, the "image", takes its
    channels as the batch, and the other is the "kernel". Two choices make Eigen fast here:
    - the gradient ``g`` is the image (its patches are what Eigen packs; the output comes out
      flipped and channel-swapped) unless x has less than half its channels;
    - the rows are cut into S slabs (each with its halo) that join the batch in the contracted
      feature dimension, S x batch ~ 16 floats instead of the batch alone; the rows are
      zero-padded to a multiple of S, which adds nothing to the sums.
    Against the plain form (``benchmarks/conv_grads.py``): paper-size RDB convolutions at batch
    4 1.1-1.6x faster, batch 1 3.5-4x; the 128^2 ones at batch 4 0.7x (<1 % of a step).
    ``benchmarks/models.py`` measures the whole generator.
    """
    batch, rows, cols, cin = x.shape
    k = size // 2
    swap = g.shape[-1] <= 2 * cin  # g also for 32 -> 64: its slabs are shared with wider inputs
    image, kern = (g, x) if swap else (x, g)
    slabs = 1
    while slabs * 2 * batch <= _KERNEL_GRAD_FEATURES and slabs * 2 <= rows:
        slabs *= 2
    h = -(-rows // slabs)  # rows per slab
    extra = slabs * h - rows
    # Channels to the front first (a plain 2-D transpose), then pad and cut the slabs along
    # contiguous rows: 2x faster than one 5-D transpose of the padded slabs.
    c = image.shape[-1]
    image = image.reshape(-1, c).T.reshape(c, batch, rows, cols)
    image = jnp.pad(image, ((0, 0), (0, 0), (k, k + extra), (k, k)))
    image = jnp.stack([image[:, :, s * h : s * h + h + 2 * k] for s in range(slabs)], axis=1)
    image = image.transpose(0, 3, 4, 1, 2).reshape(c, h + 2 * k, cols + 2 * k, slabs * batch)
    kern = jnp.pad(kern, ((0, 0), (0, extra), (0, 0), (0, 0)))
    kern = kern.reshape(batch, slabs, h, cols, -1).transpose(2, 3, 1, 0, 4)
    out = _conv_same(image, kern.reshape(h, cols, slabs * batch, -1), precision, "VALID")
    if swap:  # out[co, i', j', ci] with i' = size - 1 - i
        return jnp.flip(out, (1, 2)).transpose(1, 2, 3, 0)
    return out.transpose(1, 2, 0, 3)  # out[ci, i, j, co]


_conv_canonical_vjp.defvjp(_conv_fwd, _conv_bwd)


def conv2d(x: Array | Sequence[Array], kernel: Array, precision: Any = None) -> Array:
    """Stride-1 'SAME' convolution (odd square kernel), NHWC / HWIO, in ``x``'s dtype.

    ``x`` may be a sequence of arrays: then it is the convolution of their channel
    concatenation, computed as a sum of one convolution per piece over its slice of ``kernel``
    (the concatenation is never built; the "split" dense convolutions).

    On the CPU backend the backward pass is written out explicitly (``_conv_bwd``): XLA:CPU
    rewrites gradient convolutions into the NHWC/HWIO form its Eigen kernels need only in the
    entry computation (``ConvCanonicalization``), so inside a ``lax.scan`` / while-loop body they
    fell back to a naive loop nest, 25x slower (the scanned generator's "stall"). Written in the
    canonical form from the start, the scanned backward runs as fast as the unrolled one. Other
    backends keep XLA's own convolution gradients. The weight gradient is also laid out for
    Eigen's speed (:func:`_kernel_grad`); values are identical, gradients equal to XLA's own up to
    float rounding (summation order).
    """
    xs = tuple(x) if isinstance(x, list | tuple) else (x,)
    kernel = kernel.astype(xs[0].dtype)
    if jax.default_backend() == "cpu":
        return _conv_canonical_vjp(xs, kernel, precision)
    return _conv_pieces(xs, kernel, precision)


class DenseConv(nn.Module):
    """3x3 convolution of the channel concatenation of ``inputs`` (+ an optional noise channel).

    Parameters: ``kernel`` (3, 3, sum(C_i) [+ 1], features) laid out like the concatenation in
    ``inputs`` order with the noise channel last, ``bias`` (features,), and with noise a scalar
    ``noise_scale`` (initialised to 1) that multiplies the fresh N(0, 1) map.

    ``split=True`` never materialises the concatenation: it sums one convolution per input over
    the matching kernel slice (mathematically identical; which is faster depends on the backend,
    see ``benchmarks/models.py``). The noise map joins the inputs as one more piece, with its
    kernel slice scaled by ``noise_scale`` (cheaper than scaling the map).

    Attributes:
      features: output channels.
      noise: whether a fresh noise channel is appended (drawn from the "noise" rng stream).
      split: convolve the inputs separately instead of concatenating them.
      kernel_init: initializer of the whole kernel (fan-in includes every input channel).
      dtype: computation dtype; params are ``param_dtype``.
    """

    features: int
    noise: bool = False
    split: bool = False
    kernel_init: Initializer = torch_default_init
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    precision: Any = None

    @nn.compact
    def __call__(self, inputs: Sequence[Array], *, deterministic: bool = False) -> Array:
        sizes = [int(t.shape[-1]) for t in inputs]
        cin = sum(sizes) + int(self.noise)
        kernel = self.param(
            "kernel", self.kernel_init, (3, 3, cin, self.features), self.param_dtype
        )
        bias = self.param("bias", nn.initializers.zeros, (self.features,), self.param_dtype)
        inputs = [t.astype(self.dtype) for t in inputs]
        if self.noise:
            scale = self.param("noise_scale", nn.initializers.ones, (), self.param_dtype)
        draw = self.noise and not deterministic  # zero noise contributes exactly nothing
        if draw:
            z = jax.random.normal(self.make_rng("noise"), inputs[0].shape[:-1] + (1,), jnp.float32)
            z, noise_kernel = z.astype(self.dtype), kernel[:, :, -1:] * scale
        parts, k = inputs, kernel[:, :, : sum(sizes)]
        if draw:  # one more input (concatenated: one convolution, not an extra 1-channel one,
            # 7 % faster generator forward at batch 1 on XLA:CPU)
            parts, k = [*inputs, z], jnp.concatenate([k, noise_kernel], axis=2)
        if not self.split:
            parts = parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=-1)
        y = conv2d(parts, k, self.precision)
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
