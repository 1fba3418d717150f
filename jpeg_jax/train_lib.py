"""The training loop: ``train_and_evaluate(config, workdir)``.

Sections: set-up (processes, checkpoints, preemption, models, state, restore), input, the loop
(logging, held-out evaluation, checkpoints), the end (final checkpoint, export).

Multi-process rule: every collective (the jitted step, checkpoint saves, restores and waits,
fetching arrays to the host) runs on every process, decided only by values all processes share
(the step, the config, the preemption agreement). Only the chief (process 0) writes files of
its own: logs, figures, the export and ``config.json``.
"""

from __future__ import annotations

import contextlib
import os
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
    export_checkpoint,
    fileio,
    input_pipeline,
    jpeg,
    metrics,
    multihost,
    sampling,
    train_logging,
    train_state,
    train_step,
)


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. too many consecutive non-finite steps)."""


def maybe_initialize_distributed(config: ml_collections.ConfigDict) -> bool:
    """Start ``jax.distributed`` when ``config.distributed`` or ``config.coordinator_address``
    (or the environment's ``JAX_COORDINATOR_ADDRESS``) asks; returns whether it runs.

    Values the config leaves unset come from the environment (``JAX_COORDINATOR_ADDRESS``,
    ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``), else from the cluster (SLURM, Open MPI, TPU).
    """
    wanted = config.distributed or config.coordinator_address
    if not (wanted or os.environ.get("JAX_COORDINATOR_ADDRESS")):
        return False
    if not jax.distributed.is_initialized():
        process_id = config.process_id if config.process_id >= 0 else None
        multihost.initialize(
            coordinator_address=config.coordinator_address or None,
            num_processes=config.num_processes or multihost.env_int("JAX_NUM_PROCESSES"),
            process_id=process_id
            if process_id is not None
            else multihost.env_int("JAX_PROCESS_ID"),
            heartbeat_timeout_s=config.heartbeat_timeout_s,
            initialization_timeout_s=config.initialization_timeout_s,
        )
    return True


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
    """Samples of the held-out batch and their metrics (PSNR, consistency, sample std).

    Runs on this process's devices only (``params`` on the host, e.g. from
    :func:`train_step.fetch`): no collective.
    """
    y, qt, x = jnp.asarray(batch["y"]), jnp.asarray(batch["qtables"]), batch["x"]
    samples = sampling.sample_batch(generator, params, y, qt, key, num_samples)
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


def _train_metrics(config, state, window: list, seconds: float) -> dict:
    """Means over the logging window; stops the run (on every process) after too many skips."""
    skips = int(jax.device_get(state.skips))
    if skips >= config.max_consecutive_skips:
        step = int(jax.device_get(state.step))
        raise TrainingError(
            f"{skips} consecutive steps had a non-finite loss or gradient (last good step "
            f"{step - skips}); lower the learning rate or check the data. The last checkpoint "
            "is NaN-free."
        )
    names = dict.fromkeys(k for m in window for k in m)  # warm-up steps log fewer terms
    values = {k: float(np.mean([m[k] for m in window if k in m])) for k in names}
    values["steps_per_sec"] = len(window) / seconds
    values["images_per_sec"] = values["steps_per_sec"] * config.batch_size
    return values


def _setup_state(config, mesh, manager, start_step: int, init_key):
    """Models, optimizers and the replicated state (restored when ``start_step`` > 0)."""
    models = train_state.make_models(config)
    optimizers = train_state.make_optimizers(config)
    state = train_state.init_state(
        config, models, optimizers, init_key, train_state.load_frozen(config)
    )
    state = train_step.replicate(mesh, state)
    if start_step:
        state = train_step.replicate(mesh, checkpoint.restore(manager, state, start_step))
    return models, optimizers, state


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str):
    """Train (or resume) the model a config describes; export the EMA generator at the end.

    In a multi-process job, call it on every process with the same config and a ``workdir``
    all of them see. SIGTERM/SIGINT on any process: every process saves the same step and
    the call returns (the run is resumed by calling it again).

    Returns:
      The final (or preempted) ``TrainState``.
    """
    # --- Set-up: processes, checkpoints, preemption (early: a notice may come at any time).
    maybe_initialize_distributed(config)
    is_chief = jax.process_index() == 0
    if config.batch_size % jax.device_count():
        raise ValueError(f"batch_size {config.batch_size} % {jax.device_count()} devices != 0")
    os.makedirs(workdir, exist_ok=True)
    if is_chief:  # what `python -m jpeg_jax.export_checkpoint` rebuilds the models from
        fileio.write_file(
            os.path.join(workdir, "config.json"), config.to_json_best_effort(indent=2)
        )
    manager = checkpoint.make_manager(
        workdir,
        save_interval_steps=config.checkpoint_every_steps,
        max_to_keep=config.keep_checkpoints,
        keep_period=config.keep_period,
    )
    start_step = manager.latest_step() or 0
    with contextlib.closing(manager), multihost.Preemption(manager.reached_preemption) as stop:
        stop.reached(start_step)  # the preemption protocol counts steps from here
        try:
            return _train(config, workdir, manager, stop, start_step)
        except TrainingError:
            raise
        except Exception as e:
            if jax.process_count() > 1:
                logging.error(
                    "process %d of %d stopped: %s: %s. If another process died, JAX's "
                    "distributed service names it within heartbeat_timeout_s=%d s and "
                    "stops this process.",
                    jax.process_index(),
                    jax.process_count(),
                    type(e).__name__,
                    e,
                    config.heartbeat_timeout_s,
                )
            raise


def _train(config, workdir, manager, stop: multihost.Preemption, start_step: int):
    """The body of :func:`train_and_evaluate` once processes and checkpoints are set up."""
    is_chief = jax.process_index() == 0
    mesh = train_step.make_mesh()
    init_key, step_key, eval_key = jax.random.split(jax.random.key(config.seed), 3)
    models, optimizers, state = _setup_state(config, mesh, manager, start_step, init_key)
    step_fn = train_step.compile_step(
        train_step.make_train_step(config, models, optimizers), mesh, state
    )
    logging.info(
        "process %d of %d: %s at step %d of %d; global batch %d on %d devices",
        jax.process_index(),
        jax.process_count(),
        "resuming from the checkpoint" if start_step else "starting",
        start_step,
        config.num_train_steps,
        config.batch_size,
        jax.device_count(),
    )

    # --- Input.
    batches = input_pipeline.create_train_dataset(
        config.data,
        batch_size_per_process=config.batch_size // jax.process_count(),
        seed=config.seed,
        start_step=start_step,
    )
    held_out = _held_out_batch(config) if is_chief and config.eval_every_steps > 0 else None

    # --- Loop: `step` counts completed steps (= state.step).
    writer = train_logging.create_writer(workdir, is_chief=is_chief)
    bar = tqdm.tqdm(
        total=config.num_train_steps, initial=start_step, disable=not is_chief, desc="train"
    )
    window, t0 = [], time.perf_counter()
    step = start_step
    while step < config.num_train_steps and stop.stop_step is None:
        batch = train_step.global_batch(mesh, next(batches))
        moments = train_step.is_moment_step(config, step)
        warmup = train_step.is_warmup_step(config, step)
        critic = train_step.trains_critic(config, step)
        state, step_metrics = step_fn(state, batch, step_key, moments, warmup, critic)
        step += 1
        window.append(step_metrics)
        bar.update(1)
        if step % config.log_every_steps == 0 or step == config.num_train_steps:
            values = _train_metrics(config, state, window, time.perf_counter() - t0)
            writer.write_scalars(step, values)
            bar.set_postfix({k: f"{values[k]:.3g}" for k in ("g_loss", "d_loss") if k in values})
            window, t0 = [], time.perf_counter()
        if config.eval_every_steps > 0 and step % config.eval_every_steps == 0:
            ema_params = train_step.fetch(state.ema_params)  # every process (a collective)
            if held_out is not None:
                values, samples = evaluate_held_out(
                    config, models[0], ema_params, held_out, eval_key
                )
                grid = train_logging.image_grid(held_out, samples)
                writer.write_scalars(step, values)
                writer.write_images(step, {"held_out/y_samples_x": grid})
        stop.reached(step)
        checkpoint.save(manager, state)
    bar.close()

    # --- End: the last step's checkpoint on every process; then the chief's export.
    checkpoint.save(manager, state, force=True)
    manager.wait_until_finished()
    writer.close()
    if stop.stop_step is not None:
        logging.warning(
            "preempted: all %d processes saved checkpoint step %d; run the same command to "
            "resume from it",
            jax.process_count(),
            step,
        )
        return state
    logging.info(
        "process %d of %d: finished at step %d, final checkpoint saved",
        jax.process_index(),
        jax.process_count(),
        step,
    )
    ema_params = train_step.fetch(state.ema_params)
    if is_chief:
        path = export_checkpoint.export_params(
            config, ema_params, os.path.join(workdir, "export"), step=step
        )
        logging.info("exported the EMA generator of step %d to %s", step, path)
        if config.demo_figure:
            report = demo.demo_report(models[0], ema_params, workdir, quality=config.data.quality)
            print(demo.format_report(report), flush=True)
    return state
