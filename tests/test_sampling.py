"""Posterior sampling: keys and batching, tiling, projection, grayscale, FiLM tables."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jpeg_helpers import photo, pillow_jpeg
from model_helpers import random_params

from jpeg_jax import export, jpeg, sampling
from jpeg_jax.jpeg import codec
from jpeg_jax.models import Generator

MODEL = Generator(num_feat=8, num_block=1, num_grow_ch=4, noise=True, film=True)


def _params(model, scale=0.1, seed=0):
    return random_params(model, scale=scale, seed=seed)


@pytest.fixture(scope="module")
def params():
    return _params(MODEL)


def _file(size=(37, 53), quality=50, subsampling="4:2:0", name="astronaut", offset=(100, 150)):
    crop = (slice(offset[0], offset[0] + size[0]), slice(offset[1], offset[1] + size[1]))
    return jpeg.read_jpeg(pillow_jpeg(photo(name, crop), quality, subsampling))


def _out_of_bin(image, f):
    """Number of DCT coefficients of ``image`` outside ``f``'s bins (direct count)."""
    c = codec.quantized_dct(jnp.asarray(image), f.qtables, subsampling=f.subsampling, exact=False)
    return sum(
        int(np.sum(np.abs(np.asarray(ci) - qi) > 0.5))
        for ci, qi in zip(c, f.coefficients)
        if qi is not None
    )


def test_samples_match_direct_generator_calls_for_any_batch_size(params):
    f = _file()
    rng = jax.random.key(3)
    batched = sampling.restore((MODEL, params), f, 3, rng, batch_size=2, return_mean=True)
    single = sampling.restore((MODEL, params), f, 3, rng, batch_size=1, return_std=True)
    assert batched.samples.shape == (3, 37, 53, 3) and batched.samples.dtype == np.float32
    np.testing.assert_allclose(batched.samples, single.samples, atol=1e-5)
    # Reference: the generator itself, on the file's pixels, with sample i's documented key.
    y = jnp.asarray(f.pixels / 255.0, jnp.float32)[None]
    for i in range(3):
        key = jax.random.fold_in(jax.random.fold_in(rng, i), 0)
        ref = MODEL.apply({"params": params}, y, f.qtables[None], rngs={"noise": key})
        np.testing.assert_allclose(batched.samples[i], np.clip(ref[0], 0, 1), atol=1e-5)
    assert np.abs(batched.samples[0] - batched.samples[1]).max() > 10 / 255
    np.testing.assert_allclose(batched.mean, batched.samples.mean(0), atol=1e-6)
    np.testing.assert_allclose(single.std, single.samples.std(0), atol=1e-6)
    assert batched.std is None and single.mean is None


def test_deterministic_samples_are_identical(params):
    r = sampling.restore(
        (MODEL, params), _file(), 2, jax.random.key(0), deterministic=True, return_std=True
    )
    assert float(r.std.max()) == 0.0


@pytest.mark.parametrize("length,tile,overlap", [(160, 64, 32), (336, 128, 32), (48, 64, 16)])
def test_tile_layout_covers_on_the_grid(length, tile, overlap):
    origins = sampling.tile_origins(length, tile, overlap)
    size = min(tile, length)
    assert origins[0] == 0 and origins[-1] + size == length
    assert all(o % 16 == 0 for o in origins)
    assert all(b - a <= size - overlap for a, b in zip(origins, origins[1:]))
    total = sum(
        np.pad(sampling.feather_weights(o, size, length, overlap), (o, length - o - size))
        for o in origins
    )
    assert total.min() > 0


def test_feather_weights_of_neighbours_sum_to_one():
    left = sampling.feather_weights(0, 64, 96, 32)  # tiles [0, 64) and [32, 96)
    right = sampling.feather_weights(32, 64, 96, 32)
    total = np.pad(left, (0, 32)) + np.pad(right, (32, 0))
    np.testing.assert_allclose(total, 1.0)
    # Zero within overlap // 4 = 8 pixels of the shared edge, a ramp over the next 16.
    assert left[:40].min() == 1.0 and left[-8:].max() == 0.0 and 0 < left[48] < 1
    np.testing.assert_array_equal(right, left[::-1])


