"""Region re-draw and posterior principal components (jpeg_jax.posterior)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jpeg_helpers import photo, pillow_jpeg
from model_helpers import random_params

from jpeg_jax import jpeg, posterior, sampling
from jpeg_jax.models import Generator

MODEL = Generator(num_feat=8, num_block=1, num_grow_ch=4, noise=True, film=True)


@pytest.fixture(scope="module")
def params():
    return random_params(MODEL, scale=0.1, seed=0)


def _file(size=(100, 120), quality=30, subsampling="4:2:0"):
    crop = (slice(90, 90 + size[0]), slice(140, 140 + size[1]))
    return jpeg.read_jpeg(pillow_jpeg(photo("astronaut", crop), quality, subsampling))


def _in_bin(image, f):
    return float(
        jpeg.in_bin_fraction(
            jnp.asarray(image), f.coefficients, f.qtables, subsampling=f.subsampling
        )
    )


@pytest.mark.parametrize(
    "box,size,want",
    [
        ((20, 3, 50, 40), (100, 120), (16, 0, 64, 48)),
        ((0, 0, 16, 16), (100, 120), (0, 0, 16, 16)),
        ((70.5, 100, 200, 130), (100, 120), (64, 96, 100, 120)),  # clipped to the edge
        ((-5, -5, 1, 1), (100, 120), (0, 0, 16, 16)),
    ],
)
def test_snap_box(box, size, want):
    assert posterior.snap_box(box, size) == want


def test_snap_box_outside_the_image():
    with pytest.raises(ValueError, match="no pixel"):
        posterior.snap_box((200, 0, 210, 10), (100, 120))


@pytest.mark.parametrize(
    "box,padded", [((16, 0, 64, 48), (112, 128)), ((64, 96, 100, 120), (112, 128)),
                   ((128, 256, 256, 384), (512, 512)), ((0, 0, 16, 16), (16, 32))],
)  # fmt: skip
def test_crop_window_contains_the_region_and_its_margin(box, padded):
    box = posterior.Box(*box)
    crop = posterior.crop_window(box, padded, margin=32)
    assert crop.top % 16 == 0 and crop.left % 16 == 0
    assert crop.bottom <= padded[0] and crop.right <= padded[1]
    for side, full in ((crop.height, padded[0]), (crop.width, padded[1])):
        assert side % posterior.CROP_BUCKET == 0 or side == full
    assert crop.top <= max(box.top - 32, 0) and crop.left <= max(box.left - 32, 0)
    assert crop.bottom >= min(box.bottom + 32, padded[0])
    assert crop.right >= min(box.right + 32, padded[1])


def test_region_samples_are_the_generator_on_the_crop(params):
    f = _file()
    box, rng = posterior.Box(32, 48, 64, 96), jax.random.key(4)
    got = posterior.region_samples((MODEL, params), f, box, 3, rng, batch_size=2)
    assert got.shape == (3, 32, 48, 3) and got.dtype == np.float32
    # Reference: the generator on the documented crop of the 16-padded decode, sliced.
    crop = posterior.crop_window(box, (112, 128))
    padded = np.pad(f.pixels / 255.0, ((0, 12), (0, 8), (0, 0)), mode="edge").astype(np.float32)
    y = jnp.asarray(padded[crop.slices()])[None]
    for i in range(3):
        key = jax.random.fold_in(jax.random.fold_in(rng, i), 0)
        ref = MODEL.apply({"params": params}, y, f.qtables[None], rngs={"noise": key})[0]
        ref = np.clip(ref, 0, 1)[box.top - crop.top :, box.left - crop.left :][:32, :48]
        np.testing.assert_allclose(got[i], ref, atol=1e-5)
    assert np.abs(got[0] - got[1]).max() > 10 / 255


def test_region_of_a_crop_matches_the_whole_image_in_deterministic_mode(params):
    f = _file(size=(160, 176))
    whole = sampling.restore((MODEL, params), f, 1, jax.random.key(0), deterministic=True)
    for box in [(64, 64, 96, 112), (0, 0, 32, 32), (128, 144, 160, 176)]:
        got = posterior.region_samples((MODEL, params), f, box, 1, jax.random.key(0), temperature=0)
        ref = whole.samples[0][posterior.Box(*box).slices()]
        assert np.abs(got[0] - ref).max() <= 1 / 255
    # The check has teeth: without context the crop's zero padding shows at the region's edge.
    bare = posterior.region_samples(
        (MODEL, params), f, (64, 64, 96, 112), 1, jax.random.key(0), temperature=0, margin=0
    )
    ref = whole.samples[0][64:96, 64:112]
    assert np.abs(bare[0] - ref).max() > 1 / 255


def test_redraw_changes_only_the_region_and_blends_it(params):
    f = _file()
    current = sampling.restore((MODEL, params), f, 1, jax.random.key(0)).samples[0]
    box, rng = posterior.Box(32, 48, 80, 96), jax.random.key(9)
    out = posterior.redraw((MODEL, params), f, current, (40, 50, 70, 90), rng)
    outside = np.ones(current.shape[:2], bool)
    outside[box.slices()] = False
    np.testing.assert_array_equal(out[outside], current[outside])
    # Inside, beyond the feather band: exactly the new region sample (key 0 of rng).
    new = posterior.region_samples((MODEL, params), f, box, 1, rng)[0]
    np.testing.assert_allclose(out[48:64, 64:80], new[16:32, 16:32], atol=1e-6)
    assert np.abs(out[48:64, 64:80] - current[48:64, 64:80]).max() > 10 / 255
    # The feather band (column 72 is 24 px from the sides: weight 1 across): a linear blend
    # of new and old down the column, 1/32 new at the edge pixels.
    window = np.minimum(np.minimum(np.arange(48) + 0.5, 47.5 - np.arange(48)) / 16, 1.0)
    expected = window[:, None] * new[:, 24] + (1 - window[:, None]) * current[32:80, 72]
    np.testing.assert_allclose(out[32:80, 72], expected, atol=1e-6)
    # Seamless: across the region's top edge, the step between neighbouring rows exceeds the
    # sample's own (current's) far less than it does without feathering.
    hard = posterior.redraw((MODEL, params), f, current, box, rng, feather=0)
    step = lambda x: np.abs(x[32, 48:96] - x[31, 48:96]).mean()
    assert step(out) - step(current) < 0.1 * (step(hard) - step(current))


@pytest.mark.parametrize("subsampling", ["4:2:0", "4:4:4", "4:2:2", "4:4:0", "gray"])
def test_redraw_of_a_projected_sample_stays_fully_consistent(params, subsampling):
    f = _file(size=(70, 90), subsampling=subsampling)
    current = sampling.restore((MODEL, params), f, 1, jax.random.key(0), project=True).samples[0]
    assert _in_bin(current, f) == 1.0
    for box in [(16, 16, 48, 64), (48, 64, 70, 90)]:  # interior; the partial MCUs at the edge
        out = posterior.redraw((MODEL, params), f, current, box, jax.random.key(3), project=True)
        outside = np.ones(current.shape[:2], bool)
        outside[posterior.Box(*box).slices()] = False
        np.testing.assert_array_equal(out[outside], current[outside])
        assert _in_bin(out, f) == 1.0
        unprojected = posterior.redraw((MODEL, params), f, current, box, jax.random.key(3))
        assert _in_bin(unprojected, f) < 1.0


def test_principal_components_match_numpy_svd():
    rng = np.random.default_rng(0)
    basis = rng.standard_normal((3, 6, 5, 3))
    samples = 0.5 + np.einsum("nk,khwc->nhwc", rng.standard_normal((12, 3)) * [3, 2, 1], basis)
    samples += 0.01 * rng.standard_normal(samples.shape)
    pcs = posterior.principal_components(samples, 4)
    # Independent computation: numpy's SVD of the centred data matrix.
    x = (samples - samples.mean(0)).reshape(12, -1)
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    np.testing.assert_allclose(pcs.variances, s[:4] ** 2 / 12, rtol=1e-6)
    np.testing.assert_allclose(pcs.total_variance, np.sum(np.var(samples, axis=0)), rtol=1e-9)
    np.testing.assert_allclose(pcs.explained, s[:4] ** 2 / np.sum(s**2), rtol=1e-6)
    d = pcs.directions.reshape(4, -1)
    np.testing.assert_allclose(np.abs(np.sum(d * vt[:4], axis=1)), 1.0, atol=1e-5)
    np.testing.assert_allclose(d @ d.T, np.eye(4), atol=1e-5)
    np.testing.assert_allclose(pcs.mean, samples.mean(0), atol=1e-6)
    for i in range(4):
        plus, minus = pcs.image(i, +1), pcs.image(i, -1)
        np.testing.assert_allclose(
            (plus - minus) / 2, np.sqrt(pcs.variances[i]) * pcs.directions[i], atol=1e-5
        )
        assert d[i, np.argmax(np.abs(d[i]))] > 0  # the documented sign


def test_principal_components_of_region_samples(params):
    f = _file()
    samples = posterior.region_samples((MODEL, params), f, (32, 32, 64, 64), 6, jax.random.key(1))
    pcs = posterior.principal_components(samples, 3)
    assert pcs.directions.shape == (3, 32, 32, 3)
    assert np.all(np.diff(pcs.variances) <= 0) and 0 < pcs.explained.sum() <= 1 + 1e-9
    np.testing.assert_allclose(pcs.total_variance, np.sum(samples.astype(np.float64).var(0)))


def test_principal_component_errors():
    with pytest.raises(ValueError, match="N - 1"):
        posterior.principal_components(np.zeros((3, 4, 4, 3)), 3)
    with pytest.raises(ValueError, match="N >= 2"):
        posterior.principal_components(np.zeros((1, 4, 4, 3)), 1)
