"""Gradients of the JPEG ops against their analytic linear maps (NumPy/SciPy, written here).

Where no clamp is active, the float JPEG round trip is linear in the image: colour transform C1,
chroma box downsampling D (after libjpeg's edge replication), DCT / Q, then Q * IDCT (the two
cancel: straight-through rounding passes the gradient unchanged), libjpeg's triangular "fancy"
chroma upsampling U, the inverse colour transform C2, and cropping. ``exact=True`` rounds where
libjpeg rounds, with straight-through gradients, so its gradient must be this map's transpose
with libjpeg's 16-bit fixed-point colour constants (``jccolor.c`` / ``jdcolor.c``), and
``exact=False``'s with the JFIF float constants. The two constant sets differ by < 2e-5, which
bounds how far "the gradients of the float pipeline" may be from the exact pipeline's.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.fft
from jpeg_helpers import photo

from jpeg_jax import jpeg

FACTORS = {"4:4:4": (1, 1), "4:2:2": (2, 1), "4:2:0": (2, 2), "4:4:0": (1, 2)}  # (h, v)


def _fix(x: float) -> float:
    """libjpeg's FIX(x) / 2**16: the constant it really multiplies by."""
    return int(x * 65536 + 0.5) / 65536


# RGB -> (Y, Cb, Cr) and (Y, Cb - 128, Cr - 128) -> RGB, JFIF float and libjpeg fixed point.
C1_FLOAT = np.array(
    [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]]
)
C2_FLOAT = np.array([[1.0, 0.0, 1.402], [1.0, -0.344136, -0.714136], [1.0, 1.772, 0.0]])
C1_FIXED = np.array(
    [
        [_fix(0.299), _fix(0.587), _fix(0.114)],
        [-_fix(0.16874), -_fix(0.33126), 0.5],
        [0.5, -_fix(0.41869), -_fix(0.08131)],
    ]
)
C2_FIXED = np.array(
    [[1.0, 0.0, _fix(1.402)], [1.0, -_fix(0.34414), -_fix(0.71414)], [1.0, _fix(1.772), 0.0]]
)


# ----------------------------------------------------------------------------- 1-D linear maps
def _replicate(n: int, n_out: int) -> np.ndarray:
    """Edge replication of n samples to n_out >= n."""
    return np.eye(n)[np.minimum(np.arange(n_out), n - 1)]