def test_tiled_matches_untiled_in_deterministic_mode(params):
    f = _file(size=(96, 160))
    kwargs = dict(deterministic=True, batch_size=1)
    whole = sampling.restore((MODEL, params), f, 1, jax.random.key(0), **kwargs).samples[0]
    tiled = sampling.restore(
        (MODEL, params), f, 1, jax.random.key(0), tile=64, overlap=32, **kwargs
    ).samples[0]
    assert np.abs(tiled - whole).max() <= 1 / 255
    # The check has teeth: without overlap the zero-padded tile edges show.
    seams = sampling.restore(
        (MODEL, params), f, 1, jax.random.key(0), tile=64, overlap=0, **kwargs
    ).samples[0]
    assert np.abs(seams - whole).max() > 10 / 255


def test_tiled_noisy_samples_have_no_seams(params):
    f = _file(size=(96, 160))
    tiled = sampling.restore((MODEL, params), f, 2, jax.random.key(1), tile=64, overlap=32)
    whole = sampling.restore((MODEL, params), f, 2, jax.random.key(1))
    # Same per-pixel spread as untiled sampling (tiles are independent samples of their area).
    spread_tiled = np.abs(tiled.samples[0] - tiled.samples[1]).mean()
    spread_whole = np.abs(whole.samples[0] - whole.samples[1]).mean()
    assert 0.7 < spread_tiled / spread_whole < 1.3


@pytest.mark.parametrize(
    "subsampling,size",
    [
        ("4:2:0", (37, 53)),
        ("4:2:0", (48, 64)),
        ("4:2:2", (40, 45)),
        ("4:4:4", (33, 24)),
        ("4:4:0", (37, 53)),
    ],
)
def test_projection_is_fully_in_bin(params, subsampling, size):
    f = _file(size=size, quality=30, subsampling=subsampling)
    raw = sampling.restore((MODEL, params), f, 2, jax.random.key(0)).samples
    projected = sampling.restore(
        (MODEL, params), f, 2, jax.random.key(0), project=True, return_mean=True
    )
    assert _out_of_bin(raw[0], f) > 0
    for sample in projected.samples:
        assert _out_of_bin(sample, f) == 0
    assert _out_of_bin(projected.mean, f) == 0  # the consistent set is convex
    # Projection moves a sample toward the file, not elsewhere.
    decoded = f.pixels / 255.0
    before = np.sqrt(np.mean((raw - decoded) ** 2))
    after = np.sqrt(np.mean((projected.samples - decoded) ** 2))
    assert after < before


def test_grayscale_file_gives_grayscale_samples(params):
    f = _file(size=(40, 56), subsampling="gray", name="camera", offset=(200, 200))
    assert f.subsampling == "gray"
    r = sampling.restore((MODEL, params), f, 2, jax.random.key(0), project=True, return_mean=True)
    assert r.samples.shape == (2, 40, 56, 3)
    np.testing.assert_array_equal(r.samples[..., 0], r.samples[..., 1])
    np.testing.assert_array_equal(r.samples[..., 0], r.samples[..., 2])
    assert _out_of_bin(r.samples[0], f) == 0 and _out_of_bin(r.mean, f) == 0


def test_film_sees_the_files_own_tables(params):
    f = _file(quality=20)
    rng = jax.random.key(0)
    from_file = sampling.restore((MODEL, params), f, 1, rng).samples
    same = sampling.restore(
        (MODEL, params), f.pixels, 1, rng, qtables=f.qtables, subsampling="4:2:0"
    ).samples
    other = sampling.restore(
        (MODEL, params), f.pixels, 1, rng, qtables=jpeg.quality_to_qtables(90)
    ).samples
    np.testing.assert_array_equal(from_file, same)
    assert np.abs(from_file - other).max() > 1 / 255


