"""The training loop: ``train_and_evaluate(config, workdir)``.

Sections: set-up (distributed, mesh, models, state, restore), input, logging, the loop
(with preemption handling), held-out evaluation, export.
"""

from __future__ import annotations

import json
import os
import signal
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tqdm
from absl import logging

from jpeg_jax import (
    checkpoint,
    demo,
    export,
    input_pipeline,
    jpeg,
    metrics,
    train_state,
    train_step,
)


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. too many consecutive non-finite steps)."""


class _Preemption:
    """SIGTERM/SIGINT set a flag; the loop saves at the next step boundary and returns."""

    def __init__(self):
        self.requested = False
        self._previous = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handle(self, signum, frame):
        del frame
        logging.warning("signal %d: saving at the next step boundary, then exiting", signum)
        self.requested = True

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def maybe_initialize_distributed(config) -> None:
    """``jax.distributed.initialize()`` when the config (or JAX_COORDINATOR_ADDRESS) asks."""
    if config.distributed or os.environ.get("JAX_COORDINATOR_ADDRESS"):
        jax.distributed.initialize()


def _held_out_batch(config) -> dict:
    """A fixed held-out batch (central crops) for consistency/PSNR tracking and image grids."""
    data = ml_collections.ConfigDict(config.data.to_dict())
    data.eval_crop = data.eval_crop or 2 * data.patch_size
    data.eval_quality = data.quality if data.quality_mode == "fixed" else data.eval_quality
    data.eval_num_examples = config.num_eval_images
    batches = input_pipeline.create_eval_dataset(
        data, batch_size=config.num_eval_images, process_index=0, process_count=1
    )
    return next(iter(batches))


def evaluate_held_out(config, generator, params, batch, key, num_samples: int = 4) -> tuple:
    """Samples of the held-out batch and their metrics (PSNR, consistency, sample std)."""
    y, qt, x = jnp.asarray(batch["y"]), jnp.asarray(batch["qtables"]), batch["x"]
    keys = jax.random.split(key, num_samples)
    apply = demo.jitted_apply(generator)
    samples = np.clip(np.stack([np.asarray(apply(params, y, qt, k)) for k in keys]), 0.0, 1.0)
    mean = samples.mean(axis=0)
    coefficients = jpeg.encode(jnp.asarray(x), qt, subsampling=config.data.subsampling)
    cons = jpeg.consistency(
        jnp.asarray(samples[0]), coefficients, qt, subsampling=config.data.subsampling
    )
    values = {
        "eval/psnr_jpeg": float(np.mean(metrics.psnr(batch["y"], x))),
        "eval/psnr_sample": float(np.mean(metrics.psnr(samples[0], x))),
        "eval/psnr_mean": float(np.mean(metrics.psnr(mean, x))),
        "eval/consistency_rmse": float(np.mean(cons["rmse"])),
        "eval/in_bin": float(np.mean(cons["in_bin"])),
        "eval/sample_std": metrics.mean_pixel_std(samples),
    }
    return values, samples


class _Logger:
    """Process 0 writes TensorBoard events and a metrics JSONL; other processes stay quiet."""

    def __init__(self, workdir: str, enabled: bool):
        self.enabled = enabled
        if enabled:
            import tensorflow as tf

            self._tf = tf
            self._writer = tf.summary.create_file_writer(os.path.join(workdir, "tensorboard"))
            self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")  # noqa: SIM115

    def scalars(self, step: int, values: dict) -> None:
        if not self.enabled:
            return
        with self._writer.as_default(step=step):
            for k, v in values.items():
                self._tf.summary.scalar(k, v)
        self._jsonl.write(json.dumps({"step": step, **values}) + "\n")
        self._jsonl.flush()

    def images(self, step: int, batch: dict, samples: np.ndarray) -> None:
        if not self.enabled:
            return
        n = min(4, batch["x"].shape[0])
        rows = [batch["y"][:n], *samples[:3, :n], batch["x"][:n]]
        grid = np.concatenate([np.concatenate(list(r), axis=1) for r in rows], axis=0)
        with self._writer.as_default(step=step):
            self._tf.summary.image("y | samples | x", grid[None], max_outputs=1)

    def close(self) -> None:
        if self.enabled:
            self._writer.flush()
            self._jsonl.close()


def export_generator(config, state, path: str) -> str:
    """Write the EMA generator and its config as an export directory."""
    kwargs = train_state.generator_kwargs(config)
    metadata = {
        "step": int(jax.device_get(state.step)),
        "mode": config.mode,
        "subsampling": config.data.subsampling,
        "quality_mode": config.data.quality_mode,
        "quality": config.data.quality,
    }
    return export.save(path, kwargs, state.ema_params, metadata=metadata)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str):
    """Train (or resume) the model a config describes; export the EMA generator at the end.

    Returns:
      The final ``TrainState``.
    """
    # --- Set-up.
    maybe_initialize_distributed(config)
    is_chief = jax.process_index() == 0
    os.makedirs(workdir, exist_ok=True)
    if is_chief:  # what `python -m jpeg_jax.export --workdir` rebuilds the models from
        with open(os.path.join(workdir, "config.json"), "w") as f:
            f.write(config.to_json_best_effort(indent=2))
    if config.batch_size % jax.device_count():
        raise ValueError(f"batch_size {config.batch_size} % {jax.device_count()} devices != 0")
    mesh = train_step.make_mesh()
    models = train_state.make_models(config)
    optimizers = train_state.make_optimizers(config)
    key = jax.random.key(config.seed)
    init_key, step_key, eval_key = jax.random.split(key, 3)
    state = train_state.init_state(
        config, models, optimizers, init_key, train_state.load_frozen(config)
    )
    state = train_step.replicate(mesh, state)
    manager = checkpoint.make_manager(workdir, config)
    restored = checkpoint.restore_latest(manager, state)
    if restored is not None:
        state = train_step.replicate(mesh, restored)
        logging.info("resumed from step %d", int(state.step))
    start_step = int(jax.device_get(state.step))
    step_fn = train_step.compile_step(
        train_step.make_train_step(config, models, optimizers), mesh, state
    )

    # --- Input.
    batches = input_pipeline.create_train_dataset(
        config.data,
        batch_size_per_process=config.batch_size // jax.process_count(),
        seed=config.seed,
        start_step=start_step,
    )
    held_out = _held_out_batch(config) if is_chief and config.eval_every_steps > 0 else None

    # --- Loop.
    logger = _Logger(workdir, is_chief)
    bar = tqdm.tqdm(
        total=config.num_train_steps, initial=start_step, disable=not is_chief, desc="train"
    )
    window, t0 = [], time.perf_counter()
    with _Preemption() as preemption:
        for step in range(start_step, config.num_train_steps):
            batch = train_step.global_batch(mesh, next(batches))
            warmup = config.mode == "gan" and step < config.regression_warmup_steps
            moments = (
                config.mode == "gan"
                and not warmup
                and (config.loss.fm_weight > 0 or config.loss.sm_weight > 0)
                and step % config.loss.fm_every == 0
            )
            state, step_metrics = step_fn(state, batch, step_key, moments, warmup)
            window.append(step_metrics)
            done = step + 1
            bar.update(1)
            if done % config.log_every_steps == 0 or done == config.num_train_steps:
                names = dict.fromkeys(k for m in window for k in m)  # phases log different keys
                values = {k: float(np.mean([m[k] for m in window if k in m])) for k in names}
                if int(jax.device_get(state.skips)) >= config.max_consecutive_skips:
                    raise TrainingError(
                        f"{int(state.skips)} consecutive steps had a non-finite loss or "
                        f"gradient (last good step {done - int(state.skips)}); lower the "
                        "learning rate or check the data. The last checkpoint is NaN-free."
                    )
                elapsed = time.perf_counter() - t0
                values["steps_per_sec"] = len(window) / elapsed
                values["images_per_sec"] = values["steps_per_sec"] * config.batch_size
                logger.scalars(done, values)
                bar.set_postfix(
                    {k: f"{values[k]:.3g}" for k in ("g_loss", "d_loss") if k in values}
                )
                window, t0 = [], time.perf_counter()
            if held_out is not None and done % config.eval_every_steps == 0:
                generator = models[0]
                values, samples = evaluate_held_out(
                    config, generator, state.ema_params, held_out, eval_key
                )
                logger.scalars(done, values)
                logger.images(done, held_out, samples)
            checkpoint.save(manager, state, force=preemption.requested)
            if preemption.requested:
                break
    manager.wait_until_finished()
    bar.close()
    logger.close()
    if preemption.requested:
        logging.warning("preempted at step %d; checkpoint saved", int(state.step))
        return state

    # --- Export.
    if is_chief:
        checkpoint.save(manager, state, force=True)
        manager.wait_until_finished()
        path = export_generator(config, state, os.path.join(workdir, "export"))
        logging.info("exported the EMA generator to %s", path)
        if config.demo_figure:
            report = demo.demo_report(
                models[0], jax.device_get(state.ema_params), workdir, quality=config.data.quality
            )
            print(demo.format_report(report), flush=True)
    manager.close()
    return state
