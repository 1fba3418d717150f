"""Reference statistics: running moments, the .npz file, resuming, the command line."""

import os
import subprocess
import sys

import numpy as np
import pytest
from inception_helpers import save_random_inception
from PIL import Image

from jpeg_jax import fid_stats, input_pipeline, metrics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_feature_moments_match_numpy_in_any_chunking():
    rng = np.random.default_rng(0)
    features = rng.normal(3.0, 2.0, size=(53, 7)) * rng.uniform(0.1, 10, 7)
    moments = fid_stats.FeatureMoments(7)
    for chunk in np.split(features, [1, 2, 20, 20, 41]):  # sizes 1, 1, 18, 0, 21, 12
        moments.update(chunk)
    assert moments.count == 53
    np.testing.assert_allclose(moments.mean, features.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(moments.covariance, np.cov(features, rowvar=False), rtol=1e-10)
    restored = fid_stats.FeatureMoments.from_state(moments.state())
    np.testing.assert_array_equal(restored.scatter, moments.scatter)


def test_trace_sqrt_product_from_features_matches_scipy():
    linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(1)
    a = rng.normal(size=(40, 12)) @ rng.normal(size=(12, 12))
    for n in (30, 8):  # more images than dimensions, and fewer (rank-deficient covariance)
        f2 = rng.normal(0.5, 1.0, size=(n, 12))
        s1, s2 = np.cov(a, rowvar=False), np.cov(f2, rowvar=False)
        got = metrics.trace_sqrt_product_features(metrics.sqrtm_psd(s1), f2)
        np.testing.assert_allclose(got, np.trace(linalg.sqrtm(s1 @ s2)).real, rtol=1e-8)


def test_reference_fid_equals_frechet_distance_and_file_round_trip(tmp_path):
    rng = np.random.default_rng(2)
    reference = rng.normal(size=(60, 16))
    test = rng.normal(0.2, 1.1, size=(25, 16))
    stats = fid_stats.ReferenceStatistics.from_features(reference, description="r")
    expected = metrics.fid_from_features(reference, test)
    np.testing.assert_allclose(stats.fid(test), expected, rtol=1e-7)
    stats.save(tmp_path / "stats.npz")
    loaded = fid_stats.ReferenceStatistics.load(tmp_path / "stats.npz")
    assert loaded.num_images == 60 and loaded.description == "r"
    np.testing.assert_allclose(loaded.fid(test), expected, rtol=1e-7)
    kid = metrics.kid(reference.astype(np.float32), test, subset_size=20)  # stored as float32
    np.testing.assert_allclose(loaded.kid(test, subset_size=20), kid, rtol=1e-9)
    # A pytorch-fid file (mu and sigma only) works for FID; KID needs features.
    np.savez(tmp_path / "pytorch_fid.npz", mu=stats.mu, sigma=stats.sigma)
    plain = fid_stats.ReferenceStatistics.load(tmp_path / "pytorch_fid.npz")
    np.testing.assert_allclose(plain.fid(test), expected, rtol=1e-7)
    assert plain.kid(test) is None
    np.savez(tmp_path / "other.npz", features=reference)
    with pytest.raises(ValueError, match="'mu' and 'sigma'"):
        fid_stats.ReferenceStatistics.load(tmp_path / "other.npz")
    with pytest.raises(FileNotFoundError):
        fid_stats.ReferenceStatistics.load(tmp_path / "missing.npz")


@pytest.mark.parametrize("total,keep", [(10, 3), (7, 7), (5, 10), (100, 33)])
def test_kid_features_are_spread_evenly(total, keep):
    kept = [i for i in range(total) if fid_stats.kid_keep(i, total, keep)]
    assert len(kept) == min(total, keep)
    if keep < total:
        assert max(np.diff(kept)) <= -(-total // keep)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("reference_images")
    rng = np.random.default_rng(3)
    for i in range(7):  # two sizes: consecutive same-size images are batched together
        size = 36 if i < 4 else 44
        Image.fromarray(rng.integers(0, 256, (size, size, 3), np.uint8)).save(root / f"{i}.png")
    config = input_pipeline.default_data_config()
    config.update(source="folder", path=str(root), fid_reference_split="all")
    return config


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return save_random_inception(tmp_path_factory.mktemp("inception") / "inception.npz")


class _Interrupt(Exception):
    pass


def _interrupted(config, extractor, out, calls_before_failing=2):
    """Run ``compute_reference`` with an extractor that fails on call N + 1 (a kill)."""
    calls = []

    class Failing:
        batch_size = extractor.batch_size
        resize = extractor.resize

        def features_of_resized(self, images):
            calls.append(len(images))
            if len(calls) > calls_before_failing:
                raise _Interrupt
            return extractor.features_of_resized(images)

    with pytest.raises(_Interrupt):
        fid_stats.compute_reference(
            config, "all", Failing(), out, kid_features=3, save_every=2, progress=False
        )


def test_compute_resumes_after_an_interruption(folder, weights, tmp_path):
    extractor = metrics.InceptionFeatureExtractor.from_file(weights, batch_size=2)
    whole = fid_stats.compute_reference(
        folder, "all", extractor, tmp_path / "whole.npz", kid_features=3, progress=False
    )
    assert whole.num_images == 7 and whole.kid_features.shape == (3, 2048)
    first = extractor(_images(folder)[0]["x"][None] / 255.0)
    np.testing.assert_allclose(whole.kid_features[0], first[0], rtol=1e-4, atol=1e-5)
    out = tmp_path / "resumed.npz"
    _interrupted(folder, extractor, out)  # batches of 2, 2, then killed: 4 images saved
    assert not out.exists() and os.path.exists(f"{out}.partial.npz")
    resumed = fid_stats.compute_reference(
        folder, "all", extractor, out, kid_features=3, save_every=2, progress=False
    )
    assert resumed.num_images == 7 and not os.path.exists(f"{out}.partial.npz")
    np.testing.assert_allclose(resumed.mu, whole.mu, rtol=1e-6)
    np.testing.assert_allclose(resumed.sigma, whole.sigma, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(resumed.kid_features, whole.kid_features, rtol=1e-6)
    # A partial file made for other images is refused, not mixed in.
    other = tmp_path / "other.npz"
    _interrupted(folder, extractor, other)
    cropped = folder.copy_and_resolve_references()
    cropped.eval_crop = 32
    with pytest.raises(ValueError, match="other images or weights"):
        fid_stats.compute_reference(cropped, "all", extractor, other, progress=False)


def _images(config):
    dataset = input_pipeline.build_image_dataset(config, "all", process_index=0, process_count=1)
    return list(dataset.as_numpy_iterator())


def _run(*args, timeout=600):
    env = {**os.environ, "JPEG_JAX_HUGE_PAGES": "0"}
    return subprocess.run(
        [sys.executable, "-m", "jpeg_jax.fid_stats", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_command_line(folder, weights, tmp_path):
    out = tmp_path / "cli.npz"
    args = [
        "--config=configs/ffhq.py",
        f"--data={folder.path}",
        f"--inception={weights}",
        f"--out={out}",
        "--batch_size=4",
    ]
    done = _run(*args)
    assert done.returncode == 0, done.stderr
    stats = fid_stats.ReferenceStatistics.load(out)
    assert stats.num_images == 7 and '"source": "folder"' in stats.description
    assert stats.inception_sha256 and len(stats.inception_sha256) == 64
    again = _run(*args)
    assert again.returncode == 2 and "exists" in again.stderr and "Traceback" not in again.stderr
    missing = _run(*args[:2], f"--inception={tmp_path / 'none.npz'}", f"--out={tmp_path / 'y.npz'}")
    assert missing.returncode == 1 and "convert_inception" in missing.stderr
    assert "Traceback" not in missing.stderr