def test_restore_from_an_export(tmp_path, params):
    path = export.save(
        tmp_path / "export",
        dict(num_feat=8, num_block=1, num_grow_ch=4, noise=True, film=True),
        params,
    )
    f = _file()
    a = sampling.restore(path, f, 1, jax.random.key(0)).samples
    b = sampling.restore(export.load(path), f, 1, jax.random.key(0)).samples
    c = sampling.restore((MODEL, params), f, 1, jax.random.key(0)).samples
    np.testing.assert_array_equal(a, b)
    # On CPU an export runs with the scanned trunk (faster forward, shorter compile): the same
    # samples as the unrolled module it was saved from.
    assert sampling.resolve_model(path)[0].scan == (jax.default_backend() == "cpu")
    np.testing.assert_array_equal(a, c)


def test_errors(params):
    f = _file()
    with pytest.raises(ValueError, match="JpegImage"):
        sampling.restore((MODEL, params), f.pixels, 1, jax.random.key(0), project=True)
    with pytest.raises(ValueError, match="qtables"):
        sampling.restore((MODEL, params), f.pixels, 1, jax.random.key(0))
    with pytest.raises(ValueError, match="tile"):
        sampling.restore((MODEL, params), f, 1, jax.random.key(0), tile=40)
    with pytest.raises(ValueError, match="overlap"):
        sampling.restore((MODEL, params), f, 1, jax.random.key(0), tile=64, overlap=8)
    with pytest.raises(TypeError):
        sampling.restore(params, f, 1, jax.random.key(0))
    with pytest.raises(export.ExportError):
        sampling.restore("/nonexistent/export", f, 1, jax.random.key(0))


def test_one_compilation_serves_all_tiles_and_images(params):
    kwargs = dict(deterministic=True, batch_size=1, tile=64, overlap=16)
    sampling.restore((MODEL, params), _file(size=(80, 96)), 1, jax.random.key(0), **kwargs)
    compiled = sampling.sample_tile._cache_size()
    files = [_file(size=size) for size in [(40, 150), (100, 70), (65, 65)]]  # thin, odd
    tiled = [sampling.restore((MODEL, params), f, 1, jax.random.key(0), **kwargs) for f in files]
    assert sampling.sample_tile._cache_size() == compiled
    for f, r in zip(files, tiled):
        assert r.samples.shape == (1, *f.size, 3)
        whole = sampling.restore((MODEL, params), f, 1, jax.random.key(0), deterministic=True)
        assert np.abs(r.samples - whole.samples).mean() < 2 / 255


def _noise_times(monkeypatch, factor):
    """Every noise map the generator draws, multiplied by ``factor`` (jax.random.normal)."""
    normal = jax.random.normal
    monkeypatch.setattr(
        jax.random, "normal", lambda key, shape=(), dtype=float: factor * normal(key, shape, dtype)
    )


@pytest.mark.parametrize("temperature", [0.5, 1.7])
def test_temperature_scales_the_injected_noise_exactly(params, monkeypatch, temperature):
    f = _file()
    rng = jax.random.key(5)
    got = sampling.restore((MODEL, params), f, 2, rng, temperature=temperature).samples
    # Independent computation: the unscaled generator, with every noise map it draws scaled.
    y = jnp.asarray(f.pixels / 255.0, jnp.float32)[None]
    with monkeypatch.context() as m:
        _noise_times(m, temperature)
        for i in range(2):
            key = jax.random.fold_in(jax.random.fold_in(rng, i), 0)
            ref = MODEL.apply({"params": params}, y, f.qtables[None], rngs={"noise": key})
            np.testing.assert_allclose(got[i], np.clip(ref[0], 0, 1), atol=2e-5)
    plain = sampling.restore((MODEL, params), f, 2, rng).samples
    assert np.abs(got - plain).max() > 5 / 255  # the check has teeth


def test_temperature_zero_is_the_deterministic_path_and_no_value_recompiles(params):
    f = _file()
    rng = jax.random.key(2)
    zero = sampling.restore((MODEL, params), f, 2, rng, temperature=0.0).samples
    mean_path = sampling.restore((MODEL, params), f, 1, rng, deterministic=True).samples
    np.testing.assert_array_equal(zero, np.broadcast_to(mean_path, zero.shape))
    sampling.restore((MODEL, params), f, 4, rng, temperature=0.3)
    compiled = sampling.sample_tile._cache_size()
    spreads = []
    for temperature in (0.25, 1.0, 2.0):
        r = sampling.restore((MODEL, params), f, 4, rng, temperature=temperature, return_std=True)
        spreads.append(float(r.std.mean()))
    assert sampling.sample_tile._cache_size() == compiled
    assert spreads[0] < spreads[1] < spreads[2]


