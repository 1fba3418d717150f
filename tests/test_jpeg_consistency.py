"""Projection onto the consistent set and the consistency measurements."""

import io

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jpeg_helpers import PILLOW_SUBSAMPLING, libjpeg_jpeg, photo, pillow_jpeg
from PIL import Image

from jpeg_jax import jpeg


def _recode_with_pillow(image, f):
    """libjpeg's coefficients of the 8-bit rounding of ``image`` with the file's tables (Pillow;
    libjpeg-turbo through jpeglib for 4:4:0, which Pillow cannot write)."""
    u8 = np.round(np.clip(np.asarray(image), 0, 1) * 255).astype(np.uint8)
    if f.subsampling == "4:4:0":
        return jpeg.read_jpeg(libjpeg_jpeg(u8, (1, 2), qtables=f.qtables))
    buf = io.BytesIO()
    tables = [t.reshape(-1).tolist() for t in f.qtables]
    Image.fromarray(u8).save(
        buf, "JPEG", qtables=tables, subsampling=PILLOW_SUBSAMPLING[f.subsampling]
    )
    return jpeg.read_jpeg(buf.getvalue())


@pytest.mark.parametrize("subsampling", ["4:4:4", "4:2:2", "4:2:0", "4:4:0"])
@pytest.mark.parametrize("crop", [(slice(0, 64), slice(0, 64)), (slice(3, 40), slice(5, 58))])
def test_project_is_consistent(subsampling, crop):
    image = photo("astronaut", crop)
    f = jpeg.read_jpeg(pillow_jpeg(image, 10, subsampling))
    # A "restoration" far from the file: the original plus noise.
    noisy = image / 255.0 + np.random.default_rng(0).normal(0, 0.1, image.shape)
    noisy = jnp.asarray(np.clip(noisy, 0, 1), jnp.float32)
    assert (
        float(jpeg.in_bin_fraction(noisy, f.coefficients, f.qtables, subsampling=subsampling))
        < 0.99
    )
    projected = jpeg.project(noisy, f.coefficients, f.qtables, subsampling=subsampling)
    assert (
        float(jpeg.in_bin_fraction(projected, f.coefficients, f.qtables, subsampling=subsampling))
        == 1.0
    )
    recoded = _recode_with_pillow(projected, f)
    same = np.concatenate(
        [np.ravel(a == b) for a, b in zip(recoded.coefficients, f.coefficients)]
    ).mean()
    assert same >= 0.99
    # Projection keeps what was consistent: the image moves less than the noise.
    assert float(jnp.sqrt(jnp.mean((projected - image / 255.0) ** 2))) < 0.1


def test_project_leaves_own_decode_unchanged():
    f = jpeg.read_jpeg(pillow_jpeg(photo("coffee", (slice(0, 50), slice(0, 70))), 10, "4:2:0"))
    decoded = jnp.asarray(f.pixels / 255.0, jnp.float32)
    projected = jpeg.project(decoded, f.coefficients, f.qtables, subsampling=f.subsampling)
    assert float(jnp.abs(projected - decoded).max()) * 255 < 0.01


@pytest.mark.parametrize("subsampling", ["4:2:0", "4:4:0"])
@pytest.mark.parametrize("backend", ["jax", "libjpeg"])
def test_consistency_of_jpeg_and_of_original(backend, subsampling):
    image = photo("chelsea", (slice(0, 64), slice(0, 96)))
    f = jpeg.read_jpeg(pillow_jpeg(image, 10, subsampling))
    own = jpeg.consistency(jnp.asarray(f.pixels / 255.0), f, backend=backend)
    assert float(own["rmse"]) < 0.01  # the JPEG decode re-encodes to itself
    truth = jpeg.consistency(jnp.asarray(image / 255.0), f, backend=backend)
    # The original is consistent by construction: libjpeg made the file from it.
    assert float(truth["rmse"]) < 0.01 and float(truth["in_bin"]) > 0.999
    blurred = jnp.asarray(image / 255.0)
    blurred = (blurred + jnp.roll(blurred, 3, axis=0) + jnp.roll(blurred, 3, axis=1)) / 3
    worse = jpeg.consistency(blurred, f, backend=backend)
    assert float(worse["rmse"]) > 1.0 and float(worse["in_bin"]) < 0.995  # 4:2:0 0.986, 4:4:0 0.990


def test_consistency_batched_with_coefficients():
    images = jnp.asarray(
        np.stack(
            [
                photo("rocket", (slice(0, 32), slice(0, 48))),
                photo("coffee", (slice(0, 32), slice(0, 48))),
            ]
        )
        / 255.0,
        jnp.float32,
    )
    qt = jpeg.quality_to_qtables(20)
    coeffs = jpeg.encode(images, qt)
    jax_result = jpeg.consistency(images, coeffs, qt)
    lib_result = jpeg.consistency(images, coeffs, qt, backend="libjpeg")
    assert jax_result["rmse"].shape == (2,) and jax_result["in_bin"].shape == (2,)
    np.testing.assert_allclose(jax_result["rmse"], lib_result["rmse"], atol=0.01)
    np.testing.assert_allclose(jax_result["in_bin"], 1.0, atol=1e-3)


def test_project_is_jittable_and_differentiable():
    image = jnp.asarray(photo("astronaut", (slice(0, 32), slice(0, 32))) / 255.0, jnp.float32)
    qt = jpeg.quality_to_qtables(10)
    coeffs = jpeg.encode(image, qt)
    grad = jax.grad(lambda x: jnp.sum(jax.jit(jpeg.project)(x, coeffs, qt)))(image)
    assert bool(jnp.all(jnp.isfinite(grad)))
