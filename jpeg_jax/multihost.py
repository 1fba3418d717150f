"""Multi-process start-up and preemption: ``jax.distributed`` set-up, and a stop step all agree on.

Start-up (:func:`initialize`): under SLURM, Open MPI (``mpirun``) and on Cloud TPU VMs JAX finds
the coordinator, the number of processes and this process's index by itself; elsewhere they are
given explicitly. Once initialised, JAX's distributed service also watches every process's
heartbeat: a process that dies (or hangs) for ``heartbeat_timeout_s`` makes every other process
stop with a non-zero exit and a message naming the lost task.

Preemption (:class:`Preemption`): a cluster manager's notice (SIGTERM, or SIGINT from a user)
may reach a single host. In a ``jax.distributed`` job, JAX's preemption sync manager catches
SIGTERM on any process, tells the others, and all agree on the same step to stop at
(``CheckpointManager.reached_preemption``); SIGINT is forwarded to it as SIGTERM. A single process
without ``jax.distributed`` uses a plain flag set by either signal.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

import jax
from absl import logging


class DistributedError(RuntimeError):
    """``jax.distributed`` could not start (no cluster found, bad arguments, peers missing)."""


_LAUNCH_HELP = (
    "launch under SLURM (srun), Open MPI (mpirun) or on Cloud TPU VMs, which JAX detects, or "
    "give every process --config.coordinator_address=HOST:PORT --config.num_processes=N "
    "--config.process_id=I (or the environment's JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, "
    "JAX_PROCESS_ID)"
)


def env_int(name: str) -> int | None:
    """An integer environment variable, or None when unset.

    Raises:
      DistributedError: set but not an integer.
    """
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise DistributedError(f"{name}={value!r} is not an integer") from None


def _launcher() -> str:
    """A name for the log line; JAX itself picks the cluster environment."""
    if "SLURM_JOB_ID" in os.environ:
        return f"SLURM job {os.environ['SLURM_JOB_ID']}"
    if "OMPI_MCA_orte_hnp_uri" in os.environ:
        return "Open MPI"
    return "explicit arguments or cluster auto-detection"


def initialize(
    *,
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    heartbeat_timeout_s: int = 100,
    initialization_timeout_s: int = 300,
) -> None:
    """``jax.distributed.initialize``: values left None are detected from the cluster.

    Args:
      coordinator_address: "host:port" of process 0 (None: ``JAX_COORDINATOR_ADDRESS`` or the
        cluster's).
      num_processes: processes in the job (None: the cluster's).
      process_id: this process's index in [0, num_processes) (None: the cluster's).
      heartbeat_timeout_s: a process silent this long counts as lost; all others then stop.
      initialization_timeout_s: how long processes wait for each other at start-up.

    Raises:
      DistributedError: nothing to detect and values missing, or the processes never met.
    """
    try:
        jax.distributed.initialize(
            coordinator_address=coordinator_address,
            num_processes=num_processes,
            process_id=process_id,
            initialization_timeout=initialization_timeout_s,
            heartbeat_timeout_seconds=heartbeat_timeout_s,
        )
    except ValueError as e:  # JAX's "coordinator_address should be defined." and the like
        raise DistributedError(f"cannot start jax.distributed ({e}): {_LAUNCH_HELP}") from None
    except jax.errors.JaxRuntimeError as e:
        raise DistributedError(
            f"jax.distributed: the processes did not all reach the coordinator within "
            f"{initialization_timeout_s} s ({e})"
        ) from None
    logging.info(
        "jax.distributed: process %d of %d (%s), %d local / %d global devices, "
        "heartbeat timeout %d s",
        jax.process_index(),
        jax.process_count(),
        _launcher(),
        jax.local_device_count(),
        jax.device_count(),
        heartbeat_timeout_s,
    )


class Preemption:
    """Stop at a step boundary every process agrees on, after SIGTERM/SIGINT reaches any one.

    Use as a context manager (it installs the signal handlers and restores the previous ones)
    and call :meth:`reached` with the number of completed steps after every step, on every
    process, from the step training starts at (the multi-process protocol needs every step).

    Args:
      reached_sync_point: ``CheckpointManager.reached_preemption`` (a multi-process job's
        agreement); ignored in a single process without ``jax.distributed``.
    """

    def __init__(self, reached_sync_point: Callable[[int], bool]):
        self._synced = jax.distributed.is_initialized()
        self._reached_sync_point = reached_sync_point
        self._requested = False
        self._previous = {}
        self.stop_step: int | None = None

    def __enter__(self) -> Preemption:
        if self._synced and not jax.config.jax_enable_preemption_service:
            logging.warning(
                "jax_enable_preemption_service is off: SIGTERM stops this process without a "
                "checkpoint, and the other processes then stop on the lost heartbeat"
            )
            return self
        signals = (signal.SIGINT,) if self._synced else (signal.SIGTERM, signal.SIGINT)
        for sig in signals:
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handle(self, signum, frame) -> None:
        del frame
        name = signal.Signals(signum).name
        # A second signal while the first is being honoured: leave at once (default action).
        signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))
        if self._synced:  # JAX's preemption notifier listens to SIGTERM only
            logging.warning(
                "process %d: %s received; passing it to JAX's preemption sync as SIGTERM "
                "(send %s again to stop at once, without a checkpoint)",
                jax.process_index(),
                name,
                name,
            )
            os.kill(os.getpid(), signal.SIGTERM)
        else:
            logging.warning(
                "%s received: saving a checkpoint after the current step, then exiting "
                "(send %s again to stop at once)",
                name,
                name,
            )
            self._requested = True

    def reached(self, step: int) -> bool:
        """Whether to save ``step`` and stop (the same answer on every process)."""
        if self._synced:
            hit = self._reached_sync_point(step)
        else:
            hit = self._requested
        if hit and self.stop_step is None:
            self.stop_step = step
            logging.warning(
                "preemption: process %d of %d stops after step %d (all processes save it)",
                jax.process_index(),
                jax.process_count(),
                step,
            )
        return hit

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
