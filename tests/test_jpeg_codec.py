"""Golden tests of the JPEG codec against real libjpeg (Pillow) and closed forms."""

import io

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.fft
from jpeg_helpers import CROPS, photo, pillow_decode, pillow_jpeg
from PIL import Image

from jpeg_jax import jpeg
from jpeg_jax.jpeg import chroma, color, dct


def _rmse(a, b):
    return float(np.sqrt(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)))


@pytest.mark.parametrize("quality", range(1, 101))
def test_quality_to_qtables_equals_pillow(quality):
    buf = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buf, "JPEG", quality=quality)
    written = Image.open(buf).quantization
    expected = np.stack([np.reshape(written[0], (8, 8)), np.reshape(written[1], (8, 8))])
    np.testing.assert_array_equal(jpeg.quality_to_qtables(quality), expected)


def test_quality_to_qtables_batched():
    tables = jpeg.quality_to_qtables(jnp.array([[5, 50], [90, 100]]))
    assert tables.shape == (2, 2, 2, 8, 8) and tables.dtype == jnp.int32
    np.testing.assert_array_equal(tables[1, 1], np.ones((2, 8, 8)))


def test_dct_matches_scipy():
    blocks = np.random.default_rng(0).normal(size=(3, 8, 8)).astype(np.float32)
    expected = scipy.fft.dctn(blocks, type=2, norm="ortho", axes=(-2, -1))
    np.testing.assert_allclose(dct.dct_2d(jnp.asarray(blocks)), expected, atol=1e-5)
    np.testing.assert_allclose(dct.idct_2d(dct.dct_2d(jnp.asarray(blocks))), blocks, atol=1e-5)


def test_islow_idct_close_to_float_idct():
    rng = np.random.default_rng(1)
    coefficients = rng.integers(-60, 60, size=(50, 8, 8)) * rng.integers(1, 20, size=(1, 8, 8))
    exact = np.asarray(dct.islow_idct_8x8(jnp.asarray(coefficients)))
    reference = np.clip(scipy.fft.idctn(coefficients, norm="ortho", axes=(-2, -1)) + 128, 0, 255)
    assert np.abs(exact - reference).max() <= 1.0


QUALITIES = (1, 5, 10, 50, 90, 100)
# 4:4:0 (e.g. a 4:2:2 photo rotated losslessly): written by libjpeg-turbo through jpeglib, as
# Pillow cannot write it; decoded by Pillow's libjpeg-turbo like the others.
SUBSAMPLINGS = ("4:4:4", "4:2:2", "4:2:0", "4:4:0")


def _assert_same_8bit_image(ours, expected, what):
    """``ours`` (float in [0, 1]) holds exactly the 8-bit values ``expected``: k / 255 in float32.

    A float32 near k / 255 (a few ulps: XLA may divide by multiplying with 1 / 255), times 255,
    is within 1e-4 of k; anything else (a float DCT, one level off anywhere) fails.
    """
    scaled = np.asarray(ours, np.float64) * 255.0
    levels = np.round(scaled)
    assert np.array_equal(levels, expected), (what, int(np.sum(levels != expected)))
    assert np.abs(scaled - levels).max() <= 1e-4, (what, np.abs(scaled - levels).max())


_decode = jax.jit(jpeg.decode, static_argnames=("subsampling", "size"))
_encode = jax.jit(jpeg.encode, static_argnames="subsampling")
_compress = jax.jit(jpeg.compress, static_argnames="subsampling")


@pytest.mark.parametrize("name,crop", CROPS)
@pytest.mark.parametrize("subsampling", SUBSAMPLINGS)
def test_decode_matches_libjpeg(name, crop, subsampling):
    # Our integer IDCT, upsampling and colour conversion reproduce libjpeg-turbo exactly.
    image = photo(name, crop)
    for quality in QUALITIES:
        data = pillow_jpeg(image, quality, subsampling)
        f = jpeg.read_jpeg(data)
        ours = _decode(f.coefficients, f.qtables, subsampling=subsampling, size=f.size)
        _assert_same_8bit_image(ours, pillow_decode(data), quality)


@pytest.mark.parametrize("name,crop", CROPS)
@pytest.mark.parametrize("subsampling", SUBSAMPLINGS)
def test_encode_matches_libjpeg(name, crop, subsampling):
    # The integer DCT and quantizer make 8-bit inputs bit-exact: every coefficient of the file.
    image = photo(name, crop)
    x = jnp.asarray(image / 255.0, jnp.float32)
    for quality in QUALITIES:
        f = jpeg.read_jpeg(pillow_jpeg(image, quality, subsampling))
        ours = _encode(x, f.qtables, subsampling=subsampling)
        for component, a, b in zip("y cb cr".split(), ours, f.coefficients, strict=True):
            assert a.shape == b.shape
            mismatches = int(np.sum(np.asarray(a) != b))
            assert mismatches == 0, (quality, component, mismatches)