def test_temperature_of_an_export_with_the_scanned_trunk(tmp_path, params, monkeypatch):
    path = export.save(
        tmp_path / "export",
        dict(num_feat=8, num_block=2, num_grow_ch=4, noise=True, film=True),
        _params(Generator(num_feat=8, num_block=2, num_grow_ch=4, noise=True, film=True)),
    )
    model, variables = sampling.resolve_model(path)
    f = _file()
    got = sampling.restore(path, f, 1, jax.random.key(1), temperature=0.6).samples[0]
    y = jnp.asarray(f.pixels / 255.0, jnp.float32)[None]
    key = jax.random.fold_in(jax.random.fold_in(jax.random.key(1), 0), 0)
    with monkeypatch.context() as m:
        _noise_times(m, 0.6)
        ref = model.apply(variables, y, f.qtables[None], rngs={"noise": key})
    np.testing.assert_allclose(got, np.clip(ref[0], 0, 1), atol=2e-5)


@pytest.mark.parametrize("temperature", [-0.1, float("nan"), float("inf")])
def test_bad_temperature(params, temperature):
    with pytest.raises(ValueError, match="temperature"):
        sampling.restore((MODEL, params), _file(), 1, jax.random.key(0), temperature=temperature)


def test_projection_of_a_box_leaves_the_rest_alone(params):
    f = _file(size=(70, 90), quality=30)
    raw = sampling.restore((MODEL, params), f, 1, jax.random.key(0)).samples[0]
    for box in [(16, 32, 48, 64), (48, 64, 70, 90)]:  # interior; touching the partial MCUs
        out = sampling.project_exact(raw, f, box=box)
        outside = np.ones(raw.shape[:2], bool)
        outside[box[0] : box[2], box[1] : box[3]] = False
        np.testing.assert_array_equal(out[outside], raw[outside])
        # The region alone is a JPEG of its own with the file's blocks: count directly there.
        crop = out[box[0] : box[2], box[1] : box[3]]
        blocks = [
            c[b0 : b0 + n0, b1 : b1 + n1]
            for c, (b0, b1), (n0, n1) in zip(
                f.coefficients,
                [(box[0] // 8, box[1] // 8)] + [(box[0] // 16, box[1] // 16)] * 2,
                [np.ceil(np.array(crop.shape[:2]) / d).astype(int) for d in (8, 16, 16)],
            )
        ]
        pixels = f.pixels[box[0] : box[2], box[1] : box[3]]
        sub = jpeg.JpegImage(pixels, f.qtables, f.subsampling, jpeg.Coefficients(*blocks))
        assert _out_of_bin(crop, sub) == 0
        assert _out_of_bin(raw[box[0] : box[2], box[1] : box[3]], sub) > 0
    with pytest.raises(ValueError, match="MCU grid"):
        sampling.project_exact(raw, f, box=(8, 0, 32, 32))


def test_sample_batch_uses_the_training_keys(params):
    # Independent reference: one direct generator call per key of split(key, S), clipped.
    rng = np.random.default_rng(3)
    y = rng.uniform(size=(2, 16, 32, 3)).astype(np.float32)
    qtables = np.stack([_file().qtables] * 2).astype(np.int32)
    key = jax.random.key(7)
    samples = sampling.sample_batch(MODEL, params, y, qtables, key, 3)
    assert samples.shape == (3, 2, 16, 32, 3) and samples.dtype == np.float32
    for s, k in enumerate(jax.random.split(key, 3)):
        direct = MODEL.apply({"params": params}, y, qtables, rngs={"noise": k})
        np.testing.assert_allclose(samples[s], np.clip(direct, 0.0, 1.0), atol=1e-6)
    assert np.abs(samples[0] - samples[1]).max() > 1e-3  # the keys differ
