"""The demo: its image statistics, the warm-up phase, the Table-4 path on a tiny model, and the
trends of the committed demo table."""

import json
import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage
from train_helpers import synthetic_batch, tiny_config

from jpeg_jax import demo, demo_table, image_stats, train_state, train_step

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _grey(values: np.ndarray) -> np.ndarray:
    """(..., H, W) grey levels 0..255 -> float RGB in [0, 1] whose luma is ``values``."""
    return np.repeat(values[..., None] / 255.0, 3, axis=-1)


# --- image statistics -------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(64, 64), (61, 45)])
def test_blockiness_of_ramp_with_block_steps_is_closed_form(size):
    # I = a (i + j) + s (floor(i / 8) + floor(j / 8)): every adjacent pair inside a block differs
    # by a, every pair across a block boundary by a + s, in both directions.
    a, s = 1.5, 6.0
    i, j = np.mgrid[0 : size[0], 0 : size[1]]
    image = _grey(a * (i + j) + s * (i // 8 + j // 8))
    np.testing.assert_allclose(image_stats.blockiness(image), (a + s) / a, rtol=1e-12)
    # A batch of two: the steps scaled differently per image.
    both = np.stack([image, _grey(a * (i + j) + 2 * s * (i // 8 + j // 8))])
    np.testing.assert_allclose(image_stats.blockiness(both), [(a + s) / a, (a + 2 * s) / a])


def test_blockiness_mask_selects_blocks():
    # Steps only between the blocks of the left half: the masked ratio sees them, the right
    # half's ratio is 1.
    i, j = np.mgrid[0:32, 0:64]
    a, s = 2.0, 4.0
    steps = np.where(j < 32, s * (i // 8 + j // 8), 0.0) + np.where(j >= 32, 100.0, 0.0)
    image = _grey(a * (i + j) + steps)
    left = np.zeros((4, 8), bool)
    left[:, :4] = True
    np.testing.assert_allclose(image_stats.blockiness(image, mask=left), (a + s) / a)
    np.testing.assert_allclose(image_stats.blockiness(image, mask=~left), 1.0)
    with pytest.raises(ValueError, match="mask shape"):
        image_stats.blockiness(image, mask=np.ones((3, 8), bool))


def test_blockiness_of_noise_is_one_and_jpeg_is_blocky():
    rng = np.random.default_rng(0)
    noise = rng.uniform(0, 1, (256, 256, 3))
    assert abs(image_stats.blockiness(noise) - 1.0) < 0.02
    # A smooth image compressed hard: flat blocks decode to constant tiles.
    smooth = ndimage.gaussian_filter(rng.uniform(0, 1, (128, 128, 3)), sigma=(6, 6, 0))
    smooth = (smooth - smooth.min()) / (smooth.max() - smooth.min())
    x = np.round(smooth * 255).astype(np.uint8)
    image = demo.encode_photo(x, 10)
    flat = image_stats.flat_blocks(image.coefficients.y)
    assert flat.any()
    assert image_stats.blockiness(image.pixels / 255.0, mask=flat) > 3.0


def test_flat_blocks_are_the_dc_only_blocks():
    c = np.zeros((2, 3, 8, 8), np.int32)
    c[..., 0, 0] = 5  # DC everywhere
    c[0, 1, 0, 1] = -1
    c[1, 2, 7, 7] = 2
    expected = np.array([[True, False, True], [True, True, False]])
    np.testing.assert_array_equal(image_stats.flat_blocks(c), expected)


@pytest.mark.parametrize("sigma", [1.0, 2.5])
def test_gaussian_blur_equals_scipy(sigma):
    y = np.random.default_rng(1).normal(size=(2, 23, 31))
    np.testing.assert_allclose(
        image_stats.gaussian_blur(y, sigma),
        ndimage.gaussian_filter(y, (0, sigma, sigma)),
        atol=1e-12,
    )


def test_sharpness_relative_to_original():
    x = np.random.default_rng(2).uniform(0, 1, (48, 40, 3))
    assert image_stats.sharpness(x, x) == pytest.approx(1.0)
    blurred = ndimage.gaussian_filter(x, sigma=(1.5, 1.5, 0))
    assert image_stats.sharpness(blurred, x) < 0.2
    # Independent reference: luma by its JFIF weights, high-pass energy by scipy's blur.
    y = 255 * (0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2])
    hf = np.mean((y - ndimage.gaussian_filter(y, 1.0)) ** 2)
    assert image_stats.high_frequency_energy(x) == pytest.approx(hf, rel=1e-12)


# --- the regression warm-up phase -------------------------------------------------------------


def test_warmup_step_trains_mse_without_the_critic():
    config = tiny_config()
    config.regression_warmup_steps, config.regression_warmup_critic_steps = 10, 3
    assert [train_step.is_warmup_step(config, i) for i in (0, 6, 7, 9, 10)] == [1, 1, 1, 1, 0]
    assert [train_step.trains_critic(config, i) for i in (0, 6, 7, 9, 10)] == [0, 0, 1, 1, 1]
    models = train_state.make_models(config)
    optimizers = train_state.make_optimizers(config)
    state = train_state.init_state(config, models, optimizers, jax.random.key(0))
    before = jax.device_get(state)
    step = jax.jit(train_step.make_train_step(config, models, optimizers), static_argnums=(3, 4, 5))
    batch = {k: jnp.asarray(v) for k, v in synthetic_batch().items()}
    after, metrics = step(state, batch, jax.random.key(1), False, True, False)
    assert "mse" in metrics and "d_loss" not in metrics and "g_adv" not in metrics
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(after.d_params), before.d_params)
    moved = jax.tree.map(
        lambda a, b: np.any(a != b), jax.device_get(after.g_params), before.g_params
    )
    assert any(jax.tree.leaves(moved))
    # The MSE is that of the zero-noise output of the generator before the update.
    generator = models[0]
    x_hat = generator.apply(
        {"params": before.g_params}, batch["y"], batch["qtables"], deterministic=True
    )
    expected = float(jnp.mean(jnp.square(x_hat - batch["x"])))
    assert float(metrics["mse"]) == pytest.approx(expected, rel=1e-5)


def test_input_skip_adds_the_input_to_the_output():
    from jpeg_jax.models import Generator

    y = jnp.asarray(synthetic_batch(batch=2, size=24)["y"])
    plain = Generator(num_feat=8, num_block=1, num_grow_ch=4)
    params = plain.init({"params": jax.random.key(0), "noise": jax.random.key(1)}, y)["params"]
    skip = Generator(num_feat=8, num_block=1, num_grow_ch=4, input_skip=True)
    rngs = {"noise": jax.random.key(2)}
    out = skip.apply({"params": params}, y, rngs=rngs)
    np.testing.assert_allclose(out, plain.apply({"params": params}, y, rngs=rngs) + y, atol=1e-6)


def test_warmup_critic_trains_on_the_zero_noise_output():
    config = tiny_config()
    models = train_state.make_models(config)
    optimizers = train_state.make_optimizers(config)
    state = train_state.init_state(config, models, optimizers, jax.random.key(0))
    step = jax.jit(train_step.make_train_step(config, models, optimizers), static_argnums=(3, 4, 5))
    batch = {k: jnp.asarray(v) for k, v in synthetic_batch().items()}
    _, metrics = step(state, batch, jax.random.key(1), False, True, True)
    assert "mse" in metrics and "d_loss" in metrics and "g_adv" not in metrics
    # G's MSE is the same as without the critic: the two updates are independent.
    _, alone = step(state, batch, jax.random.key(1), False, True, False)
    assert float(metrics["mse"]) == pytest.approx(float(alone["mse"]), rel=1e-6)
    # The critic's loss is the non-saturating loss of the real x against G's zero-noise output.
    generator, critic = models
    fake = generator.apply({"params": state.g_params}, batch["y"], None, deterministic=True)
    logits = [critic.apply({"params": state.d_params}, im, batch["y"]) for im in (batch["x"], fake)]
    expected = float(jnp.mean(jax.nn.softplus(-logits[0]) + jax.nn.softplus(logits[1])))
    assert float(metrics["d_loss"]) == pytest.approx(expected, rel=1e-4)


# --- the table ---------------------------------------------------------------------------------


def _rows_with_trends() -> dict:
    """Rows that show every trend (values shaped like a real table)."""
    base = {"consistency_rmse": 1.0, "in_bin": 90.0, "std": 0.0, "blockiness_flat": 1.0}
    rows = {
        "JPEG": {**base, "psnr": 27.0, "sharpness": 0.8, "consistency_rmse": 0.0, "in_bin": 100},
        "Regression": {**base, "psnr": 28.2, "sharpness": 0.5},
        "Ours": {**base, "psnr": 27.2, "sharpness": 0.9, "std": 3.0},
        "Ours-A": {**base, "psnr": 28.0, "sharpness": 0.55},
        "Ours-P": {**base, "psnr": 27.3, "sharpness": 0.9, "std": 2.9, "in_bin": 100.0},
        "λ_C = 0": {**base, "psnr": 26.0, "sharpness": 1.1, "std": 5.0, "consistency_rmse": 4},
        "original": {**base, "psnr": np.inf, "sharpness": 1.0, "consistency_rmse": 0.0},
    }
    return rows


@pytest.mark.parametrize(
    "broken, index",
    [
        (("Ours-A", "psnr", 28.5), 0),  # above Regression by more than the margin
        (("Regression", "sharpness", 0.95), 1),
        (("Ours-A", "sharpness", 0.95), 2),
        (("Ours-A", "psnr", 27.1), 3),  # 1.1 dB below Regression (and above one sample only)
        (("Ours-P", "in_bin", 99.99), 5),
        (("Ours", "consistency_rmse", 4.5), 6),
        (("Ours", "std", 0.0), 7),
    ],
)
def test_check_trends_flags_each_broken_trend(broken, index):
    rows = _rows_with_trends()
    assert all(ok for _, ok in demo_table.check_trends(rows))
    name, key, value = broken
    rows[name][key] = value
    results = demo_table.check_trends(rows)
    assert not results[index][1], results[index][0]


def _committed_table():
    """docs/demo_table.json is the output of `python -m jpeg_jax.demo_table` (full demo)."""
    with open(ROOT / "docs" / "demo_table.json") as f:
        table = json.load(f)
    assert set(table["rows"]) == set(demo_table.ROWS)
    return table


def test_committed_demo_table_shows_the_trends():
    table = _committed_table()
    checks = demo_table.check_trends(table["rows"])
    failed = [text for text, ok in checks if not ok]
    assert not failed, failed
    assert [ok for _, ok in checks] == [t["holds"] for t in table["trends"]]  # file consistent
    rows = table["rows"]
    # The demo's headline claims, re-checked from the committed numbers (the goal for
    # Ours-A is +0.8 dB; this run reaches +0.82: benchmarks/RESULTS.md, "Demo results").
    assert rows["Ours-A"]["psnr"] - rows["JPEG"]["psnr"] >= 0.8
    assert rows["Ours"]["blockiness_flat"] < 0.2 * rows["JPEG"]["blockiness_flat"]
    assert rows["Ours"]["sharpness"] > rows["Ours-A"]["sharpness"]


@pytest.mark.slow
def test_tiny_demo_table_end_to_end(tmp_path):
    """The demo's path on a tiny model: warm-up + GAN training, regression and lambda_C = 0
    models, the report, the table and its figure; invariants that hold for any model."""
    config = tiny_config()
    config.num_train_steps = 4
    config.regression_warmup_steps = 2
    config.demo_figure = True
    config.data.max_crop_side = 64
    config.loss.fm_weight = 0.0  # one compiled GAN step fewer per model (FM: test_train.py)
    workdir = str(tmp_path / "demo")
    table = demo_table.build_table(config, workdir, num_samples=2, crop=64)
    for name in ("demo.png", "demo_std.png", "demo_metrics.json", "table.md", "comparison.png"):
        assert os.path.getsize(os.path.join(workdir, name)) > 0, name
    for sub in ("regression", "no_consistency"):
        assert os.path.exists(os.path.join(workdir, sub, "export", "model.json"))
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        logged = [json.loads(line) for line in f]
    assert "mse" in logged[0] and "g_adv" not in logged[0]  # steps 1-2: warm-up
    assert "d_loss" in logged[-1]
    rows = table["rows"]
    assert list(rows) == list(demo_table.ROWS)
    for row in rows.values():
        assert {key for key, _, _ in demo_table.COLUMNS} <= set(row)
    # The file was made from the original: its libjpeg round trip gives the file's decode
    # exactly. In-bin % uses the float DCT pipeline (no integer rounding), so coefficients of
    # the original that libjpeg rounded at a bin edge may fall just outside: near, not at, 100.
    assert rows["original"]["consistency_rmse"] == 0.0
    assert 99.0 < rows["original"]["in_bin"] <= 100.0
    assert rows["original"]["sharpness"] == 1.0
    assert rows["Ours-P"]["in_bin"] == 100.0
    assert rows["Regression"]["std"] == 0.0 and rows["Ours-A"]["std"] == 0.0
    assert rows["Ours"]["std"] > 0.0
    with open(os.path.join(workdir, "table.md")) as f:
        text = f.read()
    assert all(f"| {name} |" in text for name in demo_table.ROWS)
    assert all(header in text for _, header, _ in demo_table.COLUMNS)
    with open(os.path.join(workdir, "demo_metrics.json")) as f:
        report = json.load(f)
    assert 99.0 < report["rows"]["jpeg"]["in_bin"] <= 100.0  # float DCT of the 8-bit decode
    # A second call reuses the three exports (no training) and rewrites the same rows.
    again = demo_table.build_table(config, workdir, num_samples=2, crop=64)
    np.testing.assert_allclose(again["rows"]["Ours"]["psnr"], rows["Ours"]["psnr"])
