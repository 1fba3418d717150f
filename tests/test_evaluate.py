"""eval.py's protocol end to end on a tiny random model: rows, batching, FID against a reference.

References computed independently here: per-image sampling with ``sampling.restore`` (the
unbatched path), per-image Inception features with the bare flax module, and FID with
``scipy.linalg.sqrtm`` (pytorch-fid's formula).
"""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from flax import traverse_util
from inception_helpers import save_random_inception
from jpeg_helpers import photo
from model_helpers import random_params
from PIL import Image

from jpeg_jax import evaluate, export, fid_stats, input_pipeline, jpeg, metrics, sampling
from jpeg_jax.datasets import subsets
from jpeg_jax.models import Generator, inception

KWARGS = {"num_feat": 8, "num_block": 1, "num_grow_ch": 4, "noise": True, "film": False}
PHOTOS = ("coffee", "chelsea", "astronaut", "rocket", "camera")
REFERENCE_PHOTOS = ("hubble_deep_field", "immunohistochemistry", "retina", "rocket", "coffee")
NUM_SAMPLES, FID_REPEATS = 3, 2


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    params = random_params(Generator(**KWARGS), scale=0.05)
    return export.save(tmp_path_factory.mktemp("export") / "model", KWARGS, params)


@pytest.fixture(scope="module")
def mmse_export(tmp_path_factory):
    kwargs = {**KWARGS, "noise": False}
    path = tmp_path_factory.mktemp("mmse") / "model"
    return export.save(path, kwargs, random_params(Generator(**kwargs), scale=0.02, seed=1))


def _folder(root, names, crop, offset=0):
    for i, name in enumerate(names):
        image = photo(name, (slice(30 * i + offset, 30 * i + offset + 48), slice(0, 48)))
        Image.fromarray(image).save(root / f"{name}.png")
    config = input_pipeline.default_data_config()
    config.source, config.path, config.eval_split = "folder", str(root), "all"
    config.fid_reference_split = "all"
    config.eval_quality, config.eval_crop = 10, crop
    return config


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return _folder(tmp_path_factory.mktemp("images"), PHOTOS, 32)


@pytest.fixture(scope="module")
def inception_path(tmp_path_factory):
    return save_random_inception(tmp_path_factory.mktemp("inception") / "inception.npz")


@pytest.fixture(scope="module")
def reference(tmp_path_factory, inception_path):
    """Statistics of a separate folder (other photos, 40 px crops: sizes differ from the test)."""
    config = _folder(tmp_path_factory.mktemp("reference"), REFERENCE_PHOTOS, 40, offset=150)
    path = tmp_path_factory.mktemp("stats") / "reference.npz"
    extractor = metrics.InceptionFeatureExtractor.from_file(inception_path, batch_size=4)
    fid_stats.load_or_compute(path, config, extractor, inception_path)
    return str(path), config


@pytest.fixture(scope="module")
def with_fid(exported, mmse_export, data, inception_path, reference, tmp_path_factory):
    """The protocol with FID against the reference and an MMSE export, 3 images per batch."""
    out_dir = tmp_path_factory.mktemp("out")
    result = evaluate.evaluate(
        exported,
        data,
        str(out_dir),
        num_samples=NUM_SAMPLES,
        fid_repeats=FID_REPEATS,
        inception_path=inception_path,
        fid_reference=reference[0],
        mmse_export=mmse_export,
        batch_size=3,
        progress=False,
    )
    return result, out_dir


def test_protocol_without_fid(exported, data, tmp_path):
    result = evaluate.evaluate(
        exported, data, str(tmp_path), num_samples=3, fid_repeats=2, progress=False
    )
    rows = result["rows"]
    assert result["num_images"] == len(PHOTOS)
    assert set(rows) == set(evaluate.ROWS) - {"Regression"}  # no MMSE export given
    truth = rows["Ground truth"]
    # x's own round trip is y (libjpeg is deterministic); its float DCT may graze a bin edge.
    assert truth["consistency"] == 0 and truth["in_bin"] > 0.999 and truth["psnr"] is None
    assert rows["JPEG"]["consistency"] == 0 and rows["JPEG"]["in_bin"] > 0.999
    assert rows["-P"]["in_bin"] > 0.99  # projected, then saved as 8-bit
    assert rows["-P"]["consistency"] < rows["sample"]["consistency"]
    assert rows["sample"]["pixel_std"] > 0
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["rows"]["-A"]["psnr"] == pytest.approx(rows["-A"]["psnr"])
    table = (tmp_path / "metrics.md").read_text()
    assert "| -P |" in table and "| Ground truth |" in table and "no Inception weights" in table
    for figure in ("realisations.png", "uncertainty.png", "recompression_difference.png"):
        assert (tmp_path / figure).stat().st_size > 1000


