"""Orbax checkpoints of the train state (frozen helper models excluded).

Every function here that writes or reads a checkpoint is a collective in a multi-process job:
call it on every process, with the same arguments, or on none.
"""

from __future__ import annotations

import os

import jax
import orbax.checkpoint as ocp
from absl import logging

from jpeg_jax.train_state import TrainState


def make_manager(
    workdir: str,
    *,
    save_interval_steps: int = 1,
    max_to_keep: int | None = None,
    keep_period: int | None = None,
    read_only: bool = False,
) -> ocp.CheckpointManager:
    """The checkpoint manager of ``WORKDIR/checkpoints``.

    Saves are asynchronous and atomic (an interrupted save is never listed). ``keep_period``:
    also keep every N-th step (None or 0: no); ``read_only``: for restoring only.
    """
    options = ocp.CheckpointManagerOptions(
        save_interval_steps=save_interval_steps,
        max_to_keep=max_to_keep,
        keep_period=keep_period or None,
        enable_async_checkpointing=not read_only,
        create=not read_only,
        read_only=read_only,
    )
    return ocp.CheckpointManager(
        os.path.join(os.path.abspath(workdir), "checkpoints"), options=options
    )


def _savable(state: TrainState) -> TrainState:
    return state.replace(frozen={})


def save(manager: ocp.CheckpointManager, state: TrainState, *, force: bool = False) -> bool:
    """Save ``state`` at its step if the interval says so, or if ``force``; never twice.

    Returns whether a save started (it finishes in the background; see
    ``manager.wait_until_finished``).
    """
    step = int(jax.device_get(state.step))
    if step in manager.all_steps():
        return False
    saved = manager.save(step, args=ocp.args.StandardSave(_savable(state)), force=force)
    if saved and jax.process_index() == 0:
        logging.info("checkpoint: saving step %d on all %d processes", step, jax.process_count())
    return saved


def restore(manager: ocp.CheckpointManager, state: TrainState, step: int) -> TrainState:
    """Restore checkpoint ``step`` onto ``state``'s structure and shardings (frozen kept)."""
    target = jax.tree.map(ocp.utils.to_shape_dtype_struct, _savable(state))
    restored = manager.restore(step, args=ocp.args.StandardRestore(target))
    return restored.replace(frozen=state.frozen)


def restore_latest(manager: ocp.CheckpointManager, state: TrainState) -> TrainState | None:
    """Restore the latest complete checkpoint, or return None when there is none."""
    step = manager.latest_step()
    return None if step is None else restore(manager, state, step)
