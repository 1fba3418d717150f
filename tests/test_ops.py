"""Tests of jpeg_jax.models.ops: both convolution implementations against XLA's autodiff and
closed forms, and the in-order rematerialisation (values, gradients, compiled memory)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jpeg_jax.models import ops


@pytest.mark.parametrize("impl", ops.CONV_IMPLS)
@pytest.mark.parametrize(
    "xshape, cout, size, dtype, tol",
    [
        ((2, 5, 7, 3), 7, 3, jnp.float32, 1e-5),  # d/dk with x as the image, 4 slabs, 5 -> 8 rows
        ((1, 1, 1, 2), 1, 3, jnp.float32, 1e-6),  # g as the image (fewer channels), one pixel
        ((1, 37, 53, 20), 8, 3, jnp.float32, 1e-5),  # g as the image, 16 slabs, 37 -> 48 rows
        ((4, 16, 12, 6), 12, 3, jnp.float32, 1e-5),  # co == 2 ci: x as the image, no slabs
        ((2, 9, 4, 7), 5, 3, jnp.float32, 1e-5),  # g as the image, 8 slabs, 9 -> 16 rows
        ((20, 6, 6, 3), 2, 3, jnp.float32, 1e-5),  # batch >= 4: no slabs
        ((4, 8, 8, 32), 32, 3, jnp.float32, 1e-5),  # equal widths: x as the image
        ((2, 9, 7, 5), 3, 1, jnp.float32, 1e-5),  # 1x1 kernel, no halo
        ((3, 11, 10, 4), 5, 5, jnp.float32, 1e-5),  # 5x5 kernel, halo 2
        ((3, 16, 12, 9), 5, 3, jnp.bfloat16, 3e-2),
    ],
)
def test_conv2d_equals_xla_autodiff(impl, xshape, cout, size, dtype, tol):
    kx, kk, kg = jax.random.split(jax.random.key(3), 3)
    x = jax.random.normal(kx, xshape).astype(dtype)
    k = jax.random.normal(kk, (size, size, xshape[-1], cout))
    g = jax.random.normal(kg, (*xshape[:-1], cout)).astype(dtype)
    ref_out, ref_vjp = jax.vjp(lambda x, k: ops.conv_same(x, k.astype(dtype)), x, k)
    out, vjp = jax.vjp(lambda x, k: ops.conv2d(x, k, impl=impl), x, k.astype(dtype))
    assert out.dtype == dtype
    np.testing.assert_array_equal(np.asarray(out, np.float32), np.asarray(ref_out, np.float32))
    for got, want in zip(vjp(g), ref_vjp(g), strict=True):
        want = np.asarray(want, np.float32)
        np.testing.assert_allclose(np.asarray(got, np.float32), want, atol=tol * np.abs(want).max())


@pytest.mark.parametrize("impl", ops.CONV_IMPLS)
@pytest.mark.parametrize("channels", [(3,), (8, 4, 4, 1), (2, 5)])
def test_conv2d_of_pieces_equals_xla_autodiff_of_the_concatenation(impl, channels):
    """The split dense convolution (one conv per piece; with "eigen" d/dx sliced from one conv,
    d/dkernel per piece) against XLA's own gradients of the convolution of the concatenation."""
    keys = jax.random.split(jax.random.key(7), len(channels) + 2)
    xs = [jax.random.normal(key, (3, 9, 11, c)) for key, c in zip(keys, channels, strict=False)]
    k = jax.random.normal(keys[-2], (3, 3, sum(channels), 6))
    g = jax.random.normal(keys[-1], (3, 9, 11, 6))
    concat = lambda xs, k: ops.conv_same(jnp.concatenate(xs, axis=-1), k)
    ref_out, ref_vjp = jax.vjp(concat, xs, k)
    out, vjp = jax.vjp(lambda xs, k: ops.conv2d(xs, k, impl=impl), xs, k)
    np.testing.assert_allclose(out, ref_out, atol=1e-5 * np.abs(ref_out).max())
    got, want = jax.tree.leaves(vjp(g)), jax.tree.leaves(ref_vjp(g))
    assert [a.shape for a in got] == [b.shape for b in want]
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5 * np.abs(b).max())


def test_conv2d_rejects_unknown_impl():
    with pytest.raises(ValueError, match="conv impl"):
        ops.conv2d(jnp.zeros((1, 4, 4, 1)), jnp.zeros((3, 3, 1, 1)), impl="cudnn")


@pytest.mark.parametrize("xshape, cout", [((2, 7, 5, 3), 7), ((3, 6, 9, 5), 2)])
def test_kernel_grad_closed_form(xshape, cout):
    """d/dkernel against its definition, summed in float64 by numpy (x, then g as the image)."""
    rng = np.random.default_rng(0)
    (b, h, w, _), x = xshape, rng.normal(size=xshape)
    g = rng.normal(size=(b, h, w, cout))
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    tap = lambda i, j: np.einsum("bhwc,bhwd->cd", xp[:, i : i + h, j : j + w], g)
    want = np.array([[tap(i, j) for j in range(3)] for i in range(3)])
    got = ops.kernel_grad(jnp.asarray(x, jnp.float32), jnp.asarray(g, jnp.float32), 3)
    np.testing.assert_allclose(np.asarray(got), want, atol=1e-4)


def _chain(n: int):
    """n residual MLP blocks with wide hidden layers (many activations per block, a narrow
    block input), as a pure ``fn(params, x, key)`` per block."""

    def block(ws, x, key):
        h = x
        for w in ws[:-1]:
            h = jnp.tanh(h @ w)
        return x + jnp.tanh(h @ ws[-1] + 0.1 * jax.random.normal(key, x.shape))

    def run(params, x, key, remat):
        body = ops.checkpoint_in_order(block) if remat else block
        for i, ws in enumerate(params):
            x = body(ws, x, jax.random.fold_in(key, i))
        return jnp.sum(x**2)

    return run


def test_checkpoint_in_order_same_values_and_gradients_and_less_memory():
    n, rows, width, hidden = 8, 256, 16, 256
    shapes = [(width, hidden), (hidden, hidden), (hidden, hidden), (hidden, width)]
    keys = iter(jax.random.split(jax.random.key(0), n * len(shapes)))
    params = [[jax.random.normal(next(keys), s) / np.sqrt(s[0]) for s in shapes] for _ in range(n)]
    x = jax.random.normal(jax.random.key(99), (rows, width))
    grad = jax.jit(jax.value_and_grad(_chain(n), argnums=(0, 1)), static_argnums=3)
    key = jax.random.key(5)
    (v0, g0), (v1, g1) = grad(params, x, key, False), grad(params, x, key, True)
    np.testing.assert_allclose(v1, v0, rtol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), g1, g0)

    def temp(remat):
        lowered = grad.lower(params, x, key, remat)
        return lowered.compile().memory_analysis().temp_size_in_bytes

    # Without remat every block keeps its hidden activations (n x 3 x rows x hidden floats);
    # in order, about one block's worth is live at a time.
    full, in_order = temp(False), temp(True)
    assert in_order < 0.4 * full, (in_order, full)