def _per_image_reference(exported, data):
    """Each test image on its own through ``sampling.restore``, the rows' 8-bit images."""
    model = export.load(exported)
    key = jax.random.key(0)
    rows = {}
    examples = input_pipeline.create_eval_dataset(data, batch_size=None)
    for i, example in enumerate(examples):
        f = jpeg.read_jpeg(bytes(example["jpeg"]))
        k = jax.random.fold_in(key, i)
        samples = sampling.restore(model, f, NUM_SAMPLES, k).samples
        projected = sampling.restore(model, f, FID_REPEATS, jax.random.fold_in(k, 1), project=True)
        images = {
            "Ground truth": [example["x"]],
            "JPEG": [f.pixels / 255.0],
            "-A": [samples.mean(axis=0)],
            "sample": list(samples[:FID_REPEATS]),
            "-P": list(projected.samples),
        }
        for row, sets in images.items():
            rows.setdefault(row, []).append(
                [metrics.to_8bit(s) / 255.0 for s in sets] + [example["x"], f]
            )
    return rows


def _features(images, flat):
    """Pool3 features one image at a time with the bare module (resize inside, no padding)."""
    variables = traverse_util.unflatten_dict(dict(flat), sep="/")
    apply = jax.jit(inception.FIDInceptionV3().apply)
    return np.concatenate([np.asarray(apply(variables, image[None])) for image in images])


def _scipy_fid(f1, f2):
    """pytorch-fid's ``|mu1 - mu2|^2 + tr s1 + tr s2 - 2 tr sqrtm(s1 s2)`` via scipy.

    With Helmert's orthonormal contrasts ``G = H F`` ((n - 1) x D, ``G^T G = C^T C`` for the
    centred features C), ``s1 s2`` has the nonzero eigenvalues of ``M M^T / ((n1 - 1)(n2 - 1))``,
    ``M = G2 G1^T``; its trace root is taken with scipy.linalg.sqrtm on that small full-rank
    matrix (the 2048^2 product of rank-deficient covariances is not diagonalisable).
    """
    linalg = pytest.importorskip("scipy.linalg")
    f1, f2 = np.asarray(f1, np.float64), np.asarray(f2, np.float64)
    g1, g2 = linalg.helmert(len(f1)) @ f1, linalg.helmert(len(f2)) @ f2
    m = g2 @ g1.T
    cross = np.trace(linalg.sqrtm(m @ m.T)).real / np.sqrt((len(f1) - 1) * (len(f2) - 1))
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    diff = f1.mean(0) - f2.mean(0)
    return diff @ diff + np.trace(s1) + np.trace(s2) - 2 * cross