def _box(n: int, f: int) -> np.ndarray:
    """Average of f consecutive samples (n a multiple of f)."""
    return np.kron(np.eye(n // f), np.full((1, f), 1.0 / f))


def _fancy(n: int, f: int) -> np.ndarray:
    """libjpeg's triangular upsampling by f in {1, 2}: 3/4 nearer + 1/4 farther sample."""
    if f == 1:
        return np.eye(n)
    up = np.zeros((2 * n, n))
    for i in range(n):
        up[2 * i, i] += 0.75
        up[2 * i, max(i - 1, 0)] += 0.25
        up[2 * i + 1, i] += 0.75
        up[2 * i + 1, min(i + 1, n - 1)] += 0.25
    return up


def _chroma_path(n: int, f: int, mcu: int) -> tuple[np.ndarray, np.ndarray]:
    """Along one axis of n pixels: (sample -> stored chroma sample, stored chroma -> pixel)."""
    padded = -(-n // mcu) * mcu
    down = _box(padded, f) @ _replicate(n, padded)  # (padded / f, n)
    m = -(-n // f)  # chroma samples the decoder keeps
    up = _fancy(m, f)[:n]  # (n, m)
    return down, up[:, :m] @ np.eye(padded // f)[:m]


def _analytic_compress_grad(w: np.ndarray, subsampling: str, c1, c2) -> np.ndarray:
    """d sum(w * compress(x)) / dx for w (H, W, 3), with no clamp active."""
    h, v = FACTORS[subsampling]
    height, width = w.shape[:2]
    rows_down, rows_up = _chroma_path(height, v, 8 * v)
    cols_down, cols_up = _chroma_path(width, h, 8 * h)
    chroma = rows_up @ rows_down, cols_up @ cols_down  # (H, H), (W, W)
    g = w @ c2  # adjoint of C2 per pixel: channels Y, Cb, Cr
    g[..., 1:] = np.einsum("ih,hwc,jw->ijc", chroma[0].T, g[..., 1:], chroma[1].T)
    return g @ c1  # adjoint of C1


def _analytic_quantized_dct_grad(v, q, size, subsampling, c1) -> np.ndarray:
    """d sum(v_k * quantized_dct(x)_k) / dx: v a (y, cb, cr) tuple of (Bh, Bw, 8, 8)."""
    h, fv = FACTORS[subsampling]
    height, width = size
    mcu_h, mcu_w = 8 * fv, 8 * h
    planes = []
    for k, weights in enumerate(v):
        table = q[0] if k == 0 else q[1]
        blocks = scipy.fft.idctn(weights / table, axes=(-2, -1), norm="ortho")  # adjoint of DCT
        bh, bw = weights.shape[:2]
        plane = blocks.transpose(0, 2, 1, 3).reshape(bh * 8, bw * 8)
        if k == 0:
            rows = _replicate(height, -(-height // mcu_h) * mcu_h)[: bh * 8]
            cols = _replicate(width, -(-width // mcu_w) * mcu_w)[: bw * 8]
        else:  # libjpeg: rows replicated to the vertical factor, downsampled, then to the MCU
            rows_in = -(-height // fv) * fv
            down = _box(rows_in, fv) @ _replicate(height, rows_in)
            rows = (_replicate(rows_in // fv, -(-height // mcu_h) * mcu_h // fv) @ down)[: bh * 8]
            cols = (
                _box(-(-width // mcu_w) * mcu_w, h) @ _replicate(width, -(-width // mcu_w) * mcu_w)
            )[: bw * 8]
        planes.append(rows.T @ plane @ cols)
    return 255.0 * np.stack(planes, axis=-1) @ c1


# ----------------------------------------------------------------------------- tests
def _mid_range_image(height: int, width: int) -> np.ndarray:
    """A photo squeezed into [0.3, 0.7]: no clamp is active anywhere in the round trip."""
    return 0.3 + 0.4 * photo("coffee", (slice(40, 40 + height), slice(90, 90 + width))) / 255.0


def _assert_no_clamp_active(x, qtables, subsampling):
    """The float IDCT of every block stays inside [0, 255], the output inside (0, 1)."""
    c = jpeg.encode(x, qtables, subsampling=subsampling)
    for k, coefficients in enumerate(c):
        samples = scipy.fft.idctn(
            np.asarray(coefficients) * np.asarray(qtables)[min(k, 1)], axes=(-2, -1), norm="ortho"
        )
        assert 0.0 < samples.min() + 128 and samples.max() + 128 < 255.0
    out = np.asarray(jpeg.compress(x, qtables, subsampling=subsampling))
    assert 0.0 < out.min() and out.max() < 1.0


@pytest.mark.parametrize("size", [(32, 48), (37, 53)])
@pytest.mark.parametrize("subsampling", list(FACTORS))
def test_compress_gradients_are_the_float_round_trips(size, subsampling):
    x = jnp.asarray(_mid_range_image(*size), jnp.float32)
    qtables = jpeg.quality_to_qtables(50)
    _assert_no_clamp_active(x, qtables, subsampling)
    w = np.random.default_rng(0).normal(size=(*size, 3))

    def grad(exact):
        loss = lambda v: jnp.sum(jnp.asarray(w, jnp.float32) * jpeg.compress(
            v, qtables, subsampling=subsampling, exact=exact))  # fmt: skip
        return np.asarray(jax.jit(jax.grad(loss))(x), np.float64)

    exact, smooth = grad(True), grad(False)
    fixed = _analytic_compress_grad(w, subsampling, C1_FIXED, C2_FIXED)
    floats = _analytic_compress_grad(w, subsampling, C1_FLOAT, C2_FLOAT)
    scale = np.abs(fixed).max()
    # float32 sums of a few dozen O(1) terms: measured 2e-7 of the scale. 2e-6 still tells the
    # fixed-point constants from the float ones (2e-5 apart), so each side is pinned.
    np.testing.assert_allclose(exact, fixed, rtol=0, atol=2e-6 * scale)
    np.testing.assert_allclose(smooth, floats, rtol=0, atol=2e-6 * scale)
    # "The gradients of the float pipeline": as close as the two constant sets allow.
    constants = np.abs(fixed - floats).max()
    assert constants < 1e-4 * scale
    np.testing.assert_allclose(exact, smooth, rtol=0, atol=constants + 2e-6 * scale)


@pytest.mark.parametrize("size", [(32, 48), (37, 53)])
@pytest.mark.parametrize("subsampling", list(FACTORS))
def test_quantized_dct_and_encode_gradients_are_the_float_dcts(size, subsampling):
    x = jnp.asarray(_mid_range_image(*size), jnp.float32)
    qtables = jpeg.quality_to_qtables(30)
    grids = jpeg.block_grid(size, subsampling)
    rng = np.random.default_rng(1)
    v = tuple(rng.normal(size=(*grids[name], 8, 8)) for name in ("y", "cb", "cr"))
    q = np.asarray(qtables, np.float64)

    def grad(fn, exact):
        def loss(image):
            c = fn(image, qtables, subsampling=subsampling, exact=exact)
            return sum(jnp.sum(jnp.asarray(vk, jnp.float32) * ck) for vk, ck in zip(v, c))

        return np.asarray(jax.jit(jax.grad(loss))(x), np.float64)

    fixed = _analytic_quantized_dct_grad(v, q, size, subsampling, C1_FIXED)
    floats = _analytic_quantized_dct_grad(v, q, size, subsampling, C1_FLOAT)
    tol = 2e-6 * np.abs(fixed).max()  # as above
    for fn in (jpeg.quantized_dct, jpeg.encode):  # encode: straight-through rounding
        np.testing.assert_allclose(grad(fn, True), fixed, rtol=0, atol=tol, err_msg=fn.__name__)
        np.testing.assert_allclose(grad(fn, False), floats, rtol=0, atol=tol, err_msg=fn.__name__)
