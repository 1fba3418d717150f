"""Convolution and rematerialisation kernels of the generator, with their CPU-speed variants.

Pure JAX functions (no Flax). Two implementations of the same math, chosen by configuration
(``Generator.conv_impl``, resolved per backend by :func:`jpeg_jax.platform.resolve_generator`),
never by asking the backend while tracing:

- ``"xla"``: :func:`conv2d` with XLA's own gradients, the variant GPUs and TPUs run.
- ``"eigen"``: the same forward with a custom VJP that writes both gradients as NHWC/HWIO
  convolutions, the one form XLA:CPU sends to its Eigen kernels everywhere (XLA:CPU rewrites
  gradient convolutions into that form only in the entry computation, so inside a
  ``scan``/while body XLA's own gradients run as naive loop nests), with the weight gradient
  laid out for Eigen's contraction (:func:`kernel_grad`). Values equal ``"xla"``'s up to float
  summation order (tested). Measurements: ``benchmarks/RESULTS.md`` ("Models").

:func:`checkpoint_in_order` is rematerialisation whose recomputation is ordered after the
incoming cotangent (see its docstring for why the looped trunk needs it).

All convolutions here are stride 1, 'SAME' padded, odd square kernels, NHWC inputs, HWIO
kernels, computed in the input's dtype.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

CONV_IMPLS = ("xla", "eigen")


def conv_same(x: Array, kernel: Array, precision: Any = None, padding: Any = "SAME") -> Array:
    """``lax.conv_general_dilated`` with stride 1, NHWC / HWIO / NHWC and the given padding."""
    return jax.lax.conv_general_dilated(
        x,
        kernel,
        window_strides=(1, 1),
        padding=padding,
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        precision=precision,
    )


def piece_channels(xs: Sequence[Array]) -> list[slice]:
    """The channels of the concatenation of ``xs`` (along the last axis) each piece occupies."""
    ends = np.cumsum([int(x.shape[-1]) for x in xs])
    return [slice(int(end) - int(x.shape[-1]), int(end)) for x, end in zip(xs, ends, strict=True)]


def conv_pieces(xs: Sequence[Array], kernel: Array, precision: Any = None) -> Array:
    """The convolution of the channel concatenation of ``xs``, as a sum of one convolution per
    piece over its slice of the kernel's input channels (the concatenation is never built)."""
    pieces = zip(xs, piece_channels(xs), strict=True)
    return sum(conv_same(x, kernel[:, :, channels], precision) for x, channels in pieces)


@partial(jax.custom_vjp, nondiff_argnums=(2,))
def _conv_eigen(xs: tuple[Array, ...], kernel: Array, precision: Any = None) -> Array:
    return conv_pieces(xs, kernel, precision)


def _conv_eigen_fwd(xs, kernel, precision):
    return conv_pieces(xs, kernel, precision), (xs, kernel)


def conv_backward(precision: Any, residuals: tuple, g: Array) -> tuple:
    """The ``"eigen"`` VJP of :func:`conv_pieces`: both gradients as NHWC/HWIO convolutions.

    Args:
      precision: the forward's ``lax`` precision.
      residuals: ``(xs, kernel)``, the forward's pieces (a tuple of NHWC arrays) and HWIO kernel.
      g: the output cotangent, NHWC.

    Returns:
      ``(dxs, dkernel)``: d/dx is one correlation of ``g`` with the spatially flipped,
      in/out-swapped kernel, sliced into the pieces; d/dkernel one :func:`kernel_grad` per piece,
      joined along the input channels (benchmarks/RESULTS.md, "Models": why per piece).
    """
    xs, kernel = residuals
    dx = conv_same(g, jnp.flip(kernel, (0, 1)).swapaxes(2, 3).astype(g.dtype), precision)
    dxs = tuple(dx[..., channels] for channels in piece_channels(xs))
    dk = [kernel_grad(x, g, kernel.shape[0], precision) for x in xs]
    return dxs, (dk[0] if len(dk) == 1 else jnp.concatenate(dk, axis=2)).astype(kernel.dtype)


_conv_eigen.defvjp(_conv_eigen_fwd, conv_backward)

# Below a batch of SLAB_BELOW_BATCH, rows are cut into slabs that join the image batch in
# Eigen's contracted features until they are KERNEL_GRAD_FEATURES wide (benchmarks/RESULTS.md,
# "Weight gradients" and "weight-gradient layout re-tuned").
KERNEL_GRAD_FEATURES = 16
SLAB_BELOW_BATCH = 4


