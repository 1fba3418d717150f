"""Orbax checkpoints of the train state (frozen helper models excluded)."""

from __future__ import annotations

import os

import jax
import orbax.checkpoint as ocp

from jpeg_jax.train_state import TrainState


def make_manager(workdir: str, config) -> ocp.CheckpointManager:
    """Asynchronous, atomic saves every ``checkpoint_every_steps``, keeping the last
    ``keep_checkpoints`` (and every ``keep_period``-th step, when > 0)."""
    options = ocp.CheckpointManagerOptions(
        save_interval_steps=config.checkpoint_every_steps,
        max_to_keep=config.keep_checkpoints,
        keep_period=config.keep_period or None,
        enable_async_checkpointing=True,
        create=True,
    )
    return ocp.CheckpointManager(
        os.path.join(os.path.abspath(workdir), "checkpoints"), options=options
    )


def _savable(state: TrainState) -> TrainState:
    return state.replace(frozen={})


def save(manager: ocp.CheckpointManager, state: TrainState, *, force: bool = False) -> bool:
    """Save ``state`` at its step (if the interval says so, or ``force``). Returns whether saved."""
    step = int(jax.device_get(state.step))
    if step in manager.all_steps():
        return False
    return manager.save(step, args=ocp.args.StandardSave(_savable(state)), force=force)


def restore_latest(manager: ocp.CheckpointManager, state: TrainState) -> TrainState | None:
    """Restore the latest complete checkpoint onto ``state``'s structure and shardings.

    Returns None when there is none. Incomplete (killed) saves are never listed by orbax.
    """
    step = manager.latest_step()
    if step is None:
        return None
    target = jax.tree.map(ocp.utils.to_shape_dtype_struct, _savable(state))
    restored = manager.restore(step, args=ocp.args.StandardRestore(target))
    return restored.replace(frozen=state.frozen)