def test_gray_roundtrip_matches_libjpeg():
    image = photo("camera", (slice(0, 45), slice(0, 61)))
    for quality in QUALITIES:
        data = pillow_jpeg(image, quality, "gray")
        f = jpeg.read_jpeg(data)
        assert f.subsampling == "gray" and f.coefficients.cb is None
        expected = pillow_decode(data)
        ours = _decode(f.coefficients, f.qtables, subsampling="gray", size=f.size)
        _assert_same_8bit_image(ours, expected, quality)
        x = jnp.asarray(image / 255.0, jnp.float32)
        encoded = _encode(x, f.qtables, subsampling="gray")
        np.testing.assert_array_equal(encoded.y, f.coefficients.y)
        _assert_same_8bit_image(_compress(x, f.qtables, subsampling="gray"), expected, quality)


@pytest.mark.parametrize("subsampling", SUBSAMPLINGS)
def test_compress_is_identical_to_pillow_round_trip(subsampling):
    """``compress`` = Pillow's encode + decode, every pixel, for every photo, size and quality."""
    for name, crop in CROPS:
        image = photo(name, crop)
        x = jnp.asarray(image / 255.0, jnp.float32)
        for quality in QUALITIES:
            expected = pillow_decode(pillow_jpeg(image, quality, subsampling))
            qtables = jpeg.quality_to_qtables(quality)
            ours = _compress(x, qtables, subsampling=subsampling)
            _assert_same_8bit_image(ours, expected, (name, quality))


@pytest.mark.parametrize("subsampling", SUBSAMPLINGS)
def test_images_a_few_pixels_wide_match_libjpeg(subsampling):
    """Decode and encode of 1..6-pixel-wide images, bit for bit: libjpeg-turbo upsamples a
    chroma plane at most 2 samples wide (an image at most 4 pixels wide, 4:2:x) by
    replication, not by its triangular filter."""
    rng = np.random.default_rng(0)
    for height in (1, 5, 17):
        for width in range(1, 7):
            image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            data = pillow_jpeg(image, 50, subsampling)
            f = jpeg.read_jpeg(data)
            ours = jpeg.decode(f.coefficients, f.qtables, subsampling=subsampling, size=f.size)
            _assert_same_8bit_image(ours, pillow_decode(data), (height, width))
            x = jnp.asarray(image / 255.0, jnp.float32)
            encoded = jpeg.encode(x, f.qtables, subsampling=subsampling)
            for a, b in zip(encoded, f.coefficients, strict=True):
                np.testing.assert_array_equal(a, b, err_msg=str((height, width)))


@pytest.mark.parametrize("size", [(1, 1), (37, 53), (17, 300), (8, 9)])
@pytest.mark.parametrize("subsampling", [*SUBSAMPLINGS, "gray"])
def test_any_size_shapes(size, subsampling):
    x = jax.random.uniform(jax.random.key(0), (2, *size, 3))
    qt = jpeg.quality_to_qtables(50)
    c = jpeg.encode(x, qt, subsampling=subsampling)
    grids = jpeg.block_grid(size, subsampling)
    for name, grid in grids.items():
        assert getattr(c, name).shape == (2, *grid, 8, 8)
    out = jpeg.decode(c, qt, subsampling=subsampling, size=size)
    assert out.shape == (2, *size, 3) and out.dtype == jnp.float32


def test_batch_and_single_agree_under_jit_and_vmap():
    image = jnp.asarray(photo("coffee", (slice(0, 40), slice(0, 56))) / 255.0, jnp.float32)
    batch = jnp.stack([image, image[::-1]])
    qt = jpeg.quality_to_qtables(jnp.array([10, 30]))
    batched = jax.jit(jpeg.compress)(batch, qt)
    vmapped = jax.vmap(jpeg.compress)(batch, qt)
    single = jpeg.compress(image[::-1], qt[1])
    np.testing.assert_allclose(batched, vmapped, atol=1e-6)
    np.testing.assert_allclose(batched[1], single, atol=1e-6)


def test_straight_through_gradient_is_identity():
    x = jnp.linspace(-3.0, 3.0, 101)
    np.testing.assert_array_equal(jpeg.round_ste(x), jnp.round(x))
    np.testing.assert_array_equal(jax.grad(lambda v: jpeg.round_ste(v).sum())(x), jnp.ones(101))
    np.testing.assert_array_equal(jax.grad(lambda v: jpeg.floor_ste(v).sum())(x), jnp.ones(101))


