"""Training-loop paths no other test runs: the FM cadence after a regression warm-up, checkpoint
pruning (``keep_checkpoints``/``keep_period``), held-out evaluation with its TensorBoard
scalars and image, the ``max_consecutive_skips`` stop, and a warm start from an export of a
different architecture.

SIGINT (as SIGTERM) and the pinned resume are in test_train.py; ``demo_report`` at the end of a
run in test_demo.py's tiny demo table.
"""

import json

import jax
import numpy as np
import pytest
import tensorflow as tf
from model_helpers import random_params
from train_helpers import synthetic_batch, tiny_config

from jpeg_jax import checkpoint, export, train_lib, train_state
from jpeg_jax.datasets import embedded
from jpeg_jax.models import Generator


def _lines(workdir):
    return [json.loads(s) for s in (workdir / "metrics.jsonl").read_text().splitlines()]


def _tensorboard(workdir) -> tuple[dict, dict]:
    """``({tag: {step: value}}, {tag: {step: (H, W, C)}})`` of every event file."""
    scalars, images = {}, {}
    files = sorted((workdir / "tensorboard").glob("**/events.out.tfevents.*"))
    assert files, list(workdir.iterdir())
    for path in files:
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == "images":
                    encoded = tf.make_ndarray(value.tensor)  # width, height, PNG...
                    shape = tuple(tf.io.decode_png(encoded[2]).shape)
                    images.setdefault(value.tag, {})[event.step] = shape
                else:
                    scalars.setdefault(value.tag, {})[event.step] = float(
                        tf.make_ndarray(value.tensor)
                    )
    return scalars, images


@pytest.mark.slow
def test_loop_fm_cadence_pruning_and_held_out_evaluation(tmp_path):
    config = tiny_config()
    config.num_train_steps = 10
    config.regression_warmup_steps = 2  # steps 0-1: MSE warm-up, no FM
    config.loss.fm_every = 3  # FM on steps 3, 6, 9 (step 0 is a warm-up step)
    config.log_every_steps = 1
    config.checkpoint_every_steps = 1
    config.keep_checkpoints = 2  # the 2 most recent...
    config.keep_period = 4  # ...and every 4th step
    config.eval_every_steps = 5
    state = train_lib.train_and_evaluate(config, str(tmp_path))
    assert int(jax.device_get(state.step)) == 10

    # FM cadence: metrics of the step that took state.step from s to s + 1 are logged at s + 1.
    train = [d for d in _lines(tmp_path) if "g_loss" in d]
    assert [d["step"] for d in train] == list(range(1, 11))
    assert all("fm" not in d and "mse" in d for d in train[:2])  # warm-up steps 0, 1
    assert all("fm" in d for d in train[2:])
    assert [d["step"] - 1 for d in train if d.get("fm", 0.0) > 0] == [3, 6, 9]

    # Pruning: the two latest, plus multiples of keep_period.
    manager = checkpoint.make_manager(str(tmp_path), read_only=True)
    try:
        assert manager.all_steps() == [4, 8, 9, 10]
    finally:
        manager.close()

    # Held-out evaluation every 5 steps, in metrics.jsonl and in TensorBoard with the image grid.
    evaluated = {d["step"]: d for d in _lines(tmp_path) if "eval/psnr_mean" in d}
    assert sorted(evaluated) == [5, 10]
    scalars, images = _tensorboard(tmp_path)
    for name in ("eval/psnr_jpeg", "eval/psnr_mean", "eval/consistency_rmse", "eval/in_bin"):
        assert set(scalars[name]) == {5, 10}, name
        for step, value in scalars[name].items():
            np.testing.assert_allclose(value, evaluated[step][name], rtol=1e-6)
    assert 15.0 < scalars["eval/psnr_jpeg"][5] < 45.0  # QF 10 on a photo crop
    assert scalars["eval/psnr_jpeg"][5] == scalars["eval/psnr_jpeg"][10]  # a fixed batch
    assert all(0.0 <= v <= 1.0 for v in scalars["eval/in_bin"].values())
    assert set(scalars["g_loss"]) == set(range(1, 11))
    # Rows y | 3 samples | x of the held-out crops (side 2 x patch_size) side by side: the
    # embedded set holds one held-out photo.
    side, n = 2 * config.data.patch_size, min(config.num_eval_images, len(embedded.HELD_OUT))
    assert images["held_out/y_samples_x"] == {s: (5 * side, n * side, 3) for s in (5, 10)}


def _batches_turning_nan(good_steps: int):
    """A stand-in for ``input_pipeline.create_train_dataset``: ``good_steps`` finite batches,
    then batches with a NaN pixel."""

    def create(data, *, batch_size_per_process, seed, start_step):
        batch = synthetic_batch(batch=batch_size_per_process)
        bad = {k: v.copy() for k, v in batch.items()}
        bad["x"][0, 0, 0, 0] = np.nan
        for i in range(start_step, 10**6):
            yield batch if i < good_steps else bad

    return create


@pytest.mark.slow
def test_consecutive_non_finite_steps_stop_the_run(tmp_path, monkeypatch):
    config = tiny_config()
    config.loss.fm_weight = 0.0  # one compiled step variant
    config.num_train_steps = 50
    config.log_every_steps = 1
    config.checkpoint_every_steps = 2
    config.max_consecutive_skips = 3
    monkeypatch.setattr(train_lib.input_pipeline, "create_train_dataset", _batches_turning_nan(2))
    message = (
        r"^3 consecutive steps had a non-finite loss or gradient \(last good step 2\); lower "
        r"the learning rate or check the data\. The last checkpoint is NaN-free\.$"
    )
    with pytest.raises(train_lib.TrainingError, match=message):
        train_lib.train_and_evaluate(config, str(tmp_path))
    assert [d["step"] for d in _lines(tmp_path)] == [1, 2, 3, 4]  # stopped at step 5's log
    manager = checkpoint.make_manager(str(tmp_path), read_only=True)
    try:
        assert manager.latest_step() == 4
        models = train_state.make_models(config)
        template = train_state.init_state(
            config, models, train_state.make_optimizers(config), jax.random.key(0)
        )
        saved = jax.device_get(checkpoint.restore(manager, template, 4))
        step2 = jax.device_get(checkpoint.restore(manager, template, 2))
    finally:
        manager.close()
    assert int(saved.skips) == 2  # steps 3 and 4 skipped: the params are step 2's
    for field in ("g_params", "d_params", "ema_params", "g_opt_state", "d_opt_state"):
        jax.tree.map(np.testing.assert_array_equal, getattr(saved, field), getattr(step2, field))
    assert all(np.isfinite(a).all() for a in jax.tree.leaves(saved.g_params))


def test_warm_start_from_an_export_of_another_architecture_is_a_clear_error(tmp_path):
    config = tiny_config()
    kwargs = dict(train_state.generator_kwargs(config), num_feat=12)
    path = export.save(tmp_path / "wide", kwargs, random_params(Generator(**kwargs)))
    config.init_from_export = str(path)
    models, optimizers = train_state.make_models(config), train_state.make_optimizers(config)
    with pytest.raises(ValueError, match="generator architecture differs"):
        train_state.init_state(config, models, optimizers, jax.random.key(0))
