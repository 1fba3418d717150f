"""Two processes x 1 CPU device, launched as SLURM's srun would, each running the whole train.py.

The end of a run whose last step is not a checkpoint step (with held-out evaluation), a
preemption notice reaching one process (SIGTERM, then SIGINT) with resume bit-identical to an
uninterrupted run, and the loss of one process (SIGKILL). The two resumed launches use the
other ways to start without a cluster manager (environment, then flags). Every subprocess is
bounded: a hang fails the test and every process is killed.
"""

import json
import re
import signal

import jax
import numpy as np
import pytest
from train_helpers import (
    Processes,
    free_port,
    free_slurm_job_id,
    subprocess_env,
    tiny_config,
    train_command,
    wait_for_step,
)

from jpeg_jax import checkpoint, export, train_state

# Up to ~1 s (JAX's SIGTERM polling) + the agreement pass between a signal and the stop step:
# ~10-20 steps on a fast machine (1 step on a loaded 2-core one). STEPS leaves room for two
# preemptions.
STEPS = 50  # not a multiple of CHECKPOINT_EVERY: the last step is saved by the final save
CHECKPOINT_EVERY = 4
EVAL_EVERY = 20
HEARTBEAT_S = 10
LIMIT_S = 900  # one launch, start to exit, on a loaded 2-core machine
FLAGS = (
    f"--config.num_train_steps={STEPS}",
    f"--config.checkpoint_every_steps={CHECKPOINT_EVERY}",
    "--config.keep_checkpoints=100",
    "--config.log_every_steps=1",
    "--config.loss.fm_weight=0",  # one compiled step variant (FM is covered in test_train.py)
    f"--config.heartbeat_timeout_s={HEARTBEAT_S}",
)


def _launch(processes: Processes, workdir, *flags, name: str, how: str = "slurm") -> list:
    """Both processes of a 2-process job, started as ``how`` says.

    "slurm": SLURM's environment, which JAX detects, and ``--config.distributed=True``;
    "env": ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID`` only;
    "flags": ``--config.coordinator_address``, ``num_processes`` and ``process_id`` only.
    """
    drop = ("TF_CPP_MIN_LOG_LEVEL", "SLURM_", "OMPI_", "JAX_COORDINATOR")
    env = subprocess_env(1, drop=drop)
    env = {k: v for k, v in env.items() if k not in ("JAX_NUM_PROCESSES", "JAX_PROCESS_ID")}
    job_id, coordinator = free_slurm_job_id(), f"localhost:{free_port()}"
    procs = []
    for i in range(2):
        proc_env, proc_flags = dict(env), [*FLAGS, *flags]
        if how == "slurm":
            proc_env.update(
                SLURM_JOB_ID=str(job_id),
                SLURM_STEP_NODELIST="localhost",
                SLURM_NTASKS="2",
                SLURM_PROCID=str(i),
                SLURM_LOCALID="0",
            )
            proc_flags.append("--config.distributed=True")
        elif how == "env":
            proc_env.update(
                JAX_COORDINATOR_ADDRESS=coordinator, JAX_NUM_PROCESSES="2", JAX_PROCESS_ID=str(i)
            )
        else:
            proc_flags += [
                f"--config.coordinator_address={coordinator}",
                "--config.num_processes=2",
                f"--config.process_id={i}",
            ]
        cmd = train_command(workdir, *proc_flags)
        procs.append(processes.start(cmd, proc_env, f"{name}.p{i}"))
    return procs


def _stop_steps(processes: Processes, procs) -> list[int]:
    """The step each process says it stopped after for preemption."""
    steps = []
    for proc in procs:
        found = re.findall(r"stops after step (\d+)", processes.output(proc))
        assert len(found) == 1, processes.tails(procs)
        steps.append(int(found[0]))
    return steps


