"""Metrics against closed forms, scipy, scikit-image and direct O(n^2) references."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from jpeg_jax import metrics
from jpeg_jax.models import convert_inception, inception


def _rng(seed):
    return np.random.default_rng(seed)


def _random_spd(rng, d, rank=None):
    a = rng.normal(size=(d, rank or 2 * d))
    return a @ a.T / a.shape[1]


# ----------------------------------------------------------------------------- PSNR / std
@pytest.mark.parametrize("k", [1, 3, 10])
def test_psnr_constant_offset_closed_form(k):
    clean = _rng(0).integers(0, 256 - k, size=(2, 8, 9, 3)) / 255.0
    expected = 20 * np.log10(255 / k)
    np.testing.assert_allclose(metrics.psnr(clean, clean + k / 255), [expected] * 2, rtol=1e-9)
    np.testing.assert_allclose(metrics.psnr(clean, clean + k / 255, quantize=True), expected)


def test_psnr_matches_scikit_image():
    skimage_metrics = pytest.importorskip("skimage.metrics", reason="scikit-image reference")
    a, b = _rng(1).random((2, 3, 16, 12, 3))
    ours = metrics.psnr(a, b)
    assert ours.shape == (3,)
    for i in range(3):
        ref = skimage_metrics.peak_signal_noise_ratio(a[i] * 255, b[i] * 255, data_range=255)
        np.testing.assert_allclose(ours[i], ref, rtol=1e-12)


def test_psnr_quantize_rounds_to_8bit_first():
    a = np.full((1, 4, 4, 3), 100 / 255)
    b = a + 0.4 / 255  # below half a grey level: identical once saved as 8-bit
    assert np.isfinite(metrics.psnr(a, b)).all()
    assert np.isinf(metrics.psnr(a, b, quantize=True)).all()
    with pytest.raises(ValueError, match="one shape"):
        metrics.psnr(a, b[..., :2])


def test_pixel_std_closed_form_and_numpy():
    rng = _rng(2)
    base = rng.random((2, 6, 5, 3)) * 0.5 + 0.25
    offsets = np.array([-1, 1, -1, 1])[:, None, None, None, None] * (3 / 255)
    samples = base[None] + offsets  # every pixel: two at -3, two at +3 grey levels -> std 3
    np.testing.assert_allclose(metrics.pixel_std(samples), np.full(base.shape, 3.0), rtol=1e-9)
    np.testing.assert_allclose(metrics.mean_pixel_std(samples), 3.0, rtol=1e-9)
    noisy = rng.random((5, 4, 4, 3))
    np.testing.assert_allclose(metrics.mean_pixel_std(noisy), np.mean(np.std(noisy * 255, axis=0)))
    with pytest.raises(ValueError, match="S >= 2"):
        metrics.pixel_std(noisy[:1])


# ----------------------------------------------------------------------------- FID
def test_feature_statistics_match_numpy():
    features = _rng(3).normal(size=(40, 6))
    mu, sigma = metrics.feature_statistics(features)
    np.testing.assert_allclose(mu, features.mean(axis=0))
    np.testing.assert_allclose(sigma, np.cov(features, rowvar=False), rtol=1e-12)


def test_sqrtm_psd_matches_scipy():
    linalg = pytest.importorskip("scipy.linalg", reason="scipy.linalg.sqrtm reference")
    spd = _random_spd(_rng(4), 12)
    np.testing.assert_allclose(metrics.sqrtm_psd(spd), linalg.sqrtm(spd).real, atol=1e-10)
    singular = _random_spd(_rng(5), 12, rank=5)  # PSD, rank 5: check the square instead
    root = metrics.sqrtm_psd(singular)
    np.testing.assert_allclose(root @ root, singular, atol=1e-10)
    np.testing.assert_allclose(root, root.T, atol=1e-12)


def test_trace_sqrt_product_matches_scipy():
    linalg = pytest.importorskip("scipy.linalg", reason="scipy.linalg.sqrtm reference")
    rng = _rng(6)
    s1, s2 = _random_spd(rng, 16), _random_spd(rng, 16)
    expected = np.trace(linalg.sqrtm(s1 @ s2)).real  # pytorch-fid's formula
    np.testing.assert_allclose(metrics.trace_sqrt_product(s1, s2), expected, rtol=1e-9)


def test_frechet_distance_commuting_covariances_closed_form():
    rng = _rng(7)
    d = 10
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))  # shared eigenvectors -> commuting covariances
    v1, v2 = rng.uniform(0.1, 3.0, d), rng.uniform(0.1, 3.0, d)
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(v1) - np.sqrt(v2)) ** 2)
    diagonal = metrics.frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2))
    rotated = metrics.frechet_distance(mu1, q @ np.diag(v1) @ q.T, mu2, q @ np.diag(v2) @ q.T)
    np.testing.assert_allclose([diagonal, rotated], [expected, expected], rtol=1e-10)


def test_frechet_distance_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="mismatched"):
        metrics.frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


@pytest.mark.parametrize("n,d", [(300, 32), (40, 64)])  # full rank, and rank-deficient (n < d)
def test_fid_of_a_set_with_itself_is_zero(n, d):
    features = _rng(8).normal(size=(n, d)) * _rng(9).uniform(0.1, 10, d)
    scale = np.trace(np.cov(features, rowvar=False))
    assert abs(metrics.fid_from_features(features, features)) <= 1e-9 * scale


def test_fid_of_a_shifted_set_is_the_squared_shift():
    features = _rng(10).normal(size=(200, 20))
    shift = _rng(11).normal(size=20)
    fid = metrics.fid_from_features(features, features + shift)
    np.testing.assert_allclose(fid, shift @ shift, rtol=1e-8)
    np.testing.assert_allclose(metrics.fid_from_features(features + shift, features), fid)


# ----------------------------------------------------------------------------- KID
def _direct_mmd2(x, y):
    """Unbiased MMD^2 with k(a, b) = (<a, b> / d + 1)^3, summed pair by pair."""
    d = x.shape[1]

    def k(a, b):
        return (float(a @ b) / d + 1.0) ** 3

    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i, j in itertools.permutations(range(m), 2)) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i, j in itertools.permutations(range(n), 2)) / (n * (n - 1))
    xy = sum(k(a, b) for a in x for b in y) / (m * n)
    return xx + yy - 2 * xy


def test_polynomial_mmd2_matches_direct_sum():
    rng = _rng(12)
    x, y = rng.normal(size=(15, 5)), rng.normal(0.3, 1.2, size=(11, 5))
    np.testing.assert_allclose(metrics.polynomial_mmd2(x, y), _direct_mmd2(x, y), rtol=1e-10)


def test_kid_is_the_mean_and_std_over_torch_fidelity_subsets():
    rng = _rng(13)
    f1, f2 = rng.normal(size=(30, 4)), rng.normal(0.5, 1.0, size=(25, 4))
    draws = np.random.RandomState(7)  # noqa: NPY002 -- torch-fidelity's subset protocol
    reference = []
    for _ in range(4):
        x = f1[draws.choice(30, 12, replace=False)]
        y = f2[draws.choice(25, 12, replace=False)]
        reference.append(_direct_mmd2(x, y))
    mean, std = metrics.kid(f1, f2, subsets=4, subset_size=12, seed=7)
    np.testing.assert_allclose([mean, std], [np.mean(reference), np.std(reference)], rtol=1e-9)


def test_kid_of_whole_sets_is_one_estimate():
    rng = _rng(16)
    f1, f2 = rng.normal(size=(12, 4)), rng.normal(0.4, 1.0, size=(12, 4))
    mean, std = metrics.kid(f1, f2, subsets=5, subset_size=12)
    np.testing.assert_allclose(mean, _direct_mmd2(f1, f2), rtol=1e-10)
    assert std == 0.0


def test_kid_separates_distributions_and_checks_subset_size():
    rng = _rng(14)
    a, b, shifted = rng.normal(size=(3, 200, 16))
    shifted += 0.5
    same, _ = metrics.kid(a, b, subsets=20, subset_size=100)
    different, _ = metrics.kid(a, shifted, subsets=20, subset_size=100)
    assert abs(same) < 0.1 * different
    with pytest.raises(ValueError, match="subset_size 300"):
        metrics.kid(a, b, subset_size=300)


# ----------------------------------------------------------------------------- features
def test_feature_extractor_batches_like_one_call(tmp_path):
    rng = _rng(15)
    flat = {
        key: rng.uniform(0.5, 1.5, shape).astype(np.float32)
        for key, shape in inception.variable_shapes().items()
    }
    for key in flat:
        if key.endswith("kernel"):
            flat[key] *= 0.05
    path = tmp_path / "random_inception.npz"
    convert_inception.save_variables(flat, path)
    extract = metrics.InceptionFeatureExtractor.from_file(path, batch_size=2)
    images = rng.random((5, 40, 52, 3), dtype=np.float32)
    features = extract(images)  # batches of 2, 2, 1 (padded)
    variables = traverse_util.unflatten_dict({k: jnp.asarray(v) for k, v in flat.items()}, sep="/")
    direct = np.asarray(jax.jit(inception.FIDInceptionV3().apply)(variables, images))
    assert features.shape == (5, inception.FEATURE_DIM) and features.dtype == np.float32
    np.testing.assert_allclose(features, direct, rtol=1e-5, atol=1e-6 * np.abs(direct).max())
    assert extract(images[:0]).shape == (0, inception.FEATURE_DIM)


def test_feature_extractor_missing_weights_say_how_to_get_them(tmp_path):
    with pytest.raises(FileNotFoundError, match="convert_inception.*pt_inception"):
        metrics.InceptionFeatureExtractor.from_file(tmp_path / "fid_inception.npz")