@pytest.mark.parametrize("quality", [1, 10, 100])
@pytest.mark.parametrize("exact", [True, False])
def test_gradients_finite(quality, exact):
    image = photo("astronaut", (slice(0, 32), slice(0, 48))) / 255.0
    x = jnp.asarray(image, jnp.float32).at[:4].set(1.0).at[-4:].set(0.0)  # clamped pixels
    qt = jpeg.quality_to_qtables(quality)
    target = jpeg.encode(x, qt)

    def loss(v):
        out = jpeg.compress(v, qt, exact=exact)
        c = jpeg.quantized_dct(v, qt, exact=exact)
        hinge = sum(jnp.mean(jnp.abs(a - b)) for a, b in zip(c, target))
        return jnp.mean((out - x) ** 2) + hinge

    grad = jax.grad(loss)(x * 0.9 + 0.05)
    assert bool(jnp.all(jnp.isfinite(grad))) and float(jnp.abs(grad).sum()) > 0


def test_fancy_upsampling_of_constant_and_ramp():
    ramp = jnp.tile(jnp.arange(0.0, 80.0, 10.0), (4, 1))
    up = chroma.upsample(ramp, 2, 2)
    # Interior: 3/4 of the nearer sample, 1/4 of the farther one -> a finer linear ramp.
    np.testing.assert_allclose(up[0, 1:-1], 5.0 * np.arange(1, 15) - 2.5)
    np.testing.assert_allclose(up[:, 5], np.full(8, up[0, 5]))
    assert float(up[0, 0]) == 0.0 and float(up[0, -1]) == 70.0
    np.testing.assert_array_equal(chroma.upsample(jnp.full((3, 5), 7.0), 2, 1, exact=True), 7.0)


def test_color_round_trip_float_and_exact():
    rgb = jnp.asarray(np.random.default_rng(0).integers(0, 256, (64, 3)), jnp.float32)
    back = color.ycbcr_to_rgb(*color.rgb_to_ycbcr(rgb))
    np.testing.assert_allclose(back, rgb, atol=1e-3)
    back_exact = color.ycbcr_to_rgb(*color.rgb_to_ycbcr(rgb, exact=True), exact=True)
    assert float(jnp.abs(back_exact - rgb).max()) <= 2.0


def _table2_rmse(images, *, rgb_path: bool) -> float:
    """Appendix Table 2: block size 1, tables of ones, no subsampling."""
    ones = jnp.ones((2, 8, 8))
    if not rgb_path:
        out = jpeg.compress(images, ones, subsampling="4:4:4", block_size=1)
    else:  # the same codec with the colour transform skipped: per-channel DCT/round/IDCT
        planes = jnp.moveaxis(images * 255.0 - 128.0, -1, 0)
        coeffs = jpeg.round_ste(dct.dct_2d(dct.blockify(planes, 1)))
        out = (jnp.moveaxis(dct.unblockify(dct.idct_2d(coeffs)), 0, -1) + 128.0) / 255.0
    return _rmse(jnp.round(out * 255), images * 255)


def test_appendix_table2_ycbcr_lossy_rgb_lossless():
    images = jnp.asarray(
        np.stack([photo(n, (slice(0, 128), slice(0, 128))) for n in ("astronaut", "coffee")]) / 255
    )
    ycbcr = _table2_rmse(images, rgb_path=False)
    assert 0.1 < ycbcr < 1.0  # paper (libjpeg-9d, float DCT, FFHQ): 0.5465
    assert _table2_rmse(images, rgb_path=True) == 0.0


def test_clamp_values_and_gradient():
    from jpeg_jax.jpeg.codec import clamp

    x = jnp.array([-3.0, 0.0, 0.5, 255.0, 300.0])
    np.testing.assert_array_equal(clamp(x, 0.0, 255.0), jnp.clip(x, 0.0, 255.0))
    grad = jax.grad(lambda v: clamp(v, 0.0, 255.0).sum())(x)
    np.testing.assert_array_equal(grad, [0.0, 1.0, 1.0, 1.0, 0.0])


@pytest.mark.parametrize("axis,before,after", [(-1, 0, 3), (-2, 2, 1), (0, 1, 0), (-1, 0, 0)])
def test_pad_edge_equals_jnp_pad(axis, before, after):
    x = jax.random.normal(jax.random.key(0), (3, 5, 7))
    widths = [(0, 0)] * 3
    widths[axis] = (before, after)
    np.testing.assert_array_equal(
        chroma.pad_edge(x, axis, before, after), jnp.pad(x, widths, mode="edge")
    )


def test_floor_divide_is_exact():
    rng = np.random.default_rng(0)
    n = np.concatenate([np.arange(1 << 14), rng.integers(0, 1 << 24, 1 << 14)]).astype(np.int32)
    d = np.concatenate([rng.integers(1, 2041, n.size - 4), [1, 7, 2040, 255]]).astype(np.int32)
    np.testing.assert_array_equal(dct.floor_divide(jnp.asarray(n), jnp.asarray(d)), n // d)