def _checkpoint(workdir, step):
    config = tiny_config()
    models, optimizers = train_state.make_models(config), train_state.make_optimizers(config)
    template = train_state.init_state(config, models, optimizers, jax.random.key(0))
    manager = checkpoint.make_manager(str(workdir), read_only=True)
    try:
        assert step in manager.all_steps(), manager.all_steps()
        return jax.device_get(checkpoint.restore(manager, template, step))
    finally:
        manager.close()


def _preempt(processes, workdir, sig, victim: int, after_step: int, name: str, how: str) -> int:
    """Run until ``after_step`` is logged, signal one process; both save one step, exit 0."""
    procs = _launch(processes, workdir, name=name, how=how)
    wait_for_step(workdir, after_step, processes, procs, timeout=LIMIT_S)
    procs[victim].send_signal(sig)
    assert processes.wait(procs, LIMIT_S) == [0, 0], processes.tails(procs)
    stop = _stop_steps(processes, procs)
    assert stop[0] == stop[1], f"processes stopped at different steps {stop}"
    assert after_step < stop[0] < STEPS, stop
    manager = checkpoint.make_manager(str(workdir), read_only=True)
    assert stop[0] in manager.all_steps(), manager.all_steps()
    manager.close()
    assert not (workdir / "export").exists()  # a preempted run does not export
    return stop[0]


@pytest.mark.slow
def test_two_processes_finish_and_preempted_runs_resume_bit_identical(tmp_path):
    with Processes(tmp_path) as processes:
        # (a) Uninterrupted, evaluation on, last step not a checkpoint step.
        reference = tmp_path / "reference"
        flag = f"--config.eval_every_steps={EVAL_EVERY}"
        procs = _launch(processes, reference, flag, name="reference")
        assert processes.wait(procs, LIMIT_S) == [0, 0], processes.tails(procs)
        final = _checkpoint(reference, STEPS)
        assert int(final.step) == STEPS
        exported = export.load(reference / "export")
        assert exported.metadata["step"] == STEPS
        jax.tree.map(np.testing.assert_array_equal, exported.params, final.ema_params)
        lines = [json.loads(s) for s in (reference / "metrics.jsonl").read_text().splitlines()]
        evaluated = [d["step"] for d in lines if "eval/psnr_mean" in d]
        assert evaluated == list(range(EVAL_EVERY, STEPS + 1, EVAL_EVERY))
        assert max(d["step"] for d in lines if "g_loss" in d) == STEPS

        # (b) SIGTERM to process 1, then SIGINT to process 0 of the resumed run, then the rest.
        run = tmp_path / "preempted"
        first = _preempt(processes, run, signal.SIGTERM, 1, 2, name="sigterm", how="slurm")
        second = _preempt(processes, run, signal.SIGINT, 0, first + 1, name="sigint", how="env")
        assert second > first
        procs = _launch(processes, run, name="resumed", how="flags")
        assert processes.wait(procs, LIMIT_S) == [0, 0], processes.tails(procs)
        resumed = _checkpoint(run, STEPS)
        for field in ("step", "g_params", "d_params", "ema_params", "g_opt_state", "d_opt_state"):
            jax.tree.map(
                np.testing.assert_array_equal, getattr(resumed, field), getattr(final, field)
            )
        jax.tree.map(
            np.testing.assert_array_equal, export.load(run / "export").params, exported.params
        )


@pytest.mark.slow
def test_lost_process_stops_the_other_with_its_name(tmp_path):
    with Processes(tmp_path) as processes:
        workdir = tmp_path / "run"
        survivor, victim = _launch(
            processes, workdir, "--config.num_train_steps=100000", name="kill"
        )
        wait_for_step(workdir, 2, processes, [survivor, victim], timeout=LIMIT_S)
        victim.kill()
        (code,) = processes.wait([survivor], HEARTBEAT_S + 120)  # bounded: a hang fails
        out = processes.output(survivor)
        assert code != 0, out[-3000:]
        # JAX's coordination service (in process 0) names the task that stopped its heartbeat.
        lost = re.search(r"Task 1 heartbeat timeout|stopped sending heartbeats\):\s*1\b", out)
        assert lost, out[-3000:]
