"""eval.py's protocol end to end on a tiny random model, with and without FID weights."""

import json

import jax
import numpy as np
import pytest
from jpeg_helpers import photo
from PIL import Image

from jpeg_jax import evaluate, export, input_pipeline
from jpeg_jax.models import Generator, inception
from jpeg_jax.models.convert_inception import save_variables

KWARGS = {"num_feat": 8, "num_block": 1, "num_grow_ch": 4, "noise": True, "film": False}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = Generator(**KWARGS)
    shapes = jax.eval_shape(
        lambda: model.init(
            {"params": jax.random.key(0), "noise": jax.random.key(0)}, np.zeros((1, 16, 16, 3))
        )
    )["params"]
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda s: 0.05 * rng.standard_normal(s.shape).astype(np.float32), shapes)
    return export.save(tmp_path_factory.mktemp("export") / "model", KWARGS, params)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    for i, name in enumerate(("coffee", "chelsea")):
        Image.fromarray(photo(name, (slice(40 * i, 40 * i + 48), slice(0, 48)))).save(
            root / f"{name}.png"
        )
    config = input_pipeline.default_data_config()
    config.source, config.path, config.eval_split = "folder", str(root), "all"
    config.eval_quality, config.eval_crop = 10, 32
    return config


def test_protocol_without_fid(exported, data, tmp_path):
    result = evaluate.evaluate(exported, data, str(tmp_path), num_samples=3, fid_repeats=2)
    rows = result["rows"]
    assert result["num_images"] == 2 and set(rows) == set(evaluate.ROWS)
    assert rows["JPEG"]["consistency"] < 0.01 and rows["JPEG"]["in_bin"] > 0.999
    assert rows["-P"]["in_bin"] > 0.99  # projected, then clipped to [0, 1]
    assert rows["-P"]["consistency"] < rows["sample"]["consistency"]
    assert rows["sample"]["pixel_std"] > 0
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["rows"]["-A"]["psnr"] == pytest.approx(rows["-A"]["psnr"])
    table = (tmp_path / "metrics.md").read_text()
    assert "| -P |" in table and "no Inception weights" in table
    for figure in ("realisations.png", "uncertainty.png", "recompression_difference.png"):
        assert (tmp_path / figure).stat().st_size > 1000


def test_protocol_with_fid(exported, data, tmp_path):
    rng = np.random.default_rng(0)
    weights = {
        k: (rng.uniform(0.5, 1.5, s) if k.endswith("/var") else 0.05 * rng.standard_normal(s))
        for k, s in inception.variable_shapes().items()
    }
    save_variables(weights, tmp_path / "inception.npz")
    result = evaluate.evaluate(
        exported,
        data,
        str(tmp_path / "out"),
        num_samples=2,
        fid_repeats=2,
        inception_path=str(tmp_path / "inception.npz"),
    )
    for row in evaluate.ROWS:
        assert np.isfinite(result["rows"][row]["fid"]) and result["rows"][row]["fid_std"] >= 0
    # The JPEG row is the same images every repeat: no spread.
    assert result["rows"]["JPEG"]["fid_std"] == pytest.approx(0.0, abs=1e-6)


def test_missing_export_is_a_clear_error(data, tmp_path):
    with pytest.raises(export.ExportError):
        evaluate.evaluate(str(tmp_path / "nope"), data, str(tmp_path / "out"))