@pytest.mark.slow
def test_fid_against_a_reference_and_batching(
    with_fid, exported, mmse_export, data, inception_path, reference, tmp_path
):
    """Ground truth's FID = scipy FID(reference, test GT); metrics equal per image and batched."""
    flat = dict(np.load(inception_path))
    reference_images = [
        b["x"] / 255.0
        for b in input_pipeline.build_image_dataset(
            reference[1], "all", process_index=0, process_count=1
        ).as_numpy_iterator()
    ]
    per_image = _per_image_reference(exported, data)
    truth = [entry[0] for entry in per_image["Ground truth"]]
    expected_truth = _scipy_fid(_features(reference_images, flat), _features(truth, flat))
    result, out_dir = with_fid
    assert result["fid_reference"]["kind"] == "file" and result["fid_reference"]["num_images"] == 5
    assert expected_truth > 0.01  # features that tell the images apart
    np.testing.assert_allclose(result["rows"]["Ground truth"]["fid"], expected_truth, rtol=1e-4)
    # The stored statistics are the reference images' (batched, mixed with no other sizes).
    stats = fid_stats.ReferenceStatistics.load(reference[0])
    np.testing.assert_allclose(stats.kid_features, _features(reference_images, flat), rtol=1e-4,
                               atol=1e-4 * np.abs(stats.kid_features).max())  # fmt: skip
    # Every row equals the per-image computation (restore + 8-bit scoring).
    for row, entries in per_image.items():
        got = result["rows"][row]
        psnrs = [metrics.psnr(e[0], e[-2], quantize=True) for e in entries]
        if row != "Ground truth":
            np.testing.assert_allclose(got["psnr"], np.mean(psnrs), rtol=1e-4)
        rmse = [float(jpeg.consistency(e[0], e[-1], backend="libjpeg")["rmse"]) for e in entries]
        np.testing.assert_allclose(got["consistency"], np.mean(rmse), rtol=1e-4, atol=1e-6)
    sample_sets = [[e[r] for e in per_image["sample"]] for r in range(FID_REPEATS)]
    ref_features = _features(reference_images, flat)
    fids = [_scipy_fid(ref_features, _features(s, flat)) for s in sample_sets]
    np.testing.assert_allclose(result["rows"]["sample"]["fid"], np.mean(fids), rtol=1e-3)
    np.testing.assert_allclose(result["rows"]["sample"]["fid_std"], np.std(fids), rtol=1e-2)
    # Batch size 1 (without FID: features are batched alike, see the FeatureQueue test) gives
    # the same numbers.
    single = evaluate.evaluate(
        exported,
        data,
        str(tmp_path / "single"),
        num_samples=NUM_SAMPLES,
        fid_repeats=FID_REPEATS,
        mmse_export=mmse_export,
        batch_size=1,
        progress=False,
    )
    for row, values in single["rows"].items():
        for name, value in values.items():
            other = result["rows"][row][name]
            assert (value is None and other is None) or np.isclose(value, other, rtol=1e-5), (
                row,
                name,
            )
    assert len(subsets.load_names("ctest10k")) == 10_000  # the Table 5 split
    # With an MMSE export: the Regression row (deterministic, one set) and Figure 6's row.
    rows = result["rows"]
    assert set(rows) == set(evaluate.ROWS) and "pixel_std" not in rows["Regression"]
    for row in ("Regression", "JPEG", "-A", "Ground truth"):
        assert rows[row]["fid_std"] == 0 and np.isfinite(rows[row]["kid"])
    assert rows["sample"]["fid_std"] > 0 and rows["-P"]["fid_std"] > 0
    with Image.open(out_dir / "realisations.png") as figure:
        assert figure.height > 450  # two rows: the realisations and X̄(Y), (x - X̄(Y))², variance


def test_feature_queue_batches_mixed_sizes_like_single_calls(inception_path):
    rng = np.random.default_rng(3)
    extractor = metrics.InceptionFeatureExtractor.from_file(inception_path, batch_size=4)
    queue = metrics.FeatureQueue(extractor)
    images = {"a": rng.random((3, 40, 52, 3)), "b": rng.random((2, 33, 33, 3))}
    queue.put("a", images["a"][:2])
    queue.put("b", images["b"])
    queue.put("a", images["a"][2:])
    queue.put("empty", images["a"][:0])
    early = queue.take()  # the first full batch: a0, a1, b0, b1
    assert queue.batches_run == 1 and [len(early[k]) for k in "ab"] == [2, 2]
    rest = queue.result()
    assert queue.batches_run == 2  # 5 images in batches of 4: only the last one padded
    got = {k: np.concatenate([early[k], rest[k]]) for k in rest}
    flat = dict(np.load(inception_path))
    for key, value in images.items():
        single = _features(value, flat)
        np.testing.assert_allclose(got[key], single, rtol=1e-4, atol=1e-5 * np.abs(single).max())
    assert got["empty"].shape == (0, inception.FEATURE_DIM)


def test_missing_export_is_a_clear_error(data, tmp_path):
    with pytest.raises(export.ExportError):
        evaluate.evaluate(str(tmp_path / "nope"), data, str(tmp_path / "out"))


def test_eval_cli_errors_are_one_line(data, tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "JPEG_JAX_HUGE_PAGES": "0"}
    base = [sys.executable, "eval.py", "--config=configs/demo.py", f"--out={tmp_path / 'out'}"]

    def run(*args):
        return subprocess.run(
            [*base, *args], cwd=root, env=env, capture_output=True, text=True, timeout=300
        )

    missing = run(f"--checkpoint={tmp_path / 'none'}", f"--data={data.path}")
    assert missing.returncode == 1 and "eval.py: error:" in missing.stderr
    assert "Traceback" not in missing.stderr
    no_reference = run(
        f"--checkpoint={tmp_path / 'none'}",
        f"--data={data.path}",
        f"--fid_reference={tmp_path / 'stats.npz'}",
    )
    assert no_reference.returncode == 2 and "fid_stats" in no_reference.stderr