def kernel_grad(x: Array, g: Array, size: int, precision: Any = None) -> Array:
    """d/dkernel of a stride-1 'SAME' ``size`` x ``size`` convolution, as one NHWC/HWIO
    convolution: ``dk[i, j, ci, co] = sum_{b,h,w} x_pad[b, h + i, w + j, ci] * g[b, h, w, co]``.

    The correlation runs over (rows, columns, batch), so one operand, the "image", takes its
    channels as the batch and the other is the "kernel". For Eigen's contraction:
    - the operand with fewer channels is the image: the gradient ``g`` (the output comes out
      flipped and channel-swapped) when it is narrower than ``x``, else ``x``;
    - below a batch of :data:`SLAB_BELOW_BATCH` (e.g. one image per vmapped sample), the rows
      are cut into S slabs (each with its halo) that join the batch in the contracted features,
      S x batch ~ :data:`KERNEL_GRAD_FEATURES`; rows are zero-padded to a multiple of S, which
      adds nothing to the sums.

    Args:
      x: (B, H, W, Cin) the convolution's input.
      g: (B, H, W, Cout) the cotangent of its output.
      size: the (odd) kernel size.
      precision: ``lax`` precision.

    Returns:
      (size, size, Cin, Cout) in the inputs' dtype.
    """
    batch, rows, cols, cin = x.shape
    k = size // 2
    swap = g.shape[-1] < cin
    image, kern = (g, x) if swap else (x, g)
    features = KERNEL_GRAD_FEATURES if batch < SLAB_BELOW_BATCH else batch  # no slabs from 4 up
    slabs = 1
    while slabs * 2 * batch <= features and slabs * 2 <= rows:
        slabs *= 2
    h = -(-rows // slabs)  # rows per slab
    extra = slabs * h - rows
    # Channels to the front first (a plain 2-D transpose), then pad and cut the slabs along
    # contiguous rows (cheaper than one 5-D transpose of the padded slabs).
    c = image.shape[-1]
    image = image.reshape(-1, c).T.reshape(c, batch, rows, cols)
    image = jnp.pad(image, ((0, 0), (0, 0), (k, k + extra), (k, k)))
    image = jnp.stack([image[:, :, s * h : s * h + h + 2 * k] for s in range(slabs)], axis=1)
    image = image.transpose(0, 3, 4, 1, 2).reshape(c, h + 2 * k, cols + 2 * k, slabs * batch)
    kern = jnp.pad(kern, ((0, 0), (0, extra), (0, 0), (0, 0)))
    kern = kern.reshape(batch, slabs, h, cols, -1).transpose(2, 3, 1, 0, 4)
    out = conv_same(image, kern.reshape(h, cols, slabs * batch, -1), precision, "VALID")
    if swap:  # out[co, i', j', ci] with i' = size - 1 - i
        return jnp.flip(out, (1, 2)).transpose(1, 2, 3, 0)
    return out.transpose(1, 2, 0, 3)  # out[ci, i, j, co]


def conv2d(
    x: Array | Sequence[Array], kernel: Array, *, impl: str = "xla", precision: Any = None
) -> Array:
    """Stride-1 'SAME' convolution (odd square kernel), NHWC / HWIO, in ``x``'s dtype.

    Args:
      x: (B, H, W, C) or a sequence of such arrays: then the convolution of their channel
        concatenation, computed as a sum of one convolution per piece over its slice of
        ``kernel`` (the concatenation is never built; the "split" dense convolutions).
      kernel: (k, k, sum(C), Cout), cast to ``x``'s dtype.
      impl: ``"xla"`` (XLA's own gradients) or ``"eigen"`` (the custom VJP of
        :func:`conv_backward`, for XLA:CPU). Same values; gradients equal up to float rounding.
      precision: ``lax`` precision of every convolution.

    Returns:
      (B, H, W, Cout).
    """
    xs = tuple(x) if isinstance(x, list | tuple) else (x,)
    kernel = kernel.astype(xs[0].dtype)
    if impl == "eigen":
        return _conv_eigen(xs, kernel, precision)
    if impl != "xla":
        raise ValueError(
            f"conv impl must be one of {CONV_IMPLS}, got {impl!r} (a config's 'auto' is "
            "resolved by jpeg_jax.platform.resolve_generator)"
        )
    return conv_pieces(xs, kernel, precision)


def in_order_backward(fn: Callable[[Any, Array, Any], Array], residuals: tuple, ct: Array):
    """The VJP of ``fn(params, x, key)`` at ``ct``, recomputing ``fn`` only once ``ct`` exists.

    The saved input ``x`` gets a real data dependency on the cotangent (``x + 0 * ct[0]``; XLA
    does not fold ``0 * y`` for floats), so no scheduler can move the recomputation ahead of
    the backward pass that produces ``ct``.

    Args:
      fn: the pure function that was rematerialised.
      residuals: ``(params, x, key)`` as stored by the forward pass.
      ct: the output cotangent.

    Returns:
      ``(d params, d x, None)`` (``key`` gets no gradient).
    """
    params, x, key = residuals
    x = x + jnp.zeros((), x.dtype) * ct.reshape(-1)[0].astype(x.dtype)
    _, vjp = jax.vjp(lambda p, x: fn(p, x, key), params, x)
    return (*vjp(ct), None)


def checkpoint_in_order(fn: Callable[[Any, Array, Any], Array]) -> Callable:
    """Rematerialisation of ``fn(params, x, key)`` whose recomputation waits for its cotangent.

    Like ``jax.checkpoint`` it stores only the arguments; unlike it, block i is recomputed only
    once block i + 1's backward is done (:func:`in_order_backward`). On XLA:CPU
    ``jax.checkpoint`` and ``nn.remat`` of unrolled blocks saved no memory: every recomputation
    was scheduled right after the forward pass (benchmarks/RESULTS.md, "Remat"). ``key`` (a PRNG
    key or None) gets no gradient. The generator lifts the same backward into Flax with
    ``nn.custom_vjp``.
    """

    @jax.custom_vjp
    def run(params, x, key):
        return fn(params, x, key)

    def forward(params, x, key):
        return fn(params, x, key), (params, x, key)

    run.defvjp(forward, partial(in_order_backward, fn))
    return run
